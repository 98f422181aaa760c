//! `security-bootstrap status [--json]`: the device at a glance, from the admin socket's
//! `GET /v1/status` (SPEC §12). Same client and exit codes as `secrets`: 0 reported, 1 failure,
//! 77 refused (not an admin uid), 69 the admin socket is unavailable.

use std::io::Write;

use anyhow::Context;
use hyper::Method;
use serde_json::Value;

use super::secrets::call;
use crate::cli::StatusArgs;

/// Runs `status`.
pub fn run(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    report(args, "/v1/status", write_table, out)
}

/// `GET path` on the admin socket, printed as JSON (`--json`) or by `table`.
pub(crate) fn report(
    args: &StatusArgs,
    path: &str,
    table: fn(&Value, &mut dyn Write) -> std::io::Result<()>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let answer = runtime.block_on(call(&args.socket, Method::GET, path, None))?;
    if args.json {
        writeln!(out, "{answer}")?;
    } else {
        table(&answer, out)?;
    }
    Ok(())
}

/// A JSON value in a table cell: strings bare, null as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The human report: store, cluster and fleet, certificates, services.
pub fn write_table(status: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    let store = &status["store"];
    writeln!(
        out,
        "store      {} ({}; seal {}; OpenBao {})",
        text(&store["state"]),
        text(&store["address"]),
        text(&store["seal_type"]),
        text(&store["version"])
    )?;
    if let Some(error) = store["error"].as_str() {
        writeln!(out, "           {error}")?;
    }
    let cluster = &status["cluster"];
    match (cluster["members"].as_u64(), cluster["error"].as_str()) {
        (Some(members), _) => writeln!(
            out,
            "cluster    {members} members ({} voting), leader {} (`cluster status` for each member)",
            text(&cluster["voters"]),
            text(&cluster["leader"])
        )?,
        (None, Some(error)) => writeln!(out, "cluster    unknown: {error}")?,
        (None, None) => writeln!(out, "cluster    {}", text(cluster))?,
    }
    writeln!(out, "fleet      {}", text(&status["fleet"]))?;
    writeln!(out, "watchdog   {} unseal(s) since boot", text(&status["watchdog_unseals"]))?;
    writeln!(out)?;
    writeln!(out, "{:<24} EXPIRES", "CERTIFICATE")?;
    for cert in status["certificates"].as_array().into_iter().flatten() {
        writeln!(out, "{:<24} {}", text(&cert["name"]), text(&cert["not_after_text"]))?;
    }
    writeln!(out)?;
    writeln!(out, "{:<20} {:>7} {:>7}  {:<40} SECRETS", "SERVICE", "ISSUED", "DENIED", "SELECTORS")?;
    for service in status["services"].as_array().into_iter().flatten() {
        let secrets = match service["secrets"].as_array() {
            Some(names) => names.iter().map(text).collect::<Vec<_>>().join(", "),
            None => "(store not answering)".into(),
        };
        writeln!(
            out,
            "{:<20} {:>7} {:>7}  {:<40} {}",
            text(&service["name"]),
            text(&service["tokens_issued"]),
            text(&service["tokens_denied"]),
            text(&service["selectors"]),
            secrets
        )?;
    }
    writeln!(
        out,
        "{:<20} {:>7} {:>7}  (callers no service matched)",
        "-",
        "",
        text(&status["tokens_denied_unmatched"])
    )?;
    for service in status["services"].as_array().into_iter().flatten() {
        if let Some(until) = service["batch_tokens_valid_until"].as_str() {
            writeln!(
                out,
                "{}: batch tokens issued since boot stay valid until {until} (they cannot be revoked)",
                text(&service["name"])
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_each_part_of_the_status() {
        let status = json!({
            "store": {"address": "https://127.0.0.1:8200", "state": "active", "sealed": false, "version": "2.4.1", "seal_type": "static"},
            "cluster": "not configured", "fleet": "not configured",
            "certificates": [{"name": "openbao", "not_after": 1, "not_after_text": "2027-01-01T00:00:00Z"}],
            "services": [
                {"name": "demo", "selectors": "unix uid=0", "secrets": ["greeting"], "tokens_issued": 3, "tokens_denied": 1},
                {"name": "fast", "selectors": "unix uid=1", "secrets": [], "tokens_issued": 1, "tokens_denied": 0,
                 "batch_tokens_valid_until": "2026-12-01T10:00:00Z"},
            ],
            "tokens_denied_unmatched": 2, "watchdog_unseals": 0,
        });
        let mut out = Vec::new();
        write_table(&status, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        for want in
            ["store      active", "seal static", "not configured", "openbao", "2027-01-01", "unix uid=0", "greeting"]
        {
            assert!(out.contains(want), "{want} missing:\n{out}");
        }
        let demo = out.lines().find(|l| l.starts_with("demo")).unwrap();
        assert_eq!(demo.split_whitespace().take(3).collect::<Vec<_>>(), ["demo", "3", "1"]);
        assert!(out.contains("fast: batch tokens issued since boot stay valid until 2026-12-01T10:00:00Z"), "{out}");
        assert!(!out.contains("demo: batch"), "{out}");
    }
}
