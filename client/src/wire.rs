//! The HTTP/1.1 codec of the token socket, without I/O: [`Request::encode`] writes one request
//! (`Connection: close`), [`parse_response`] reads an answer from the bytes received so far. Both
//! clients (blocking and tokio) use exactly these; only how bytes move differs. Public for the fuzz
//! target (`fuzz/fuzz_targets/client_response.rs`).
//!
//! The parser is strict where leniency could mislead and bounded everywhere: a status line
//! `HTTP/1.x NNN …`, at most [`MAX_HEADER_BYTES`] of headers, one `Content-Length` of digits or
//! `Transfer-Encoding: chunked` (never both), at most [`MAX_BODY`] of body; without either, the body
//! runs to the end of the stream. The token server (hyper, `Full` bodies) sends `Content-Length`;
//! chunked answers are read too, for a proxy or a later server.

use zeroize::Zeroizing;

/// Largest body accepted (a secret's data object, a token answer, a list of names).
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Largest status line plus header section accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest answer read from the stream in all (head, body and chunk framing).
pub const MAX_ANSWER: usize = MAX_HEADER_BYTES + 2 * MAX_BODY;
/// Longest chunk-size line accepted (size and extensions).
const MAX_CHUNK_LINE: usize = 64;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;

/// One request to the token socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path and query, already percent-safe (names are checked before they get here).
    pub target: String,
    /// A JSON body (`POST /v1/token`), never a secret.
    pub body: Option<String>,
}

impl Request {
    /// The bytes on the wire: request line, `Host`, `Connection: close`, and for a body its
    /// `Content-Type` and `Content-Length`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: edgeseal-client/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.method,
            self.target,
            env!("CARGO_PKG_VERSION")
        );
        match &self.body {
            Some(body) => {
                out.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ));
            }
            None => out.push_str("\r\n"),
        }
        out.into_bytes()
    }
}

/// A complete answer: its status and body (wiped on drop: it may hold a secret).
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The decoded body (chunks joined).
    pub body: Zeroizing<Vec<u8>>,
}

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole answer yet: read more (at end of stream this is a truncated answer).
    Incomplete,
    /// A whole answer.
    Complete(Response),
}

/// Why the bytes are not an HTTP answer edgeseal could have sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first line is not `HTTP/1.x NNN reason`.
    #[error("no HTTP status line in the answer")]
    StatusLine,
    /// A header line without a colon, with a bad name, or not text.
    #[error("a malformed header line in the answer")]
    Header,
    /// Too many header bytes or lines.
    #[error("the answer's headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} lines")]
    HeadersTooLarge,
    /// Not digits, or two that differ.
    #[error("a bad Content-Length in the answer")]
    ContentLength,
    /// A transfer coding other than `chunked`, or with a `Content-Length`.
    #[error("an unsupported Transfer-Encoding in the answer")]
    TransferEncoding,
    /// A chunk size line or chunk terminator that is not well-formed.
    #[error("a malformed chunk in the answer")]
    Chunk,
    /// More than [`MAX_BODY`].
    #[error("the answer's body exceeds {MAX_BODY} bytes")]
    BodyTooLarge,
    /// The stream ended before the answer did.
    #[error("the answer was cut off")]
    Truncated,
    /// A 1xx answer (never asked for: no `Expect` is sent).
    #[error("an unexpected informational (1xx) answer")]
    Informational,
}

/// How the body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    Eof,
}

