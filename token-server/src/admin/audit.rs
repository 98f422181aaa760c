//! "Which secrets did which service read, from which container or process, and who changed them"
//! (`security-bootstrap audit`, SPEC §12): edgeseal's audit log says which process of which service
//! got the token with a given accessor, and which admin changed what; OpenBao's audit log (its file
//! device logs accessors in clear) says which requests each accessor made. Joined on the accessor.
//!
//! Pure apart from reading the two files: [`join`] takes readers and returns the events, oldest
//! first. OpenBao's lines are parsed borrowing from the line, and only its response entries whose
//! accessor belongs to a token edgeseal issued become events (edgeseal's own requests, the admin
//! credential's, and the request entries that mirror each response are skipped).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::audit_log::{Caller, Line, Record};

/// What the events are filtered to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only this service's events.
    pub service: Option<String>,
    /// Only events at or after this instant.
    pub since: Option<SystemTime>,
    /// Only the newest this many events (memory stays bounded however long the logs are).
    pub limit: Option<usize>,
}

/// Where the services' secrets live in KV v2: `<mount>/data/<prefix>/<service>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLayout {
    /// The KV v2 mount.
    pub mount: String,
    /// The prefix below it.
    pub prefix: String,
}

impl KvLayout {
    /// The `(service, name)` a request path names, if it is one of the services' secrets (data,
    /// metadata, delete, destroy or undelete of it).
    pub fn secret_of<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        let rest = path.strip_prefix(self.mount.trim_matches('/'))?.strip_prefix('/')?;
        let (_, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix(self.prefix.trim_matches('/'))?.strip_prefix('/')?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [service, name] if !service.is_empty() && !name.is_empty() => Some((service, name)),
            _ => None,
        }
    }
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The token server issued a service its token.
    Issued,
    /// A service's token made a request of OpenBao.
    Request,
    /// An admin acted through the admin socket.
    Admin,
}

/// One event, oldest first in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// What it is.
    pub kind: Kind,
    /// The service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The process a service's token was issued to (for requests: the one that got the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    /// The admin's uid (admin events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_uid: Option<u32>,
    /// The admin's pid (admin events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_pid: Option<i32>,
    /// The admin's executable (admin events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_exe: Option<String>,
    /// `read`, `update`, … (requests); `set`, `get`, `rotate`, `rm`, `destroy` (admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The OpenBao path (requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `service/name` when the event concerns one of the services' secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secret's version read or written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// OpenBao's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    at: Option<SystemTime>,
}

impl Event {
    /// An event at `time` (as a log wrote it; shown in one format when it parses).
    fn new(time: String, at: Option<SystemTime>, kind: Kind) -> Self {
        Self {
            time: at.map(|at| humantime::format_rfc3339_micros(at).to_string()).unwrap_or(time),
            kind,
            service: None,
            caller: None,
            admin_uid: None,
            admin_pid: None,
            admin_exe: None,
            operation: None,
            path: None,
            secret: None,
            version: None,
            error: None,
            at,
        }
    }
}

/// The joined events and what could not be read.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Oldest first.
    pub events: Vec<Event>,
    /// Lines of either log that were not records (a torn last line, another format).
    pub unreadable_lines: usize,
    /// Older events left out by [`Query::limit`].
    pub omitted: usize,
    /// Requests OpenBao logged for accessors edgeseal's log does not know (tokens issued before
    /// its log starts, or edgeseal's own credentials).
    pub unattributed_requests: usize,
}

