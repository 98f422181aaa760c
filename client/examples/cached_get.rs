//! How long `get` takes from the cache, beside the alternative of asking the socket every time
//! (check interval zero: one list per get), against a stand-in server on a Unix socket that
//! answers as edgeseal does (no OpenBao behind it: this measures the client, not the store).
//!
//! `cargo run --release -p edgeseal-client --example cached_get [N]`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

const LIST: &str = r#"{"secrets":[{"name":"db","version":1}]}"#;
const READ: &str = r#"{"name":"db","version":1,"data":{"value":"s3cret-value"}}"#;

fn serve(listener: UnixListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let body = if request.starts_with(b"GET /v1/secrets/") { READ } else { LIST };
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes());
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, f64) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    let per_second = samples.len() as f64 / total.as_secs_f64();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100], per_second)
}

fn time(n: usize, mut get: impl FnMut()) -> (Duration, Duration, f64) {
    let samples = (0..n)
        .map(|_| {
            let started = Instant::now();
            get();
            started.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("edgeseal-client-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("token.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || serve(listener));

    let cached = edgeseal_client::Client::new(&socket);
    assert_eq!(cached.get("db").unwrap().expose(), "s3cret-value");
    let eager = edgeseal_client::Client::new(&socket).with_check_interval(Duration::ZERO);
    assert_eq!(eager.get("db").unwrap().expose(), "s3cret-value");

    println!("{:<44} {:>10} {:>10} {:>12}", "get(\"db\")", "p50", "p99", "gets/s");
    let rows = [
        ("cached (check interval 10 s, no I/O)", time(n, || drop(cached.get("db").unwrap()))),
        ("check every get (interval 0: one list)", time(n.min(5_000), || drop(eager.get("db").unwrap()))),
    ];
    for (name, (p50, p99, rate)) in rows {
        println!("{name:<44} {:>10} {:>10} {rate:>12.0}", format!("{p50:.2?}"), format!("{p99:.2?}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
