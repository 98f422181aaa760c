//! Moving command and response bytes to and from the TPM, with a deadline on every I/O:
//! - **device** (`/dev/tpmrm0`, `/dev/tpm0`): opened read-write and non-blocking; the whole command in
//!   one `write()` (the kernel then runs it in the background), `poll()` for the answer until the
//!   deadline, the whole response in one `read()` (the kernel hands it over in one piece), as tpm2-tss's
//!   tcti-device does. The resource manager (`tpmrm0`) also flushes what we loaded when the descriptor
//!   is closed.
//! - **swtpm** (`--server type=tcp`): a TCP connection carrying raw TPM commands, no framing (swtpm
//!   detects the raw form), no control-port commands: swtpm must run with `--flags startup-clear` (or be
//!   started by someone else), as tcti-swtpm also assumes. Read and write timeouts follow the deadline;
//!   the response's header says how much more to read. swtpm serves one connection at a time, so the
//!   plug-in holds it only for one derivation.
//!
//! A response is read into a buffer wiped on drop: the HMAC response carries the IKM.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use zeroize::Zeroizing;

use super::params::Endpoint;
use super::wire::{response_size, Malformed, HEADER_LEN, MAX_RESPONSE};

/// Why a transaction did not produce response bytes.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// The TPM could not be reached: `cannot connect to HOST:PORT: connection refused`, `cannot open
    /// /dev/tpmrm0: permission denied`.
    Unreachable(String),
    /// No complete answer before the deadline.
    TimedOut,
    /// The connection failed or closed mid-transaction.
    Broken(String),
    /// The response's header is impossible (its size out of range).
    Malformed(Malformed),
}

/// An open connection to a TPM.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A TPM character device.
    Device(Device<File>),
    /// swtpm's command port.
    Swtpm(TcpStream),
}

impl Transport {
    /// Opens the device or connects to swtpm, by `deadline`.
    pub(crate) fn open(endpoint: &Endpoint, deadline: Instant) -> Result<Self, TransportError> {
        match endpoint {
            Endpoint::Device(path) => open_device(path).map(|file| Self::Device(Device(file))),
            Endpoint::Swtpm { host, port } => connect(host, *port, deadline).map(Self::Swtpm),
        }
    }

    /// Sends one command and reads its response, by `deadline`.
    pub(crate) fn transact(&mut self, command: &[u8], deadline: Instant) -> Result<Zeroizing<Vec<u8>>, TransportError> {
        match self {
            Self::Device(device) => device.transact(command, deadline),
            Self::Swtpm(stream) => stream_transact(stream, command, deadline),
        }
    }
}

fn open_device(path: &Path) -> Result<File, TransportError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|e| TransportError::Unreachable(format!("cannot open {}: {}", path.display(), reason(&e))))
}

/// The addresses of `host`: an IP literal or `localhost` without asking a resolver; any other name on
/// a thread of its own, so that a resolver that never answers cannot outlast the deadline (the thread
/// is left behind: the plug-in exits right after).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<std::net::SocketAddr>, TransportError> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host == "localhost" {
        return Ok(vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        ]);
    }
    let (sender, answer) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = sender.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| TransportError::Unreachable(format!("cannot resolve {host}: {}", reason(&e))))?;
    let Some(left) = left(deadline) else { return Err(TransportError::TimedOut) };
    match answer.recv_timeout(left) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(TransportError::Unreachable(format!("cannot resolve {host}: {}", reason(&e)))),
        Err(_) => Err(TransportError::TimedOut),
    }
}

fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, TransportError> {
    let target = format!("{host}:{port}");
    let addrs = resolve(host, port, deadline)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        let Some(left) = left(deadline) else { return Err(TransportError::TimedOut) };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                // Commands are written whole; without this a small write can wait for a delayed ACK.
                stream.set_nodelay(true).map_err(|e| TransportError::Broken(reason(&e)))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    if last.kind() == io::ErrorKind::TimedOut {
        return Err(TransportError::TimedOut);
    }
    Err(TransportError::Unreachable(format!("cannot connect to {target}: {}", reason(&last))))
}

/// Time left until `deadline`, if any.
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

fn stream_transact(
    stream: &mut TcpStream,
    command: &[u8],
    deadline: Instant,
) -> Result<Zeroizing<Vec<u8>>, TransportError> {
    let mut written = 0;
    while written < command.len() {
        let left = left(deadline).ok_or(TransportError::TimedOut)?;
        stream.set_write_timeout(Some(left)).map_err(|e| TransportError::Broken(reason(&e)))?;
        match stream.write(&command[written..]) {
            Ok(0) => return Err(TransportError::Broken("the TPM closed the connection".to_owned())),
            Ok(n) => written += n,
            Err(e) => return Err(io_failure(&e)),
        }
    }
    let mut header = [0u8; HEADER_LEN];
    read_full(stream, &mut header, deadline)?;
    let size = response_size(&header).map_err(TransportError::Malformed)?;
    let mut response = Zeroizing::new(vec![0u8; size]);
    response[..HEADER_LEN].copy_from_slice(&header);
    read_full(stream, &mut response[HEADER_LEN..], deadline)?;
    Ok(response)
}