/// Joins edgeseal's records (already read, oldest first) with OpenBao's audit log.
pub fn join(
    edgeseal: impl IntoIterator<Item = Line>,
    openbao: impl BufRead,
    layout: &KvLayout,
    query: &Query,
) -> io::Result<Report> {
    let mut report = Report::default();
    let mut issued: HashMap<String, (String, Caller)> = HashMap::new();
    for line in edgeseal {
        let at = humantime::parse_rfc3339_weak(&line.time).ok();
        let event = match line.record {
            Record::Issued { service, accessor, caller, secret, version } => {
                // A batch token has no accessor: its requests cannot be told from unauthenticated
                // ones (whose accessor is empty too), so they are not attributed.
                if !accessor.is_empty() {
                    issued.insert(accessor, (service.clone(), caller.clone()));
                }
                Event {
                    secret: secret.map(|name| format!("{service}/{name}")),
                    version,
                    service: Some(service),
                    caller: Some(caller),
                    ..Event::new(line.time, at, Kind::Issued)
                }
            }
            Record::Admin { uid, pid, exe, action, service, name, version } => Event {
                admin_exe: exe,
                secret: Some(format!("{service}/{name}")),
                service: Some(service),
                admin_uid: Some(uid),
                admin_pid: pid,
                operation: Some(action),
                version,
                ..Event::new(line.time, at, Kind::Admin)
            },
        };
        if wanted(&event, query) {
            report.events.push(event);
        }
    }
    for line in openbao.lines() {
        let line = line?;
        // Cheap test first: only response entries become events.
        if !line.contains(r#""type":"response""#) {
            continue;
        }
        // Most lines of a real log are other tokens' (edgeseal's own, operators'): skip those without
        // parsing them.
        if !accessors_in(&line).any(|a| issued.contains_key(a)) {
            report.unattributed_requests += usize::from(accessors_in(&line).next().is_some());
            continue;
        }
        let Ok(entry) = serde_json::from_str::<Entry<'_>>(&line) else {
            report.unreadable_lines += 1;
            continue;
        };
        let Some(accessor) = entry.auth.as_ref().and_then(|a| a.accessor.as_deref()) else { continue };
        let Some((service, caller)) = issued.get(accessor) else {
            report.unattributed_requests += 1;
            continue;
        };
        let at = humantime::parse_rfc3339_weak(&entry.time).ok();
        let request = entry.request.unwrap_or_default();
        let event = Event {
            service: Some(service.clone()),
            caller: Some(caller.clone()),
            secret: layout.secret_of(&request.path).map(|(s, n)| format!("{s}/{n}")),
            operation: Some(request.operation.into_owned()),
            path: Some(request.path.into_owned()),
            version: entry.response.and_then(|r| r.data).and_then(|d| d.metadata).and_then(|m| m.version),
            error: entry.error.map(Cow::into_owned).filter(|e| !e.is_empty()),
            ..Event::new(entry.time.into_owned(), at, Kind::Request)
        };
        if wanted(&event, query) {
            report.events.push(event);
            if query.limit.is_some_and(|limit| report.events.len() >= limit.saturating_mul(2).max(1024)) {
                keep_newest(&mut report, query.limit);
            }
        }
    }
    keep_newest(&mut report, query.limit);
    Ok(report)
}

/// Sorts the events oldest first (stable: events of one instant keep their order, edgeseal's before
/// OpenBao's) and keeps the newest `limit`, counting the others in `omitted`.
fn keep_newest(report: &mut Report, limit: Option<usize>) {
    report.events.sort_by_key(|e| e.at);
    if let Some(excess) = limit.and_then(|limit| report.events.len().checked_sub(limit)) {
        report.events.drain(..excess);
        report.omitted += excess;
    }
}

/// The values of every `"accessor":"…"` in an audit line, found without parsing it (OpenBao writes
/// compact JSON; an accessor holds no quote or backslash).
fn accessors_in(line: &str) -> impl Iterator<Item = &str> {
    const KEY: &str = r#""accessor":""#;
    line.match_indices(KEY).filter_map(move |(at, _)| line[at + KEY.len()..].split('"').next())
}

fn wanted(event: &Event, query: &Query) -> bool {
    let service = query.service.as_deref().is_none_or(|s| event.service.as_deref() == Some(s));
    let since = match (query.since, event.at) {
        (Some(since), Some(at)) => at >= since,
        (Some(_), None) => false,
        (None, _) => true,
    };
    service && since
}

