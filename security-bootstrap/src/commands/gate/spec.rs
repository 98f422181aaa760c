//! What `gate`'s secret flags mean, parsed and checked before anything is fetched or started (pure):
//! `--secret-env VAR=NAME[:KEY]`, `--secret-file PATH=NAME[:KEY]`, `--on-change`, and how a secret's
//! data becomes the text an app sees.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::Signal;
use openbao_client::api::kv::valid_secret_name;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Which value of which secret: the secret's name and, for a multi-key secret, one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The secret's name (the caller's own, as `GET /v1/secrets/<name>`).
    pub name: String,
    /// One key of the secret's data; `None`: the single `value`, or the whole object as JSON.
    pub key: Option<String>,
}

/// `--secret-env VAR=NAME[:KEY]`: the value in an environment variable of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDelivery {
    /// The variable.
    pub var: String,
    /// Its value's source.
    pub source: Source,
}

/// `--secret-file PATH=NAME[:KEY]`: the value in a file (0600, on a tmpfs unless `--allow-disk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDelivery {
    /// The file (absolute).
    pub path: PathBuf,
    /// Its content's source.
    pub source: Source,
}

/// `--on-change`: what the app is told when a secret it was given gets a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Stop the app (SIGTERM, then SIGKILL after the grace period) and start it again with the new values.
    Restart,
    /// Rewrite the files, then send the app this signal (e.g. SIGHUP to reload).
    Signal(Signal),
    /// Rewrite the files only: for apps that read their file at each use.
    None,
}

impl FromStr for OnChange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "restart" => Ok(Self::Restart),
            "none" => Ok(Self::None),
            _ => {
                let Some(name) = s.strip_prefix("signal:") else {
                    return Err(format!("{s:?}: give restart, none or signal:NAME (e.g. signal:HUP)"));
                };
                let upper = name.to_ascii_uppercase();
                let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
                match Signal::from_str(&full) {
                    Ok(Signal::SIGKILL | Signal::SIGSTOP) => {
                        Err(format!("{name}: an app cannot act on SIGKILL or SIGSTOP; use restart"))
                    }
                    Ok(signal) => Ok(Self::Signal(signal)),
                    Err(_) => Err(format!("{name:?} is not a signal name (e.g. HUP, USR1, SIGTERM)")),
                }
            }
        }
    }
}

/// Splits `NAME[:KEY]`.
fn source(text: &str, flag: &str, whole: &str) -> Result<Source, String> {
    let (name, key) = match text.split_once(':') {
        Some((name, key)) => (name, Some(key)),
        None => (text, None),
    };
    if !valid_secret_name(name) {
        return Err(format!(
            "{flag} {whole:?}: {name:?} is not a secret name (1-128 of [A-Za-z0-9._-], not '.' or '..')"
        ));
    }
    if let Some(key) = key {
        if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
            return Err(format!("{flag} {whole:?}: the key after ':' must be 1-256 printable characters"));
        }
    }
    Ok(Source { name: name.to_string(), key: key.map(str::to_string) })
}

impl FromStr for EnvDelivery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((var, rest)) = s.split_once('=') else {
            return Err(format!("--secret-env {s:?}: give VAR=NAME or VAR=NAME:KEY"));
        };
        let mut chars = var.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("--secret-env {s:?}: {var:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        Ok(Self { var: var.to_string(), source: source(rest, "--secret-env", s)? })
    }
}

impl FromStr for FileDelivery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A secret name has no '=', a path may: the last '=' ends the path.
        let Some((path, rest)) = s.rsplit_once('=') else {
            return Err(format!("--secret-file {s:?}: give PATH=NAME or PATH=NAME:KEY"));
        };
        // Checked on the text: `Path::components` would drop a "." silently.
        let plain =
            path.strip_prefix('/').is_some_and(|rest| rest.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        if !plain {
            return Err(format!(
                "--secret-file {s:?}: the path must be absolute, name a file and have no '.' or '..' in it"
            ));
        }
        Ok(Self { path: PathBuf::from(path), source: source(rest, "--secret-file", s)? })
    }
}

