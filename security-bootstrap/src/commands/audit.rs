//! `security-bootstrap audit`: who read what, and who changed it (SPEC §12), from the admin socket's
//! `GET /v1/audit` (edgeseal's audit log joined with OpenBao's on the token accessor).
//!
//! The table has one row per event, oldest first: when, which service, who (the process or container
//! the service's token was issued to, or the admin's uid), and what (a token issued, a request of
//! OpenBao with its path and the secret's version, an admin action). `--json` prints one JSON object
//! per event and line, for tools (`jq`, log shippers). Exit codes as for `secrets`.

use std::io::Write;

use anyhow::Context;
use hyper::Method;
use serde_json::Value;
use token_server::admin::routes::valid_name;

use super::secrets::call;
use crate::cli::AuditArgs;
use crate::UsageError;

/// Runs `audit`.
pub fn run(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(service) = &args.service {
        if !valid_name(service) {
            return Err(UsageError(format!("{service:?} is not a service name")).into());
        }
        query.push(format!("service={service}"));
    }
    if let Some(since) = args.since {
        query.push(format!("since={}", since.as_secs().max(1)));
    }
    query.push(format!("limit={}", args.limit));
    let path = format!("/v1/audit?{}", query.join("&"));
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let answer = runtime.block_on(call(&args.socket, Method::GET, &path, None))?;
    let events = answer["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    // One write per event would be one system call per line on a line-buffered stdout.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    if args.json {
        for event in events {
            writeln!(out, "{event}")?;
        }
        return Ok(out.flush()?);
    }
    writeln!(out, "{:<27}  {:<16} {:<36} WHAT", "TIME", "SERVICE", "WHO")?;
    for event in events {
        writeln!(
            out,
            "{:<27}  {:<16} {:<36} {}",
            printable(event["time"].as_str().unwrap_or_default()),
            printable(event["service"].as_str().unwrap_or("-")),
            printable(&who(event)),
            printable(&what(event))
        )?;
    }
    if answer["sources"]["openbao"].is_null() {
        writeln!(
            out,
            "note: OpenBao's audit log is not known (external store without audit.openbao_log): only tokens issued and admin actions are listed"
        )?;
    }
    if let Some(n) = answer["omitted"].as_u64().filter(|n| *n > 0) {
        writeln!(out, "note: {n} older events left out (--limit {})", args.limit)?;
    }
    if let Some(n) = answer["unreadable_lines"].as_u64().filter(|n| *n > 0) {
        writeln!(out, "note: {n} lines of the audit logs were not records and were skipped")?;
    }
    Ok(())
}

/// `text` with control characters (a terminal's escape sequences) shown as `\u{…}` escapes: paths
/// and OpenBao's errors come from what a service asked, container names from Docker.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// The process or container a service's token went to, or the admin.
fn who(event: &Value) -> String {
    if let Some(uid) = event["admin_uid"].as_u64() {
        return match event["admin_pid"].as_i64() {
            Some(pid) => format!("admin uid {uid} (pid {pid})"),
            None => format!("admin uid {uid}"),
        };
    }
    let caller = &event["caller"];
    let pid = caller["pid"].as_i64().map(|p| format!("pid {p}")).unwrap_or_default();
    match (caller["container_name"].as_str(), caller["container"].as_str()) {
        (Some(name), _) => format!("{pid} container {name}"),
        (None, Some(id)) => format!("{pid} container {id}"),
        (None, None) => format!("{pid} uid {}", caller["uid"].as_u64().map(|u| u.to_string()).unwrap_or("?".into())),
    }
}

fn what(event: &Value) -> String {
    let text = |key: &str| event[key].as_str().unwrap_or_default();
    let version = event["version"].as_u64().map(|v| format!(" v{v}")).unwrap_or_default();
    let outcome = event["error"].as_str().map(|e| format!(" — failed: {e}")).unwrap_or_default();
    match text("kind") {
        "issued" => "token issued".to_string(),
        "admin" => format!("{} {}{version}", text("operation"), text("secret")),
        _ => match event["secret"].as_str() {
            Some(secret) => format!("{} {secret}{version}{outcome}", text("operation")),
            None => format!("{} {}{outcome}", text("operation"), text("path")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_no_control_character_a_service_or_docker_chose() {
        assert_eq!(printable("secret/data/a\u{1b}[2Jb"), "secret/data/a\\u{1b}[2Jb");
        assert_eq!(printable("line\nbreak"), "line\\u{a}break");
        assert_eq!(printable("démo/mqtt-password v1"), "démo/mqtt-password v1");
    }
}
