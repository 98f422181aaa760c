//! `token-load`: a load generator for the token socket, run by `benches/tokens.rs` inside a labelled
//! container so that every request is Docker-attested.
//!
//! Each request is what a service's entrypoint does: connect to the socket, `POST /v1/token` over
//! HTTP/1.1, read the whole answer, close. `--method GET --path /v1/secrets/<name>` reads a secret
//! instead (`benches/secrets.rs`, run on the host and attested by uid and executable). `--concurrency C` workers do this in a loop on one thread
//! (a current-thread runtime, so the load generator takes at most one CPU away from the server) until
//! `--requests N` have been sent or `--duration SECS` has passed, whichever comes first. `--warmup W`
//! requests are sent one by one before the clock starts and are not counted.
//!
//! Prints one JSON object on stdout: counts per status, throughput, latency percentiles in
//! microseconds (connect to last body byte), how many distinct token accessors were returned (every
//! request gets its own token, or all share one; a batch token, which has no accessor, counts as
//! `batch:<hash of the token>`; a secret counts as `secret:v<version>`), one sample accessor (accessors are not secrets; the token itself is
//! never printed), the first error seen, and with `--raw` every latency.
//! Exit codes: 0 all requests answered 200, 1 some failed, 64 bad usage.
//!
//! `--hold N` instead opens N connections, sends nothing on them, prints `held N` and waits until it
//! is killed: an idle-connection flood for the token server's connection-limit tests.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

const USAGE: &str = "usage: token-load --socket PATH [--requests N] [--duration SECS] [--concurrency C] \
                     [--warmup W] [--path /v1/token] [--method POST|GET] [--raw] | token-load --socket PATH --hold N";

