//! A token server for tests: set up a real OpenBao with services, then serve the token socket
//! in-process on a background runtime, stopped (gracefully) on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openbao_client::Token;
use secretstore_setup::setup::{Setup, ITEM_ISSUER};
use secretstore_setup::KeystoreDir;
use token_server::attest::Attestor;
use token_server::config::{ServerConfig, ServiceRule};
use token_server::{Server, State};

use crate::device::DEVICE_IKM;

/// A running token server.
#[derive(Debug)]
pub struct TestServer {
    /// The shared state (metrics, rules).
    pub state: Arc<State>,
    socket: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Python (stdlib) for test callers of the token socket: `ask(s)` sends a token request on the
/// connected socket `s` and prints the whole answer; `ask(s, then)` runs `then()` between sending
/// and reading (to exit, exec or change credentials while the server attests the caller).
/// Scripts are `[PY_ASK_TOKEN, rest].concat()`.
pub const PY_ASK_TOKEN: &str = r#"
import socket, sys
def ask(s, then=lambda: None):
    s.sendall(b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    then()
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    sys.stdout.write(data.decode(errors="replace"))
"#;

/// The issuing token `setup` stored in the device's keystore.
pub fn issuer_token(keystore_dir: &Path) -> Token {
    let store = KeystoreDir::new(keystore_dir);
    let ikm = kdf_plugins::Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = store.open_with_ikm(&ikm).expect("setup must run before the token server");
    Token::new(std::str::from_utf8(keystore.item(ITEM_ISSUER).expect("issuer item").expose()).unwrap())
}

impl TestServer {
    /// Starts a server for `rules` on `config.socket`, with the issuing token from `setup`'s keystore,
    /// assembled exactly as the binary assembles it ([`token_server::State::assemble`]; Docker from
    /// `config.docker_socket` when a rule has a docker selector). `docker`: the daemon socket to
    /// attest containers with (overrides `config.docker_socket`). `tune` adjusts the attestor (test hooks).
    pub fn start(
        setup: &Setup,
        mut config: ServerConfig,
        rules: Vec<ServiceRule>,
        docker: Option<&Path>,
        tune: impl FnOnce(&mut Attestor),
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let client =
            openbao_client::Client::new(&setup.store.address, &setup.ca_cert, &setup.server_pin, config.store_timeout)
                .unwrap();
        if let Some(docker) = docker {
            config.docker_socket = Some(docker.to_path_buf());
        }
        let socket = config.socket.clone();
        let wants_docker = docker.is_some() && rules.iter().any(|r| r.selectors.docker.is_some());
        let mut state = runtime.block_on(State::assemble(config, rules, client, issuer_token(&setup.keystore.dir)));
        assert!(!wants_docker || state.attestor.docker().is_some(), "the test Docker daemon is not reachable");
        tune(&mut state.attestor);
        let server = Server::from(state);
        let state = server.state().clone();
        let listener = runtime.block_on(async { server.bind() }).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = runtime.spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        Self { state, socket, runtime: Some(runtime), stop: Some(stop), done: Some(done) }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs a future on the server's runtime (for in-process clients).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(future)
    }

    /// The server's runtime handle.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("running").handle().clone()
    }

    /// Stops gracefully and returns what `serve` returned.
    pub fn stop(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match (self.done.take(), self.runtime.as_ref()) {
            (Some(done), Some(runtime)) => runtime.block_on(done).unwrap_or(Ok(())),
            _ => Ok(()),
        };
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        result
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A minimal HTTP/1.1 client over the socket: sends `raw` bytes and returns (status, body).
pub fn raw_request(socket: &Path, raw: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One answer of the token socket as a client sees it, never a panic: for loops that must record
/// every outcome (the reliability test, the soak benchmark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer: status and body.
    Status(u16, String),
    /// No answer within the time allowed.
    Hang,
    /// The connection failed or was cut.
    Broken(String),
}

/// `POST /v1/token` over HTTP/1.1, closing the connection after the answer.
pub const TOKEN_REQUEST: &[u8] =
    b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// `GET /v1/health`, closing the connection after the answer.
pub const HEALTH_REQUEST: &[u8] = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Sends `raw` on a new connection to `socket`; the answer, [`Answer::Hang`] after `hang` without one.
pub fn answer(socket: &Path, raw: &[u8], hang: std::time::Duration) -> Answer {
    use std::io::{Read, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => return Answer::Broken(format!("connect: {e}")),
    };
    if let Err(e) = stream.set_read_timeout(Some(hang)).and_then(|()| stream.write_all(raw)) {
        return Answer::Broken(format!("write: {e}"));
    }
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Answer::Hang,
        Err(e) => Answer::Broken(format!("read: {e}")),
        Ok(_) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match text.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                Some(status) => {
                    Answer::Status(status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
                }
                None => Answer::Broken(format!("not HTTP: {text:?}")),
            }
        }
    }
}

/// Services fetching tokens in a loop, `clients` threads of this process (which must be the
/// configured service), each request timed and its answer kept: for the reliability test and the
/// soak benchmark. After each request a thread waits `pause` (at least 10 ms after a 503, as a
/// client backs off); [`TokenLoop::quiet`] holds them so that the server can be measured with no
/// request in flight.
#[derive(Debug)]
pub struct TokenLoop {
    stop: Arc<std::sync::atomic::AtomicBool>,
    paused: Arc<std::sync::atomic::AtomicBool>,
    /// Each request: when it was sent, when its answer came, the answer.
    answers: Arc<std::sync::Mutex<Vec<(Instant, Instant, Answer)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

impl TokenLoop {
    /// Starts `clients` threads asking `socket` for a token, pausing `pause` between requests.
    pub fn start(socket: &Path, clients: usize, pause: Duration) -> Self {
        let mut this =
            Self { stop: Arc::default(), paused: Arc::default(), answers: Arc::default(), threads: Vec::new() };
        this.threads = (0..clients)
            .map(|_| {
                let (stop, paused, answers) = (this.stop.clone(), this.paused.clone(), this.answers.clone());
                let socket = socket.to_path_buf();
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        if paused.load(Relaxed) {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        let sent = Instant::now();
                        let got = answer(&socket, TOKEN_REQUEST, Duration::from_secs(15));
                        let backoff = if matches!(got, Answer::Status(503, _)) {
                            Duration::from_millis(10)
                        } else {
                            Duration::ZERO
                        };
                        answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
                            sent,
                            Instant::now(),
                            got,
                        ));
                        std::thread::sleep(pause.max(backoff));
                    }
                })
            })
            .collect();
        this
    }

    /// Waits (up to `within`) for the first 200 to a request sent after `since`; when it came.
    pub fn first_token_after(&self, since: Instant, within: Duration) -> Option<Instant> {
        crate::poll_until(within, || {
            let answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            answers
                .iter()
                .find(|(sent, _, got)| *sent > since && matches!(got, Answer::Status(200, _)))
                .map(|(_, answered, _)| *answered)
        })
    }

    /// `f`, run while no request is in flight.
    pub fn quiet<T>(&self, f: impl FnOnce() -> T) -> T {
        self.paused.store(true, Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let out = f();
        self.paused.store(false, Relaxed);
        out
    }

    /// Stops the threads; every answer, in the order they came.
    pub fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
        let answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        answers.iter().map(|(_, _, got)| got.clone()).collect()
    }
}

impl Drop for TokenLoop {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}
