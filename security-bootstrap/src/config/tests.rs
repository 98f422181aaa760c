use super::*;

/// Where pki-init puts the root CA by default; OpenBao's certificate must chain to it.
const DEFAULT_CA_CERT: &str = "/run/edgeseal/pki/ca/ca.pem";

fn parse_err(text: &str) -> ParseError {
    match Config::parse(text) {
        Ok(config) => panic!("{text:?} was accepted: {config:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_reference_config_parses() {
    let text = include_str!("../../../edgeseal.example.yaml");
    let config = Config::parse(text).unwrap();
    assert_eq!(config.kdf.plugin, Path::new("/usr/libexec/edgeseal/edgeseal-kdf-hwfp"));
    assert_eq!(config.keystore.dir, Path::new("/var/lib/edgeseal"));
    let services = config.service_setups();
    assert_eq!(services.len(), 2);
    let core = services.iter().find(|s| s.name == "core-data").unwrap();
    assert_eq!(core.secrets, ["redis-password"]);
    assert_eq!(core.file_token.map(|o| (o.uid, o.gid)), Some((2002, 2001)));
    assert_eq!(core.token.period, Some(std::time::Duration::from_secs(3600)));
    let defaults = SecretStoreConfig { ca_cert: Some(DEFAULT_CA_CERT.into()), ..SecretStoreConfig::default() };
    assert_eq!(config.secret_store, defaults, "the reference shows the defaults");
    assert_eq!(config.ca_cert(), Path::new(DEFAULT_CA_CERT));
}

#[test]
fn a_config_serializes_to_yaml_that_parses_to_the_same_value() {
    for text in [include_str!("../../../edgeseal.example.yaml"), include_str!("../../../packaging/edgeseal.host.yaml")]
    {
        let config = Config::parse(text).unwrap();
        let yaml = serde_yaml_ng::to_string(&config).unwrap();
        let again = Config::parse(&yaml).unwrap_or_else(|e| panic!("{e} at {}:\n{yaml}", e.location));
        assert_eq!(again, config, "{yaml}");
    }
}

#[test]
fn service_rules_carry_the_role_secretstore_setup_makes() {
    let config = Config::parse("services:\n  core-data:\n    selectors:\n      unix: { uid: 5 }\n").unwrap();
    let rules = config.service_rules();
    assert_eq!(rules[0].role, policy::service_role_name("core-data"));
    assert!(rules[0].role.starts_with(policy::SERVICE_PREFIX));
}

#[test]
fn a_batch_service_rule_asks_for_its_ttl_and_says_it_is_batch() {
    let text = "services:\n  a:\n    token: { type: batch, ttl: 15m }\n  b:\n    token: { ttl: 1h, period: 2h }\n";
    let config = Config::parse(text).unwrap();
    let rules = config.service_rules();
    assert_eq!((rules[0].batch, rules[0].ttl), (true, Some(std::time::Duration::from_secs(900))));
    assert_eq!((rules[1].batch, rules[1].ttl), (false, None));
    let setups = config.service_setups();
    assert_eq!(policy::service_role(&setups[0])["token_type"], "batch");
    assert_eq!(policy::service_role(&setups[1])["token_type"], "service");
}

#[test]
fn the_three_gateway_example_names_distinct_members_that_join_the_first() {
    let configs = [
        include_str!("../../../docker/cluster/gw1.yaml"),
        include_str!("../../../docker/cluster/gw2.yaml"),
        include_str!("../../../docker/cluster/gw3.yaml"),
    ]
    .map(|text| Config::parse(text).unwrap());
    let first = &configs[0].secret_store;
    let mut ports = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        let cluster = config.secret_store.cluster.as_ref().unwrap();
        let listen = config.secret_store.supervised_listen().unwrap();
        ports.extend([listen.port(), listen.port() + 1]);
        assert_eq!(cluster.node_id, ["edgeseal-node1", "gw2", "gw3"][index]);
        assert_eq!(cluster.join, if index == 0 { vec![] } else { vec![first.address.clone()] });
        assert_eq!(config.service_setups(), configs[0].service_setups(), "the same services on every member");
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 6, "API and cluster ports all distinct: {ports:?}");
}

#[test]
fn the_host_install_example_parses() {
    let config = Config::parse(include_str!("../../../packaging/edgeseal.host.yaml")).unwrap();
    assert!(config.secret_store.supervise.is_some());
    assert_eq!(config.service_rules().len(), 2);
}

/// One bad configuration per rule of every section: the message, the line (and column) of the key,
/// and the key path.
#[test]
fn every_rule_of_every_section_is_checked_at_load_with_line_and_key() {
    // (text, line, column (0: not asserted), key, message)
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        // The schema, while deserializing.
        ("kdf:\n  plugin: /x\n  plugins: 1\n", 3, 3, "kdf.plugins", "kdf: unknown field `plugins`"),
        ("keystore:\n  dir: /x\nkfd: {}\n", 3, 1, "kfd", "unknown field `kfd`"),
        ("kdf:\n  timeout: soon\n", 2, 12, "kdf.timeout", "kdf.timeout"),
        ("kdf:\n  protocol: ikm-v2\n", 2, 13, "kdf.protocol", "unknown variant `ikm-v2`"),
        ("services:\n  Core Data: {}\n", 2, 3, "services", "service name \"Core Data\" is not valid"),
        ("services:\n  a:\n    secrets: [\"../b\"]\n", 3, 5, "services.a", "secret name \"../b\" is not valid"),
        ("services:\n  a:\n    seed_file: edgex/secrets.json\n", 3, 0, "services.a", "seed_file edgex/secrets.json must be an absolute path"),
        ("services:\n  a:\n    seed_file: /\n", 3, 0, "services.a", "seed_file / must be an absolute path to a file"),
        ("secret_store:\n  kv_mount: \"Sys\"\n", 2, 3, "secret_store.kv_mount", "secret_store.kv_mount: \"Sys\" is not a valid name"),
        ("secret_store:\n  server_cert: relative/cert.pem\n", 2, 0, "secret_store.server_cert", "neither an absolute path"),
        ("token_server:\n  max_connections: -1\n", 2, 0, "token_server.max_connections", "invalid type: integer `-1`"),
        // kdf: (validated while deserializing, by kdf-plugins)
        ("kdf:\n  plugin: relative/path\n", 2, 3, "kdf.plugin", "kdf.plugin must be an absolute path"),
        ("kdf:\n  timeout: 0s\n", 2, 3, "kdf.timeout", "kdf.timeout must be between"),
        ("kdf:\n  plugin: /x\n  args: []\n  timeout: 0s\n", 4, 3, "kdf.timeout", "kdf.timeout must be between"),
        ("pki:\n  certs: {}\n  dir: relative\n", 3, 3, "pki.dir", "pki.dir must be an absolute directory"),
        ("secret_store:\n  address: https://127.0.0.1:8200\n  service_prefix: \"A\"\n", 3, 3, "secret_store.service_prefix", "secret_store.service_prefix: \"A\" is not a valid name"),
        ("secret_store:\n  shares: 3\n  server_cert: rel\n", 3, 3, "secret_store.server_cert", "secret_store.server_cert: \"rel\" is neither"),
        ("pki:\n  certs:\n    a: { usages: [server] }\n", 3, 0, "pki.certs.a.sans", "missing field `sans`"),
        ("kdf:\n  protocol: edgex\n  args: [x]\n", 3, 3, "kdf.args", "kdf.args cannot be used with protocol edgex"),
        // pki: (validated while deserializing, by pki-init)
        ("pki:\n  dir: relative\n", 2, 0, "pki.dir", "pki.dir must be an absolute directory"),
        ("pki:\n  leaf_validity: 0s\n", 2, 0, "pki.leaf_validity", "pki.leaf_validity must be between"),
        ("pki:\n  certs:\n    ca: { sans: [x] }\n", 3, 5, "pki.certs", "`ca` cannot name a certificate"),
        ("pki:\n  certs:\n    a: { sans: [] }\n", 3, 0, "pki.certs.a", "sans must list at least one"),
        ("pki:\n  leaf_validity: 3650d\n", 2, 3, "pki.leaf_validity", "must be shorter than pki.ca_validity"),
        // secret_store: (secretstore-setup's rules, run once the file is parsed)
        ("secret_store:\n  server_cert: ca-only\n  shares: 0\n", 3, 3, "secret_store.shares", "secret_store.shares must be between 1 and 255, got 0"),
        ("secret_store:\n  server_cert: ca-only\n  shares: 256\n", 3, 3, "secret_store.shares", "got 256"),
        ("secret_store:\n  server_cert: ca-only\n  shares: 3\n  threshold: 4\n", 4, 3, "secret_store.threshold", "secret_store.threshold must be between 1 and shares (3), got 4"),
        ("secret_store:\n  server_cert: ca-only\n  threshold: 0\n", 3, 3, "secret_store.threshold", "got 0"),
        ("secret_store:\n  server_cert: ca-only\n  wait_timeout: 0s\n", 3, 3, "secret_store.wait_timeout", "secret_store.wait_timeout must be longer than 0s"),
        ("secret_store:\n  server_cert: ca-only\n  watchdog_interval: 0s\n", 3, 3, "secret_store.watchdog_interval", "watchdog_interval must be longer"),
        ("secret_store:\n  server_cert: ca-only\n  request_timeout: 0ms\n", 3, 3, "secret_store.request_timeout", "request_timeout must be longer"),
        ("secret_store:\n  server_cert: ca-only\n  address: http://127.0.0.1:8200\n", 3, 3, "secret_store.address", "secret_store.address must be https://HOST:PORT"),
        ("secret_store:\n  address: https://bao.local:8200/v1\n  server_cert: ca-only\n", 2, 3, "secret_store.address", "with no path"),
        (
            "pki:\n  certs:\n    openbao: { sans: [localhost] }\nsecret_store:\n  address: https://localhost:8200\n  supervise: { binary: /b, data_dir: /d }\n",
            5, 3, "secret_store.address", "a supervised OpenBao listens on secret_store.address, which must be https://IP:PORT",
        ),
        (
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  address: https://127.0.0.1:8200\n  supervise:\n    binary: /b\n    data_dir: /d\n    logs: { max_size: 1000 }\n",
            9, 5, "secret_store.supervise.logs", "secret_store.supervise.logs: max_size 1000 is out of range",
        ),
        (
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  address: https://127.0.0.1:8200\n  supervise:\n    binary: /b\n    data_dir: /d\n    logs: { keep: 0 }\n",
            9, 5, "secret_store.supervise.logs", "keep 0 is out of range",
        ),
        // token_server: (token-server's rules)
        ("token_server:\n  socket: token.sock\n", 2, 3, "token_server.socket", "token_server.socket must be an absolute path"),
        ("token_server:\n  docker_socket: docker.sock\n", 2, 3, "token_server.docker_socket", "token_server.docker_socket must be an absolute path"),
        ("token_server:\n  max_connections: 0\n", 2, 3, "token_server.max_connections", "token_server.max_connections must be at least 1"),
        ("token_server:\n  max_connections_per_peer: 0\n", 2, 3, "token_server.max_connections_per_peer", "max_connections_per_peer must be at least 1"),
        ("token_server:\n  max_connections_per_uid: 0\n", 2, 3, "token_server.max_connections_per_uid", "max_connections_per_uid must be at least 1"),
        ("token_server:\n  rate_burst: 0\n", 2, 3, "token_server.rate_burst", "token_server.rate_burst must be at least 1"),
        (
            "token_server:\n  max_connections_per_peer: 300\n  max_connections_per_uid: 200\n",
            2, 3, "token_server.max_connections_per_peer", "max_connections_per_peer (300) must not exceed max_connections_per_uid (200)",
        ),
        ("token_server:\n  header_timeout: 0s\n", 2, 3, "token_server.header_timeout", "token_server.header_timeout must be longer than 0s"),
        ("token_server:\n  store_timeout: 0s\n", 2, 3, "token_server.store_timeout", "store_timeout must be longer"),
        ("token_server:\n  health_cache: 5m\n", 2, 3, "token_server.health_cache", "token_server.health_cache must be at most 1m, got 5m"),
        // services: selectors taken together (token-server's check_selectors)
        (
            "services:\n  a:\n    selectors:\n      unix: { path: /usr/bin/a }\n",
            4, 7, "services.a.selectors.unix", "services.a.selectors.unix: give uid",
        ),
        (
            "services:\n  a:\n    selectors: { docker: {} }\n",
            3, 18, "services.a.selectors.docker", "services.a.selectors.docker is empty",
        ),
        (
            "services:\n  a:\n    selectors:\n      docker: { labels: {} }\n",
            4, 7, "services.a.selectors.docker", "would match every container",
        ),
        (
            "services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a }\n  b:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/b }\n",
            6, 5, "services.b.selectors", "services a and b could both match a process of uid 998",
        ),
        // services: token settings (batch tokens cannot be renewed or revoked)
        (
            "services:\n  a:\n    token: { type: batch, ttl: 15m, period: 1h }\n",
            3, 14, "services.a.token.type", "services.a.token.type is batch, which cannot have a period: batch tokens cannot be renewed",
        ),
        (
            "services:\n  a:\n    reuse: true\n    token:\n      type: batch\n",
            5, 7, "services.a.token.type", "cannot be combined with reuse: true",
        ),
        (
            "services:\n  a:\n    file_token: { uid: 1, gid: 1 }\n    token: { type: batch, ttl: 5m }\n",
            4, 14, "services.a.token.type", "cannot be combined with file_token",
        ),
        (
            "services:\n  a:\n    token:\n      type: batch\n      ttl: 2h\n",
            5, 7, "services.a.token.ttl", "services.a.token.ttl is 2h for a batch token, above token_server.max_batch_ttl (1h): batch tokens cannot be revoked",
        ),
        (
            "token_server:\n  max_batch_ttl: 10m\nservices:\n  a:\n    token: { type: batch, ttl: 15m }\n",
            5, 27, "services.a.token.ttl", "above token_server.max_batch_ttl (10m)",
        ),
        ("services:\n  a:\n    token: { type: batch, ttl: 0s }\n", 3, 27, "services.a.token.ttl", "must be longer than 0s for a batch token"),
        ("token_server:\n  max_batch_ttl: 0s\n", 2, 3, "token_server.max_batch_ttl", "token_server.max_batch_ttl must be longer than 0s"),
        ("services:\n  a:\n    token: { type: bulk }\n", 3, 20, "services.a.token.type", "unknown variant `bulk`, expected `service` or `batch`"),
        // Which server is OpenBao: secret_store and pki together.
        (
            "secret_store:\n  address: https://127.0.0.1:8200\npki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\n    rogue: { sans: [127.0.0.1] }\n",
            6, 14, "pki.certs.rogue.sans", "pki.certs.rogue: SANs cover 127.0.0.1",
        ),
        (
            "pki:\n  certs:\n    web:\n      sans: [LOCALHOST]\n    openbao: { sans: [localhost] }\nsecret_store:\n  address: https://localhost:8200\n",
            4, 7, "pki.certs.web.sans", "pose as OpenBao",
        ),
        (
            "secret_store:\n  supervise: { binary: /b, data_dir: /d }\n  server_cert: ca-only\n",
            2, 3, "secret_store.supervise", "a supervised OpenBao needs a TLS certificate: add pki.certs.openbao",
        ),
        (
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  server_cert: ca-only\n  supervise: { binary: /b, data_dir: /d }\n",
            5, 3, "secret_store.server_cert", "a supervised OpenBao serves pki.certs.openbao",
        ),
        (
            "secret_store:\n  address: https://bao.example:8200\n",
            1, 1, "secret_store.server_cert", "secret_store.server_cert is required when pki.certs.openbao does not exist",
        ),
        // secret_store.cluster: a supervised, static-sealed member; plain node ids; https://IP:PORT joins.
        (
            "secret_store:\n  server_cert: ca-only\n  cluster: { node_id: gw2 }\n",
            3, 3, "secret_store.cluster", "a cluster member is a supervised, static-sealed OpenBao",
        ),
        (
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  address: https://127.0.0.1:8200\n  supervise: { binary: /b, data_dir: /d, seal: shamir }\n  cluster: { node_id: gw2 }\n",
            7, 3, "secret_store.cluster", "seal: static",
        ),
        (
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  address: https://127.0.0.1:8200\n  supervise: { binary: /b, data_dir: /d }\n  cluster: { node_id: \"gw 2\" }\n",
            7, 3, "secret_store.cluster", "node_id \"gw 2\" is not 1 to 64",
        ),
        (
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  address: https://127.0.0.1:8200\n  supervise: { binary: /b, data_dir: /d }\n  cluster: { node_id: gw2, join: [gw1:8200] }\n",
            7, 3, "secret_store.cluster", "join address \"gw1:8200\" is not https://IP:PORT",
        ),
    ];
    let mut wrong = Vec::new();
    for &(text, line, column, key, want) in cases {
        let error = parse_err(text);
        let got = (error.location.line, error.location.column, error.key.clone().unwrap_or_default());
        if got != (line, if column == 0 { error.location.column } else { column }, key.to_string())
            || !error.to_string().contains(want)
        {
            wrong.push(format!("{text:?}: got {got:?} {error}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for &(text, line, column, key, want) in cases {
        let error = parse_err(text);
        let message = error.to_string();
        assert!(message.contains(want), "{text:?}: {message}");
        assert!(!message.contains(" at line "), "the location is printed once, first: {message}");
        assert_eq!(error.location.line, line, "{text:?}: {message}");
        if column != 0 {
            assert_eq!(error.location.column, column, "{text:?}: {message}");
        }
        let want_key = (!key.is_empty()).then_some(key);
        assert_eq!(error.key.as_deref(), want_key, "{text:?}: {message}");
    }
}

#[test]
fn rules_pass_on_what_they_allow() {
    let ok = [
        "services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a }\n",
        "services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a, systemd_unit: a.service }\n  b:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/b, systemd_unit: b.service }\n  c:\n    file_token: { uid: 2002, gid: 2002 }\n",
        "secret_store:\n  address: https://127.0.0.1:8200\npki:\n  certs:\n    openbao: { sans: [127.0.0.1, localhost] }\n    client: { sans: [127.0.0.1], usages: [client] }\n    svc: { sans: [svc, 10.0.0.5] }\n",
        "token_server:\n  rate_per_second: 0\n  health_cache: 0s\n  docker_socket: null\n",
        "token_server:\n  max_connections: 1\n  max_connections_per_peer: 5\n  max_connections_per_uid: 5\n",
        // Batch tokens at the cap; a service-token service may still be periodic, shared and filed.
        "token_server:\n  max_batch_ttl: 2h\nservices:\n  a:\n    token: { type: batch, ttl: 2h }\n  b:\n    reuse: true\n    file_token: { uid: 1, gid: 1 }\n    token: { type: service, ttl: 1h, period: 1h }\n",
        // No `secret_store:` section: a file for `kdf check` or `keystore` commands needs no pin.
        "kdf:\n  plugin: /usr/bin/kdf\nkeystore:\n  dir: /k\n",
        // A leaf pinned explicitly may cover the store's address.
        "secret_store:\n  address: https://127.0.0.1:8200\n  server_cert: /p/bao/cert.pem\npki:\n  dir: /p\n  certs:\n    bao: { sans: [127.0.0.1] }\n",
    ];
    for text in ok {
        if let Err(e) = Config::parse(text) {
            panic!("{text:?}: {e} at {}", e.location);
        }
    }
}

#[test]
fn a_file_without_a_final_line_break_gets_a_location_on_its_last_line() {
    for text in ["kdf:\n  plugin: [", "kdf: {plugin: /x", "services:\n  a: {", "a: 1\r\nb: '"] {
        let error = parse_err(text);
        let lines = locate::clamp(text, Location { line: usize::MAX, column: 1 }).line;
        assert!(error.location.line <= lines, "{text:?}: line {} of {lines}: {error}", error.location);
        assert!(!error.to_string().contains(" at line "), "{text:?}: one location, first: {error}");
    }
    let error = parse_err("kdf: {plugin: /x");
    assert_eq!((error.location.line, error.location.column), (1, 17), "{error}");
}

#[test]
fn parser_positions_are_taken_out_of_messages() {
    let cases = [
        ("x at line 2 column 1, while parsing a flow mapping at line 1 column 6", "x, while parsing a flow mapping"),
        ("kdf: unknown field `a` at line 3 column 3", "kdf: unknown field `a`"),
        ("the value at line seven", "the value at line seven"),
        ("at line 3 column", "at line 3 column"),
        ("plain", "plain"),
    ];
    for (message, want) in cases {
        assert_eq!(without_positions(message), want, "{message}");
    }
}

#[test]
fn load_reports_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgeseal.yaml");
    std::fs::write(&path, "token_server:\n  socket: /run/t.sock\n  rate_burst: 0\n").unwrap();
    let error = Config::load(&path).unwrap_err();
    assert!(matches!(error, ConfigError::Invalid { .. }), "a config error, exit 64: {error}");
    let want = format!("config {}:3:3: token_server.rate_burst must be at least 1", path.display());
    assert!(error.to_string().starts_with(&want), "{error}");
}

#[test]
fn the_pin_is_openbaos_leaf_or_explicit() {
    use openbao_client::Pin;
    let with_leaf = Config::parse("pki:\n  dir: /p\n  certs:\n    openbao: { sans: [127.0.0.1] }\n").unwrap();
    assert_eq!(with_leaf.server_pin().unwrap(), Pin::ServerCert("/p/openbao/cert.pem".into()));
    let ca_only = Config::parse("secret_store:\n  server_cert: ca-only\n").unwrap();
    assert_eq!(ca_only.server_pin().unwrap(), Pin::CaOnly);
    let explicit = Config::parse("secret_store:\n  server_cert: /etc/bao/cert.pem\n").unwrap();
    assert_eq!(explicit.server_pin().unwrap(), Pin::ServerCert("/etc/bao/cert.pem".into()));
    // Without a secret_store section the pin is not checked at load, and is refused when asked for.
    let keystore_only = Config::parse("keystore:\n  dir: /k\n").unwrap();
    assert!(matches!(keystore_only.server_pin(), Err(StoreIdentityError::PinRequired { .. })));
}

#[test]
fn empty_means_defaults() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
    assert_eq!(Config::parse("# nothing\n---\n").unwrap(), Config::default());
}

#[test]
fn the_admin_socket_is_absolute_has_an_admin_and_is_not_the_token_socket() {
    // (yaml, error mentions)
    let cases = [
        ("admin: { socket: run/admin.sock }\n", "absolute"),
        ("admin: { uids: [] }\n", "at least one uid"),
        ("admin: { socket: /run/x.sock }\ntoken_server: { socket: /run/x.sock }\n", "needs a path of its own"),
    ];
    for (yaml, says) in cases {
        let e = Config::parse(yaml).unwrap_err().to_string();
        assert!(e.contains("admin") && e.contains(says), "{yaml}: {e}");
    }
    assert!(Config::parse("admin: { socket: /run/a.sock, uids: [0, 1000], group: 990 }\n").is_ok());
}

#[test]
fn metrics_are_off_by_default_and_a_remote_address_must_be_allowed() {
    assert_eq!(Config::parse("kdf: {}\n").unwrap().metrics.listen, None);
    // (yaml, line of the error, error mentions)
    let cases = [
        ("metrics:\n  listen: 0.0.0.0:9464\n", 2, "allow_remote"),
        ("metrics:\n  listen: \"[::]:9464\"\n", 2, "not a loopback address"),
        ("metrics:\n  listen: localhost:9464\n", 2, "metrics.listen"),
        ("metrics:\n  port: 9464\n", 2, "unknown field `port`"),
    ];
    for (yaml, line, says) in cases {
        let e = Config::parse(yaml).unwrap_err();
        assert_eq!(e.location.line, line, "{yaml}: {e}");
        assert!(e.to_string().contains(says), "{yaml}: {e}");
    }
    let loopback = Config::parse("metrics: { listen: 127.0.0.1:9464 }\n").unwrap();
    assert_eq!(loopback.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(Config::parse("metrics: { listen: 10.0.0.5:9464, allow_remote: true }\n").is_ok());
}

#[test]
fn a_fleet_section_is_checked_when_the_file_loads_and_names_its_key() {
    let org = edgeseal_fleet::OrgKey::generate().unwrap().public().to_string();
    let section = |extra: &str| {
        format!(
            "kdf: {{}}\nfleet:\n  address: https://10.0.0.1:8200\n  ca_cert: /etc/edgeseal/fleet-ca.pem\n  org_public_key: {org}\n{extra}"
        )
    };
    assert_eq!(Config::parse("kdf: {}\n").unwrap().fleet, None);
    let config = Config::parse(&section("")).unwrap();
    let fleet = config.fleet.unwrap();
    assert_eq!(fleet.sync_interval, std::time::Duration::from_secs(300));
    assert_eq!((fleet.mount.as_str(), fleet.cert_mount.as_str()), ("fleet", "fleet-cert"));
    let interval = Config::parse(&section("  sync_interval: 30s\n")).unwrap();
    assert_eq!(interval.fleet.unwrap().sync_interval, std::time::Duration::from_secs(30));
    // (text, line, the error mentions)
    let wrong_key =
        "kdf: {}\nfleet:\n  address: https://10.0.0.1:8200\n  ca_cert: /ca.pem\n  org_public_key: age1nope\n"
            .to_string();
    let cases = [
        (section("  interval: 5m\n"), 6, "unknown field `interval`".to_string()),
        (section("  sync_interval: 10ms\n"), 6, "fleet.sync_interval".to_string()),
        (section("  mount: a/b\n"), 6, "fleet.mount".to_string()),
        (section("").replace("https://10.0.0.1:8200", "http://x"), 3, "fleet.address".to_string()),
        (section("").replace("/etc/edgeseal/fleet-ca.pem", "ca.pem"), 4, "fleet.ca_cert".to_string()),
        (wrong_key, 5, "fleet.org_public_key".to_string()),
        ("kdf: {}\nfleet:\n  address: https://10.0.0.1:8200\n".to_string(), 2, "missing field `ca_cert`".to_string()),
    ];
    for (text, line, says) in cases {
        let e = parse_err(&text);
        assert_eq!(e.location.line, line, "{text}: {e}");
        assert!(e.to_string().contains(&says), "{text}: {e}");
    }
}
