//! OpenBao's standard output and error, copied line by line into `data_dir/openbao.log` by a thread of
//! the supervisor's, through a pipe: the log rotates at `secret_store.supervise.logs` like the audit
//! log (a file OpenBao held open itself could only grow), and the last line OpenBao wrote is at hand
//! to say why it died.
//!
//! A line that cannot be written (a full disk) is dropped and reported once; writing resumes by
//! itself once there is space. The pipe is always drained, so OpenBao never blocks on its log.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::sync::{Arc, Mutex, PoisonError};

use durable_file::log::LogFile;

/// A pipe, both ends close-on-exec: (read end, write end).
pub(super) fn pipe() -> std::io::Result<(File, File)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(read), File::from(write)))
}

/// Longest line kept whole; a longer one is cut there (its rest follows as further lines).
const MAX_LINE: usize = 16 * 1024;
/// Longest "last line" kept for reports.
const MAX_LAST_LINE: usize = 300;

/// The log file and the last line written to it, shared by the copies of successive OpenBao runs.
#[derive(Debug, Clone)]
pub(super) struct Output {
    log: Arc<Mutex<LogFile>>,
    last_line: Arc<Mutex<String>>,
}

impl Output {
    /// Output going to `log`.
    pub(super) fn new(log: LogFile) -> Self {
        Self { log: Arc::new(Mutex::new(log)), last_line: Arc::default() }
    }

    /// Copies `pipe` into the log until its writers are gone (OpenBao exited); on a thread.
    pub(super) fn copy(&self, pipe: File) -> std::io::Result<std::thread::JoinHandle<()>> {
        let this = self.clone();
        std::thread::Builder::new().name("openbao-output".into()).spawn(move || this.copy_all(pipe))
    }

    /// The last non-empty line OpenBao wrote (cut to a few hundred bytes).
    pub(super) fn last_line(&self) -> String {
        self.last_line.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn copy_all(&self, pipe: File) {
        let mut reader = BufReader::with_capacity(MAX_LINE, pipe);
        let mut line = Vec::with_capacity(1024);
        let mut failing = false;
        loop {
            line.clear();
            match read_line(&mut reader, &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            let text = String::from_utf8_lossy(&line);
            let trimmed = text.trim();
            if !trimmed.is_empty() {
                let end = (0..=trimmed.len().min(MAX_LAST_LINE)).rev().find(|&i| trimmed.is_char_boundary(i));
                *self.last_line.lock().unwrap_or_else(PoisonError::into_inner) =
                    trimmed[..end.unwrap_or(0)].to_string();
            }
            let written = self.log.lock().unwrap_or_else(PoisonError::into_inner).append(&line);
            match written {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("OpenBao's output is written to openbao.log again");
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot write OpenBao's output to openbao.log (a full disk?); its lines are dropped until it can");
                }
                _ => {}
            }
        }
    }
}

/// Reads up to a newline, or [`MAX_LINE`] bytes; 0 at the end of the pipe.
fn read_line(reader: &mut BufReader<File>, line: &mut Vec<u8>) -> std::io::Result<usize> {
    reader.take(MAX_LINE as u64).read_until(b'\n', line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use super::*;

    #[test]
    fn lines_are_copied_whole_and_the_last_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openbao.log");
        let output = Output::new(LogFile::new(path.clone(), 0, 1));
        let (reader, mut writer) = pipe().unwrap();
        let copying = output.copy(reader).unwrap();
        writer.write_all(b"==> OpenBao server started\nError parsing config: bad\n\n").unwrap();
        writer.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        let (reader, mut second) = pipe().unwrap();
        drop(writer);
        copying.join().unwrap();
        // The next run's output goes on in the same file; a long last line is kept cut.
        let copying = output.copy(reader).unwrap();
        second.write_all(format!("{}\n", "y".repeat(1000)).as_bytes()).unwrap();
        drop(second);
        copying.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..3], ["==> OpenBao server started", "Error parsing config: bad", ""]);
        assert_eq!(lines[3].len(), MAX_LINE, "a long line is cut");
        assert_eq!(lines[4].len(), 10);
        assert_eq!(lines[5].len(), 1000);
        assert_eq!(output.last_line(), "y".repeat(MAX_LAST_LINE));
    }

    #[test]
    fn a_line_that_cannot_be_written_is_dropped_and_the_pipe_still_drains() {
        let dir = tempfile::tempdir().unwrap();
        // The log's place is taken by a directory: every write fails.
        let path = dir.path().join("openbao.log");
        std::fs::create_dir(&path).unwrap();
        let output = Output::new(LogFile::new(path, 0, 1));
        let (reader, mut writer) = pipe().unwrap();
        let copying = output.copy(reader).unwrap();
        // More than a pipe holds: a writer that were not drained would block here.
        for _ in 0..4096 {
            writer.write_all(b"a line OpenBao wrote while the disk was full\n").unwrap();
        }
        drop(writer);
        copying.join().unwrap();
        assert_eq!(output.last_line(), "a line OpenBao wrote while the disk was full");
    }
}