/// Fills `buf` from the stream, each read bounded by the time left.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), TransportError> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = left(deadline).ok_or(TransportError::TimedOut)?;
        stream.set_read_timeout(Some(left)).map_err(|e| TransportError::Broken(reason(&e)))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(TransportError::Broken("the TPM closed the connection".to_owned())),
            Ok(n) => filled += n,
            Err(e) => return Err(io_failure(&e)),
        }
    }
    Ok(())
}

fn io_failure(e: &io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::TimedOut,
        _ => TransportError::Broken(reason(e)),
    }
}

/// A TPM character device (or, in tests, anything that behaves like one: a socket).
#[derive(Debug)]
pub(crate) struct Device<T>(pub(crate) T);

impl<T: Read + Write + AsFd> Device<T> {
    /// One `write()` of the whole command, `poll()` until the deadline, one `read()` of the response.
    pub(crate) fn transact(&mut self, command: &[u8], deadline: Instant) -> Result<Zeroizing<Vec<u8>>, TransportError> {
        match self.0.write(command) {
            Ok(n) if n == command.len() => {}
            Ok(_) => return Err(TransportError::Broken("the device took part of the command".to_owned())),
            Err(e) => return Err(TransportError::Broken(reason(&e))),
        }
        loop {
            let left = left(deadline).ok_or(TransportError::TimedOut)?;
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => return Err(TransportError::TimedOut),
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(TransportError::Broken(reason(&io::Error::from(e)))),
            }
        }
        let mut response = Zeroizing::new(vec![0u8; MAX_RESPONSE]);
        let n = loop {
            match self.0.read(&mut response) {
                Ok(0) => return Err(TransportError::Broken("the device gave an empty response".to_owned())),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_failure(&e)),
            }
        };
        response.truncate(n);
        Ok(response)
    }
}

/// An OS error as a lowercase reason without the `(os error N)` suffix: `connection refused`.
fn reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::unix::net::UnixStream;
    use std::thread;

    use super::*;

    const OK: [u8; 10] = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];

    #[test]
    fn a_device_answers_in_one_read_and_a_silent_one_times_out() {
        let (ours, mut tpm) = UnixStream::pair().unwrap();
        let mut device = Device(ours);
        let fake = thread::spawn(move || {
            let mut buf = [0u8; 64];
            let n = tpm.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"command");
            tpm.write_all(&OK).unwrap();
            tpm // kept open, silent
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(&device.transact(b"command", deadline).unwrap()[..], &OK);
        let _tpm = fake.join().unwrap();
        let started = Instant::now();
        let silent = device.transact(b"again", started + Duration::from_millis(200));
        assert!(matches!(silent, Err(TransportError::TimedOut)), "{silent:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn swtpm_responses_are_read_by_their_header_size_within_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fake = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 14];
            conn.read_exact(&mut buf).unwrap();
            // The response in two pieces, then a header announcing more than ever comes.
            conn.write_all(&[0x80, 0x01, 0, 0, 0, 14, 0, 0]).unwrap();
            thread::sleep(Duration::from_millis(50));
            conn.write_all(&[0, 0, 1, 2, 3, 4]).unwrap();
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&[0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0]).unwrap();
            conn.read_exact(&mut buf).unwrap();
            conn.write_all(&[0x80, 0x01, 0, 0, 0x10, 0x01, 0, 0, 0, 0]).unwrap(); // 4097 bytes
            conn
        });
        let endpoint = Endpoint::Swtpm { host: "127.0.0.1".into(), port };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut t = Transport::open(&endpoint, deadline).unwrap();
        let cmd = [0x80, 0x01, 0, 0, 0, 14, 0, 0, 0x01, 0x65, 0x80, 0, 0, 0];
        assert_eq!(&t.transact(&cmd, deadline).unwrap()[..], &[0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0, 1, 2, 3, 4]);
        let started = Instant::now();
        let short = t.transact(&cmd, started + Duration::from_millis(200));
        assert!(matches!(short, Err(TransportError::TimedOut)), "{short:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let huge = t.transact(&cmd, Instant::now() + Duration::from_secs(5));
        assert!(matches!(huge, Err(TransportError::Malformed(_))), "{huge:?}");
        drop(fake.join().unwrap());
    }

    #[test]
    fn unreachable_tpms_are_named_with_a_plain_reason() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
        let deadline = Instant::now() + Duration::from_secs(5);
        match Transport::open(&Endpoint::Swtpm { host: "127.0.0.1".into(), port }, deadline) {
            Err(TransportError::Unreachable(r)) => {
                assert_eq!(r, format!("cannot connect to 127.0.0.1:{port}: connection refused"))
            }
            other => panic!("{other:?}"),
        }
        match Transport::open(&Endpoint::Device("/dev/edgeseal-no-such-tpm".into()), deadline) {
            Err(TransportError::Unreachable(r)) => {
                assert_eq!(r, "cannot open /dev/edgeseal-no-such-tpm: no such file or directory");
            }
            other => panic!("{other:?}"),
        }
    }
}