/// Parses the answer in `buf`, which holds every byte received so far; `eof` says the peer closed
/// the stream (so nothing more will come).
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Parsed, WireError> {
    if let Some(line_end) = find(buf, b"\r\n") {
        // Not an HTTP server: refuse at its first line, without waiting for more.
        status_line(std::str::from_utf8(&buf[..line_end]).map_err(|_| WireError::StatusLine)?)?;
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        // (+ 3: the end could still be found straddling the next read, as a too-large head.)
        if buf.len() > MAX_HEADER_BYTES + 3 {
            return Err(WireError::HeadersTooLarge);
        }
        return if eof { Err(WireError::Truncated) } else { Ok(Parsed::Incomplete) };
    };
    if head_end > MAX_HEADER_BYTES {
        return Err(WireError::HeadersTooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| WireError::Header)?;
    let mut lines = head.split("\r\n");
    let status = status_line(lines.next().unwrap_or_default())?;
    let framing = framing(lines)?;
    let rest = &buf[head_end + 4..];
    let body = match framing {
        // 204 and 304 have no body whatever the headers say.
        _ if status == 204 || status == 304 => Some(Vec::new()),
        Framing::Length(len) => (rest.len() >= len).then(|| rest[..len].to_vec()),
        Framing::Chunked => dechunk(rest)?,
        Framing::Eof => {
            if rest.len() > MAX_BODY {
                return Err(WireError::BodyTooLarge);
            }
            eof.then(|| rest.to_vec())
        }
    };
    match body {
        Some(body) => Ok(Parsed::Complete(Response { status, body: Zeroizing::new(body) })),
        None if eof => Err(WireError::Truncated),
        // Chunk extensions could make the framing outgrow the body: bound the whole answer too.
        None if buf.len() > MAX_ANSWER => Err(WireError::BodyTooLarge),
        None => Ok(Parsed::Incomplete),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 200 OK` → 200 (the reason phrase may be empty).
fn status_line(line: &str) -> Result<u16, WireError> {
    let rest =
        line.strip_prefix("HTTP/1.1 ").or_else(|| line.strip_prefix("HTTP/1.0 ")).ok_or(WireError::StatusLine)?;
    let code = rest.get(..3).ok_or(WireError::StatusLine)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || !(rest.len() == 3 || rest[3..].starts_with(' ')) {
        return Err(WireError::StatusLine);
    }
    let status: u16 = code.parse().map_err(|_| WireError::StatusLine)?;
    match status {
        100..=199 => Err(WireError::Informational),
        200..=599 => Ok(status),
        _ => Err(WireError::StatusLine),
    }
}

/// The body's framing from the header lines.
fn framing<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Framing, WireError> {
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for (count, line) in lines.enumerate() {
        if count >= MAX_HEADERS {
            return Err(WireError::HeadersTooLarge);
        }
        let (name, value) = line.split_once(':').ok_or(WireError::Header)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err(WireError::Header);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError::ContentLength);
            }
            let parsed: usize = value.parse().map_err(|_| WireError::ContentLength)?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(WireError::ContentLength);
            }
            if parsed > MAX_BODY {
                return Err(WireError::BodyTooLarge);
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(WireError::TransferEncoding);
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(WireError::TransferEncoding),
        (Some(len), false) => Ok(Framing::Length(len)),
        (None, true) => Ok(Framing::Chunked),
        (None, false) => Ok(Framing::Eof),
    }
}

/// Joins the chunks of a chunked body: `None` while incomplete. Extensions after `;` are ignored;
/// trailers are skipped.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
    let mut body = Zeroizing::new(Vec::new());
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return if rest.len() > MAX_CHUNK_LINE + 1 { Err(WireError::Chunk) } else { Ok(None) };
        };
        if line_end > MAX_CHUNK_LINE {
            return Err(WireError::Chunk);
        }
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| WireError::Chunk)?;
        let size = line.split(';').next().unwrap_or_default().trim_matches([' ', '\t']);
        if size.is_empty() || size.len() > 8 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WireError::Chunk);
        }
        let size = usize::from_str_radix(size, 16).map_err(|_| WireError::Chunk)?;
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(WireError::BodyTooLarge);
        }
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let Some(end) = find(rest, b"\r\n") else {
                    return if rest.len() > MAX_HEADER_BYTES + 1 { Err(WireError::HeadersTooLarge) } else { Ok(None) };
                };
                if end > MAX_HEADER_BYTES {
                    return Err(WireError::HeadersTooLarge);
                }
                if end == 0 {
                    return Ok(Some(std::mem::take(&mut *body)));
                }
                rest = &rest[end + 2..];
            }
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err(WireError::Chunk);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], eof: bool) -> Result<(u16, Vec<u8>), WireError> {
        match parse_response(buf, eof)? {
            Parsed::Complete(r) => Ok((r.status, r.body.to_vec())),
            Parsed::Incomplete => Err(WireError::Truncated),
        }
    }

    #[test]
    fn a_request_is_one_closed_http11_exchange() {
        let get = Request { method: "GET", target: "/v1/secrets/db?service=a".into(), body: None };
        let text = String::from_utf8(get.encode()).unwrap();
        assert!(text.starts_with("GET /v1/secrets/db?service=a HTTP/1.1\r\nHost: localhost\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n") && text.ends_with("\r\n\r\n"), "{text}");
        assert!(!text.contains("Content-Length"), "a GET has no body: {text}");
        let post = Request { method: "POST", target: "/v1/token".into(), body: Some("{\"service\":\"a\"}".into()) };
        let text = String::from_utf8(post.encode()).unwrap();
        assert!(text.ends_with("Content-Length: 15\r\n\r\n{\"service\":\"a\"}"), "{text}");
    }

    #[test]
    fn well_formed_answers_are_read_by_their_framing() {
        let ok = |buf: &str, eof: bool, status: u16, body: &str| {
            assert_eq!(complete(buf.as_bytes(), eof), Ok((status, body.as_bytes().to_vec())), "{buf:?}");
        };
        ok("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}", false, 200, "{}");
        // The body stops at Content-Length; what follows is not part of it.
        ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage", false, 200, "{}");
        ok("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false, 404, "");
        ok("HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx", false, 200, "x");
        ok("HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", false, 200, "x");
        ok("HTTP/1.0 503 Service Unavailable\r\n\r\n{\"error\":\"sealed\"}", true, 503, "{\"error\":\"sealed\"}");
        ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc", false, 200, "abc");
        ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n4;ext=1\r\n:\"b\"\r\n1\r\n}\r\n0\r\n\r\n", false, 200, "{\"a\":\"b\"}");
        ok(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
            false,
            200,
            "0123456789",
        );
        ok("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", false, 204, "");
    }

    #[test]
    fn partial_answers_ask_for_more_and_are_truncated_at_end_of_stream() {
        let answers = [
            "",
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            "HTTP/1.1 200 OK\r\n\r\n{\"partial\"",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        ];
        for (i, buf) in answers.iter().enumerate() {
            let eof_ok = i == 3; // EOF-delimited: the end of the stream completes it
            assert_eq!(parse_response(buf.as_bytes(), false), Ok(Parsed::Incomplete), "{buf:?}");
            let at_eof = parse_response(buf.as_bytes(), true);
            if eof_ok {
                assert!(matches!(at_eof, Ok(Parsed::Complete(_))), "{buf:?}");
            } else {
                assert_eq!(at_eof, Err(WireError::Truncated), "{buf:?}");
            }
        }
    }

    #[test]
    fn hostile_answers_are_refused_with_the_reason() {
        let big_header = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES));
        let many_headers = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        let endless_header = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEADER_BYTES + 1));
        let cases: Vec<(&str, WireError)> = vec![
            ("garbage\r\n\r\n", WireError::StatusLine),
            ("SSH-2.0-OpenSSH_9.2\r\n", WireError::StatusLine),
            ("{\"error\":\"x\"}\r\n\r\n", WireError::StatusLine),
            ("HTTP/2 200 OK\r\n\r\n", WireError::StatusLine),
            ("HTTP/1.1 20 OK\r\n\r\n", WireError::StatusLine),
            ("HTTP/1.1 2000 OK\r\n\r\n", WireError::StatusLine),
            ("HTTP/1.1 +20 OK\r\n\r\n", WireError::StatusLine),
            ("HTTP/1.1 099 OK\r\n\r\n", WireError::StatusLine),
            ("HTTP/1.1 600 OK\r\n\r\n", WireError::StatusLine),
            ("HTTP/1.1 100 Continue\r\n\r\n", WireError::Informational),
            ("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", WireError::Header),
            ("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", WireError::Header),
            ("HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n", WireError::Header),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", WireError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", WireError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", WireError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", WireError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", WireError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", WireError::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 2097153\r\n\r\n", WireError::BodyTooLarge),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", WireError::TransferEncoding),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", WireError::TransferEncoding),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                WireError::TransferEncoding,
            ),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", WireError::TransferEncoding),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", WireError::Chunk),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", WireError::Chunk),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", WireError::Chunk),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n", WireError::Chunk),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFF\r\n", WireError::Chunk),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n200001\r\n", WireError::BodyTooLarge),
            (big_header.as_str(), WireError::HeadersTooLarge),
            (many_headers.as_str(), WireError::HeadersTooLarge),
            (endless_header.as_str(), WireError::HeadersTooLarge),
        ];
        for (buf, want) in cases {
            assert_eq!(parse_response(buf.as_bytes(), true), Err(want.clone()), "{buf:?}");
        }
        // Not text in the head.
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n", false), Err(WireError::Header));
        // A body without framing larger than the limit is refused before the end of the stream.
        let mut endless = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        endless.resize(endless.len() + MAX_BODY + 1, b'a');
        assert_eq!(parse_response(&endless, false), Err(WireError::BodyTooLarge));
        // Many small chunks adding up past the limit.
        let mut chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "a".repeat(1 << 20));
        for _ in 0..3 {
            chunks.extend_from_slice(chunk.as_bytes());
        }
        assert_eq!(parse_response(&chunks, false), Err(WireError::BodyTooLarge));
    }
}