/// The parts of an OpenBao audit entry the join reads.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow, default)]
    auth: Option<Auth<'a>>,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Auth<'a> {
    #[serde(borrow, default)]
    accessor: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Request<'a> {
    #[serde(borrow, default)]
    operation: Cow<'a, str>,
    #[serde(borrow, default)]
    path: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    data: Option<ResponseData>,
}

#[derive(Deserialize)]
struct ResponseData {
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn layout() -> KvLayout {
        KvLayout { mount: "secret".into(), prefix: "edgeseal".into() }
    }

    fn line(time: &str, record: Record) -> Line {
        Line { time: time.into(), record }
    }

    fn issued(time: &str, service: &str, accessor: &str, pid: i32) -> Line {
        let caller = Caller { pid: Some(pid), uid: Some(1000), container: None, container_name: None };
        line(
            time,
            Record::Issued { service: service.into(), accessor: accessor.into(), caller, secret: None, version: None },
        )
    }

    fn bao(time: &str, accessor: &str, operation: &str, path: &str) -> String {
        serde_json::json!({
            "time": time, "type": "response",
            "auth": {"accessor": accessor, "client_token": "hmac-sha256:aa"},
            "request": {"operation": operation, "path": path, "id": "x"},
            "response": {"data": {"data": {"value": "hmac-sha256:bb"}, "metadata": {"version": 3}}}
        })
        .to_string()
    }

    fn bao_log(lines: &[String]) -> io::Cursor<Vec<u8>> {
        io::Cursor::new(lines.join("\n").into_bytes())
    }

    #[test]
    fn kv_paths_name_the_services_secrets_and_nothing_else() {
        let cases = [
            ("secret/data/edgeseal/alpha/db", Some(("alpha", "db"))),
            ("secret/metadata/edgeseal/alpha/db", Some(("alpha", "db"))),
            ("secret/data/edgeseal/alpha", None),
            ("secret/data/edgeseal/alpha/db/x", None),
            ("secret/data/other/alpha/db", None),
            ("secretx/data/edgeseal/alpha/db", None),
            ("auth/token/lookup-self", None),
        ];
        for (path, want) in cases {
            assert_eq!(layout().secret_of(path), want, "{path}");
        }
    }

