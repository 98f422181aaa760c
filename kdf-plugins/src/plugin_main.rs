//! What the shipped plug-in binaries' `main` functions share.

use std::io::Write;
use std::process::ExitCode;

/// Writes a plug-in's whole answer to stdout in one go; a closed or failing stdout is a runtime
/// failure (exit 1), reported on stderr under the plug-in's `name`.
pub fn write_stdout(name: &str, bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: writing to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}