/// Everything `gate` delivers, checked as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deliveries {
    /// The environment variables.
    pub env: Vec<EnvDelivery>,
    /// The files.
    pub files: Vec<FileDelivery>,
}

impl Deliveries {
    /// Checks that no variable or file is given twice (nor is the token's own).
    pub fn new(
        env: Vec<EnvDelivery>,
        files: Vec<FileDelivery>,
        token_env: Option<&str>,
        token_file: Option<&Path>,
    ) -> Result<Self, String> {
        let mut vars: BTreeSet<&str> = token_env.into_iter().collect();
        for e in &env {
            if !vars.insert(&e.var) {
                return Err(format!("{} is given twice (--secret-env, --token-env)", e.var));
            }
        }
        let mut paths: BTreeSet<&Path> = token_file.into_iter().collect();
        for f in &files {
            if !paths.insert(&f.path) {
                return Err(format!("{} is given twice (--secret-file, --token-file)", f.path.display()));
            }
        }
        Ok(Self { env, files })
    }

    /// Whether nothing is delivered (a token-only gate).
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.files.is_empty()
    }

    /// The secrets to read, each once, in name order.
    pub fn names(&self) -> BTreeSet<&str> {
        let env = self.env.iter().map(|e| e.source.name.as_str());
        env.chain(self.files.iter().map(|f| f.source.name.as_str())).collect()
    }
}

