//! Turning a connection away without waiting: one small HTTP/1.1 answer (`{"error": ...}`,
//! `Connection: close`), then the socket is closed. While a few lingering slots are free, the server
//! reads and discards what the client sends for a moment after answering, so a client that writes its
//! request first (curl does) reads the answer instead of failing on a closed socket; without a free
//! slot it closes at once. Nothing here ever blocks the accept loop.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

use crate::api::{ErrorBody, MAX_BODY};

/// Shed connections kept open at once to deliver their answer (their descriptors come out of the
/// reserve in [`crate::descriptors::RESERVE`]).
pub const LINGER_SLOTS: usize = 64;
/// Longest a shed connection is kept open.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read (and discarded) from a shed connection.
const DRAIN: usize = MAX_BODY + 8192;

/// The complete answer sent to a shed connection.
pub fn response_bytes(status: StatusCode, message: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody { error: message.to_string() })
        .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// Answers `stream` with `status` and `message` and closes it, lingering only while `slots` has room.
pub fn shed(stream: UnixStream, status: StatusCode, message: &str, slots: &Arc<Semaphore>) {
    let answer = response_bytes(status, message);
    match slots.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(LINGER, linger(stream, &answer)).await;
                drop(permit);
            });
        }
        Err(_) => {
            // A fresh socket's send buffer is empty: this non-blocking write takes the whole answer.
            if let Ok(stream) = stream.into_std() {
                let _ = (&stream).write(&answer);
            }
        }
    }
}

async fn linger(mut stream: UnixStream, answer: &[u8]) -> std::io::Result<()> {
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    let mut buf = [0u8; 1024];
    let mut read = 0;
    while read < DRAIN {
        match stream.read(&mut buf).await? {
            0 => break,
            n => read += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_complete_http() {
        let cases = [
            (
                StatusCode::TOO_MANY_REQUESTS,
                "too many open connections from uid 7",
                "HTTP/1.1 429 Too Many Requests\r\n",
            ),
            (StatusCode::SERVICE_UNAVAILABLE, "full \"now\"", "HTTP/1.1 503 Service Unavailable\r\n"),
        ];
        for (status, message, first) in cases {
            let text = String::from_utf8(response_bytes(status, message)).unwrap();
            assert!(text.starts_with(first), "{text}");
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("connection: close"));
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let parsed: ErrorBody = serde_json::from_str(body).unwrap();
            assert_eq!(parsed.error, message);
        }
    }

    #[tokio::test]
    async fn a_shed_client_reads_the_answer_after_writing_its_request() {
        let (server, mut client) = UnixStream::pair().unwrap();
        client.write_all(b"POST /v1/token HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        shed(server, StatusCode::TOO_MANY_REQUESTS, "over", &Arc::new(Semaphore::new(1)));
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    }

    #[tokio::test]
    async fn without_a_lingering_slot_the_answer_is_still_written() {
        let (server, mut client) = UnixStream::pair().unwrap();
        shed(server, StatusCode::SERVICE_UNAVAILABLE, "full", &Arc::new(Semaphore::new(0)));
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
}