struct Args {
    socket: PathBuf,
    requests: u64,
    duration: Duration,
    concurrency: usize,
    warmup: u64,
    path: String,
    method: Method,
    raw: bool,
    hold: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        socket: PathBuf::new(),
        requests: u64::MAX,
        duration: Duration::from_secs(5),
        concurrency: 1,
        warmup: 0,
        path: "/v1/token".into(),
        method: Method::POST,
        raw: false,
        hold: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--raw" {
            args.raw = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--socket" => args.socket = PathBuf::from(value),
            "--requests" => args.requests = number(&value)?,
            "--duration" => {
                let secs = value.parse::<f64>().map_err(|e| format!("--duration {value}: {e}"))?;
                args.duration = Duration::try_from_secs_f64(secs).map_err(|e| format!("--duration {value}: {e}"))?;
            }
            "--concurrency" => args.concurrency = usize::try_from(number(&value)?.max(1)).unwrap_or(1),
            "--warmup" => args.warmup = number(&value)?,
            "--path" => args.path = value,
            "--method" => match value.as_str() {
                "POST" => args.method = Method::POST,
                "GET" => args.method = Method::GET,
                _ => return Err(format!("--method {value}: POST or GET")),
            },
            "--hold" => args.hold = Some(number(&value)?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if args.socket.as_os_str().is_empty() {
        return Err("--socket is required".into());
    }
    Ok(args)
}

thread_local! {
    /// One hasher per run, so equal tokens hash alike (the runtime is single-threaded).
    static HASHER: std::hash::RandomState = std::hash::RandomState::new();
}

/// What one request gave.
struct Outcome {
    /// HTTP status, or `None` when the exchange itself failed.
    status: Option<u16>,
    /// The token's accessor, `batch:<hash>` for a batch token (200), or the error message (otherwise).
    detail: String,
}

/// Connect, send (a POST without a body, or a GET), read the whole answer.
async fn fetch(socket: &std::path::Path, method: &Method, path: &str) -> Outcome {
    let failed = |e: String| Outcome { status: None, detail: e };
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e) => return failed(format!("connect {}: {e}", socket.display())),
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(pair) => pair,
        Err(e) => return failed(format!("handshake: {e}")),
    };
    tokio::task::spawn_local(connection);
    let mut request = Request::builder().method(method.clone()).uri(path).header("host", "localhost");
    if method == Method::POST {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::new()));
    let request = match request {
        Ok(request) => request,
        Err(e) => return failed(format!("request: {e}")),
    };
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => return failed(format!("send: {e}")),
    };
    let status = response.status().as_u16();
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return failed(format!("body: {e}")),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let detail = if status == 200 && json.get("auth").is_none() && json["data"].is_object() {
        // A secret: its version tells reads apart, never its value.
        format!("secret:v{}", json["version"].as_u64().unwrap_or(0))
    } else if status == 200 {
        match json["auth"]["accessor"].as_str().filter(|a| !a.is_empty()) {
            Some(accessor) => accessor.to_string(),
            // A batch token has no accessor: a hash of the token tells tokens apart without printing it.
            None => {
                use std::hash::BuildHasher as _;
                let token = json["auth"]["client_token"].as_str().unwrap_or_default();
                format!("batch:{:016x}", HASHER.with(|h| h.hash_one(token)))
            }
        }
    } else {
        json["error"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
    };
    Outcome { status: Some(status), detail }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<String, u64>,
    accessors: HashSet<String>,
    sample_accessor: Option<String>,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, outcome: Outcome, took: Option<Duration>) {
        let key = outcome.status.map(|s| s.to_string()).unwrap_or_else(|| "error".into());
        *self.statuses.entry(key).or_default() += 1;
        if outcome.status == Some(200) {
            if self.sample_accessor.is_none() {
                self.sample_accessor = Some(outcome.detail.clone());
            }
            self.accessors.insert(outcome.detail);
        } else if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {}", outcome.status.unwrap_or(0), outcome.detail));
        }
        if let Some(took) = took {
            self.latencies_us.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Args) -> (serde_json::Value, bool) {
    let args = Rc::new(args);
    let tally = Rc::new(std::cell::RefCell::new(Tally::default()));
    let mut warm = Tally::default();
    for _ in 0..args.warmup {
        warm.record(fetch(&args.socket, &args.method, &args.path).await, None);
    }
    let issued = Rc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (args, tally, issued) = (args.clone(), tally.clone(), issued.clone());
        workers.push(tokio::task::spawn_local(async move {
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < args.requests {
                let t0 = Instant::now();
                let outcome = fetch(&args.socket, &args.method, &args.path).await;
                let took = t0.elapsed();
                tally.borrow_mut().record(outcome, Some(took));
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    let mut tally = tally.take();
    tally.latencies_us.sort_unstable();
    let n = tally.latencies_us.len() as u64;
    let ok = tally.statuses.get("200").copied().unwrap_or(0);
    let mean = tally.latencies_us.iter().sum::<u64>().checked_div(n).unwrap_or(0);
    let l = &tally.latencies_us;
    let mut out = serde_json::json!({
        "socket": args.socket.display().to_string(),
        "path": args.path,
        "concurrency": args.concurrency,
        "warmup": { "requests": args.warmup, "statuses": warm.statuses, "first_error": warm.first_error },
        "requests": n,
        "ok": ok,
        "statuses": tally.statuses,
        "elapsed_secs": elapsed.as_secs_f64(),
        "throughput_per_sec": ok as f64 / elapsed.as_secs_f64(),
        "latency_us": {
            "min": l.first().copied().unwrap_or(0),
            "p50": percentile(l, 50.0),
            "p90": percentile(l, 90.0),
            "p99": percentile(l, 99.0),
            "max": l.last().copied().unwrap_or(0),
            "mean": mean,
        },
        "distinct_accessors": tally.accessors.len(),
        "sample_accessor": tally.sample_accessor,
        "first_error": tally.first_error,
    });
    if args.raw {
        out["latencies_us"] = serde_json::json!(tally.latencies_us);
    }
    let all_ok = n > 0 && ok == n && warm.first_error.is_none();
    (out, all_ok)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("token-load: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    if let Some(n) = args.hold {
        return hold(&args.socket, n);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("token-load: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let (report, all_ok) = local.block_on(&runtime, run(args));
    println!("{report}");
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Opens `n` idle connections and keeps them until killed.
fn hold(socket: &std::path::Path, n: u64) -> ExitCode {
    let mut held = Vec::new();
    for _ in 0..n {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(stream) => held.push(stream),
            Err(e) => {
                eprintln!("token-load: connecting to {}: {e}", socket.display());
                return ExitCode::from(1);
            }
        }
    }
    println!("held {}", held.len());
    loop {
        std::thread::park();
    }
}