/// The text an app is given for `source` out of the secret's data: with a key, that key's value (a
/// string as is, anything else as JSON); without, the single `value` as is, else the whole object as
/// JSON. A missing key names the keys there are (never their values).
pub fn render(source: &Source, data: &Map<String, Value>) -> Result<Zeroizing<String>, String> {
    let as_text = |value: &Value| match value {
        Value::String(s) => Zeroizing::new(s.clone()),
        other => Zeroizing::new(other.to_string()),
    };
    match &source.key {
        Some(key) => match data.get(key) {
            Some(value) => Ok(as_text(value)),
            None => {
                let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                Err(format!("secret {:?} has no key {key:?} (its keys: {})", source.name, keys.join(", ")))
            }
        },
        None => match (data.len(), data.get("value")) {
            (1, Some(value)) => Ok(as_text(value)),
            _ => Ok(Zeroizing::new(Value::Object(data.clone()).to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A table row: the flag's text, and what it parses to or part of the refusal.
    type Case<'a> = (&'a str, Result<(&'a str, Source), &'a str>);

    fn src(name: &str, key: Option<&str>) -> Source {
        Source { name: name.into(), key: key.map(Into::into) }
    }

    #[test]
    fn on_change_is_restart_none_or_a_catchable_signal() {
        let cases: &[(&str, Result<OnChange, &str>)] = &[
            ("restart", Ok(OnChange::Restart)),
            ("none", Ok(OnChange::None)),
            ("signal:HUP", Ok(OnChange::Signal(Signal::SIGHUP))),
            ("signal:hup", Ok(OnChange::Signal(Signal::SIGHUP))),
            ("signal:SIGUSR1", Ok(OnChange::Signal(Signal::SIGUSR1))),
            ("signal:TERM", Ok(OnChange::Signal(Signal::SIGTERM))),
            ("signal:KILL", Err("cannot act on SIGKILL")),
            ("signal:STOP", Err("cannot act on SIGKILL or SIGSTOP")),
            ("signal:", Err("is not a signal name")),
            ("signal:FOO", Err("is not a signal name")),
            ("HUP", Err("give restart, none or signal:NAME")),
            ("Restart", Err("give restart, none or signal:NAME")),
            ("", Err("give restart")),
        ];
        for (text, want) in cases {
            match (OnChange::from_str(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn secret_env_is_a_variable_name_then_a_secret_name_and_an_optional_key() {
        let cases: &[Case] = &[
            ("DB_PASSWORD=db-password", Ok(("DB_PASSWORD", src("db-password", None)))),
            ("_X=a.b_c:user", Ok(("_X", src("a.b_c", Some("user"))))),
            ("X=n:key:with:colons", Ok(("X", src("n", Some("key:with:colons"))))),
            ("X=n=m", Err("is not a secret name")),
            ("1X=n", Err("is not a variable name")),
            ("=n", Err("is not a variable name")),
            ("A-B=n", Err("is not a variable name")),
            ("X=", Err("is not a secret name")),
            ("X=../etc", Err("is not a secret name")),
            ("X=a/b", Err("is not a secret name")),
            ("X=..", Err("is not a secret name")),
            ("X=n:", Err("the key after ':'")),
            ("X=n:a\nb", Err("the key after ':'")),
            ("X", Err("give VAR=NAME")),
        ];
        for (text, want) in cases {
            match (EnvDelivery::from_str(text), want) {
                (Ok(got), Ok((var, source))) => {
                    assert_eq!((got.var.as_str(), &got.source), (*var, source), "{text}")
                }
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn secret_file_is_an_absolute_plain_path_then_a_secret_name_and_an_optional_key() {
        let cases: &[Case] = &[
            ("/run/secrets/db=db-password", Ok(("/run/secrets/db", src("db-password", None)))),
            ("/run/s/a=b=mqtt:password", Ok(("/run/s/a=b", src("mqtt", Some("password"))))),
            ("run/secrets/db=db", Err("must be absolute")),
            ("/run/../etc/shadow=db", Err("no '.' or '..'")),
            ("/run/./x=db", Err("no '.' or '..'")),
            ("/=db", Err("name a file")),
            ("/run//x=db", Err("name a file")),
            ("/run/x/=db", Err("name a file")),
            ("/run/x=", Err("is not a secret name")),
            ("/run/x=a/b", Err("is not a secret name")),
            ("/run/x", Err("give PATH=NAME")),
        ];
        for (text, want) in cases {
            match (FileDelivery::from_str(text), want) {
                (Ok(got), Ok((path, source))) => {
                    assert_eq!((got.path.as_path(), &got.source), (Path::new(path), source), "{text}")
                }
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_variable_or_file_is_delivered_once_and_never_where_the_token_goes() {
        let env = |s: &str| EnvDelivery::from_str(s).unwrap();
        let file = |s: &str| FileDelivery::from_str(s).unwrap();
        let ok = Deliveries::new(vec![env("A=x"), env("B=x:k")], vec![file("/run/a=y")], Some("TOKEN"), None).unwrap();
        assert_eq!(ok.names().into_iter().collect::<Vec<_>>(), ["x", "y"]);
        let twice = Deliveries::new(vec![env("A=x"), env("A=y")], vec![], None, None).unwrap_err();
        assert_eq!(twice, "A is given twice (--secret-env, --token-env)");
        assert!(Deliveries::new(vec![env("TOKEN=x")], vec![], Some("TOKEN"), None).is_err());
        let token_file = Path::new("/run/a");
        assert!(Deliveries::new(vec![], vec![file("/run/a=x")], None, Some(token_file)).is_err());
        assert!(Deliveries::new(vec![], vec![file("/run/a=x"), file("/run/a=y")], None, None).is_err());
        assert!(Deliveries::default().is_empty());
    }

    #[test]
    fn rendering_gives_the_single_value_as_is_a_key_s_value_or_the_object_as_json() {
        let data = |v: Value| v.as_object().unwrap().clone();
        let single = data(json!({"value": "s3cret\n"}));
        let multi = data(json!({"user": "app", "port": 5432, "value": "v"}));
        assert_eq!(*render(&src("a", None), &single).unwrap(), "s3cret\n");
        assert_eq!(*render(&src("a", Some("value")), &single).unwrap(), "s3cret\n");
        assert_eq!(*render(&src("a", Some("user")), &multi).unwrap(), "app");
        assert_eq!(*render(&src("a", Some("port")), &multi).unwrap(), "5432");
        assert_eq!(*render(&src("a", None), &multi).unwrap(), r#"{"port":5432,"user":"app","value":"v"}"#);
        let missing = render(&src("a", Some("password")), &multi).unwrap_err();
        assert_eq!(missing, r#"secret "a" has no key "password" (its keys: port, user, value)"#);
        assert!(!missing.contains("app"), "no value in the error");
    }
}