    #[test]
    fn a_batch_token_without_accessor_claims_no_request() {
        let edgeseal = vec![issued("2026-11-30T10:00:00Z", "fast", "", 11)];
        let openbao = bao_log(&[
            bao("2026-11-30T10:00:01Z", "", "read", "secret/data/edgeseal/fast/db"),
            bao("2026-11-30T10:00:02Z", "", "read", "sys/health"),
        ]);
        let report = join(edgeseal, openbao, &layout(), &Query::default()).unwrap();
        let kinds: Vec<_> = report.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [Kind::Issued], "{:?}", report.events);
    }

    #[test]
    fn a_services_reads_are_attributed_to_the_process_its_token_was_issued_to() {
        let edgeseal = vec![
            issued("2026-11-30T10:00:00.000001Z", "alpha", "accA", 11),
            issued("2026-11-30T10:00:00.000002Z", "beta", "accB", 22),
            line(
                "2026-11-30T10:00:05Z",
                Record::Admin {
                    uid: 0,
                    pid: Some(5),
                    exe: None,
                    action: "set".into(),
                    service: "alpha".into(),
                    name: "db".into(),
                    version: Some(3),
                },
            ),
        ];
        let openbao = bao_log(&[
            // The request entry mirroring a response: skipped.
            bao("2026-11-30T10:00:01Z", "accA", "read", "secret/data/edgeseal/alpha/db").replace("response", "request"),
            bao("2026-11-30T10:00:01.5Z", "accA", "read", "secret/data/edgeseal/alpha/db"),
            bao("2026-11-30T10:00:02Z", "accB", "read", "secret/data/edgeseal/beta/db"),
            // edgeseal's own credential: not a service's.
            bao("2026-11-30T10:00:03Z", "accAdmin", "update", "secret/data/edgeseal/alpha/db"),
            // A torn line of a known token's response.
            r#"{"type":"response","auth":{"accessor":"accA","client_token":"hm"#.into(),
        ]);
        let report = join(edgeseal, openbao, &layout(), &Query::default()).unwrap();
        let kinds: Vec<_> = report.events.iter().map(|e| (e.kind, e.service.as_deref().unwrap())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Issued, "alpha"),
                (Kind::Issued, "beta"),
                (Kind::Request, "alpha"),
                (Kind::Request, "beta"),
                (Kind::Admin, "alpha")
            ]
        );
        let read = &report.events[2];
        assert_eq!(read.caller.as_ref().unwrap().pid, Some(11));
        assert_eq!(read.secret.as_deref(), Some("alpha/db"));
        assert_eq!(read.operation.as_deref(), Some("read"));
        assert_eq!(read.version, Some(3));
        assert_eq!(report.events[4].admin_uid, Some(0));
        assert_eq!(report.unattributed_requests, 1);
        assert_eq!(report.unreadable_lines, 1);
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("accA") && !json.contains("hmac-sha256"), "{json}");
    }

    #[test]
    fn a_limit_keeps_the_newest_events_and_counts_the_others() {
        let edgeseal = vec![issued("2026-11-30T10:00:00Z", "alpha", "accA", 11)];
        let lines: Vec<String> = (0..3000)
            .map(|i| {
                bao(
                    &format!("2026-11-30T11:{:02}:{:02}Z", i / 60 % 60, i % 60),
                    "accA",
                    "read",
                    "secret/data/edgeseal/alpha/db",
                )
            })
            .collect();
        let query = Query { limit: Some(10), ..Query::default() };
        let report = join(edgeseal, bao_log(&lines), &layout(), &query).unwrap();
        assert_eq!(report.events.len(), 10);
        assert_eq!(report.omitted, 2991);
        assert_eq!(report.events.last().unwrap().time, "2026-11-30T11:49:59.000000Z");
        assert!(report.events.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn service_and_since_filter_every_kind_of_event() {
        let edgeseal = vec![
            issued("2026-11-30T09:00:00Z", "alpha", "old", 1),
            issued("2026-11-30T10:00:00Z", "alpha", "accA", 11),
            issued("2026-11-30T10:00:00Z", "beta", "accB", 22),
        ];
        let openbao = bao_log(&[
            bao("2026-11-30T09:30:00Z", "old", "read", "secret/data/edgeseal/alpha/db"),
            bao("2026-11-30T10:30:00Z", "accA", "read", "secret/data/edgeseal/alpha/db"),
            bao("2026-11-30T10:30:00Z", "accB", "read", "secret/data/edgeseal/beta/db"),
        ]);
        let since = humantime::parse_rfc3339("2026-11-30T10:00:00Z").unwrap();
        let query = Query { service: Some("alpha".into()), since: Some(since), limit: None };
        let report = join(edgeseal, openbao, &layout(), &query).unwrap();
        assert_eq!(report.events.len(), 2, "{:?}", report.events);
        assert!(report.events.iter().all(|e| e.service.as_deref() == Some("alpha") && e.at >= Some(since)));
        assert!(report.events.iter().all(|e| e.caller.as_ref().unwrap().pid == Some(11)));
        // A token issued before `since` still attributes later requests (the map sees every line).
        let query = Query { service: None, since: Some(since + Duration::from_secs(60)), limit: None };
        let openbao = bao_log(&[bao("2026-11-30T10:30:00Z", "old", "read", "secret/data/edgeseal/alpha/db")]);
        let report = join(vec![issued("2026-11-30T09:00:00Z", "alpha", "old", 1)], openbao, &layout(), &query).unwrap();
        assert_eq!(report.events.len(), 1);
        assert_eq!(report.events[0].caller.as_ref().unwrap().pid, Some(1));
    }
}
