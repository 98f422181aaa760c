//! A simulated device: a private directory with a KDF plug-in, a keystore directory and a file-token
//! directory, and the edgeseal configuration that ties them to an OpenBao.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kdf_plugins::KdfConfig;
use pki_init::{CertConfig, CertName, PkiConfig, San};
use secretstore_setup::config::{
    FileTokenOwner, FileTokensConfig, KeystoreConfig, SecretStoreConfig, ServiceSetup, TokenSettings,
};
use secretstore_setup::seal::SealMode;
use secretstore_setup::setup::Setup;
use secretstore_setup::supervise::SuperviseConfig;
use security_bootstrap::config::{Config, ServiceEntry, ServiceName};
use token_server::config::ServerConfig;

use crate::openbao::OpenBao;

/// The IKM this device's plug-in prints ("its hardware").
pub const DEVICE_IKM: &str = "0d0e0f1011121314151617181920212223242526272829303132333435363738";
/// The IKM of different hardware.
pub const OTHER_IKM: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

/// A device's private directory.
#[derive(Debug)]
pub struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    /// A new device whose plug-in answers [`DEVICE_IKM`].
    pub fn new() -> Self {
        let device = Self { dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")) };
        device.set_hardware(DEVICE_IKM);
        device
    }

    /// Replaces the plug-in's answer (simulates swapped hardware).
    pub fn set_hardware(&self, ikm: &str) {
        let path = self.plugin();
        let script = format!("[ \"$1\" = ikm-v1 ] || {{ echo \"unknown protocol $1\" >&2; exit 2; }}\necho {ikm}");
        crate::write_script(&path, &script);
    }

    /// Installs a workspace plug-in binary (e.g. `edgeseal-kdf-tpm2`) in the device's private
    /// directory and returns its path, for `Setup::kdf.plugin`.
    pub fn install_plugin(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        crate::install_executable(&crate::workspace_binary(name), &path);
        path
    }

    /// The device directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The KDF plug-in.
    pub fn plugin(&self) -> PathBuf {
        self.dir.path().join("kdf-plugin")
    }

    /// The admin socket of a `token-server` run with [`Device::config`].
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The keystore directory.
    pub fn keystore_dir(&self) -> PathBuf {
        self.dir.path().join("keystore")
    }

    /// The file-token directory.
    pub fn file_tokens_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// A setup of `services` against `bao`.
    pub fn setup(&self, bao: &OpenBao, services: Vec<ServiceSetup>) -> Setup {
        Setup {
            store: SecretStoreConfig {
                address: bao.address(),
                shares: 5,
                threshold: 3,
                wait_timeout: Duration::from_secs(30),
                watchdog_interval: Duration::from_millis(200),
                ..SecretStoreConfig::default()
            },
            ca_cert: bao.ca().to_path_buf(),
            server_pin: bao.pin(),
            keystore: KeystoreConfig { dir: self.keystore_dir() },
            kdf: KdfConfig { plugin: self.plugin(), timeout: Duration::from_secs(10), ..KdfConfig::default() },
            services,
            file_tokens: FileTokensConfig { dir: self.file_tokens_dir() },
        }
    }

    /// The same setup as the `security-bootstrap` binary's configuration: the store pinned as `setup`
    /// pins it, the services with their secrets, token settings and file tokens (no selectors).
    pub fn config(&self, setup: &Setup) -> Config {
        let secret_store = SecretStoreConfig {
            ca_cert: Some(setup.ca_cert.clone()),
            server_cert: Some(setup.server_pin.clone()),
            ..setup.store.clone()
        };
        let services = setup
            .services
            .iter()
            .map(|service| {
                let entry = ServiceEntry {
                    secrets: service.secrets.clone(),
                    token: service.token.clone(),
                    file_token: service.file_token,
                    ..ServiceEntry::default()
                };
                (ServiceName(service.name.clone()), entry)
            })
            .collect();
        Config {
            keystore: setup.keystore.clone(),
            kdf: setup.kdf.clone(),
            secret_store,
            file_tokens: setup.file_tokens.clone(),
            services,
            admin: token_server::admin::AdminConfig { socket: self.admin_socket(), ..Default::default() },
            ..Config::default()
        }
    }

    /// A device booted by `security-bootstrap run`: its own PKI (with OpenBao's leaf for 127.0.0.1
    /// and localhost), and an OpenBao it supervises on `127.0.0.1:port` with its data in `data_dir`
    /// under the device directory, sealed with the static seal ([`Device::shamir`] for the other). No services; the token server at the defaults but without Docker.
    pub fn supervised_config(&self, port: u16, data_dir: &str) -> Config {
        let sans = ["127.0.0.1", "localhost"].map(|s| San::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")));
        let openbao: CertName = pki_init::layout::OPENBAO.parse().unwrap_or_else(|e| panic!("openbao: {e}"));
        let mut pki = PkiConfig { dir: self.path().join("pki"), ..PkiConfig::default() };
        pki.certs.insert(openbao, CertConfig::new(sans.to_vec()));
        Config {
            pki,
            keystore: KeystoreConfig { dir: self.keystore_dir() },
            kdf: KdfConfig { plugin: self.plugin(), ..KdfConfig::default() },
            secret_store: SecretStoreConfig {
                address: format!("https://127.0.0.1:{port}"),
                watchdog_interval: Duration::from_millis(200),
                wait_timeout: Duration::from_secs(60),
                supervise: Some(SuperviseConfig {
                    binary: crate::openbao::bao_binary(),
                    data_dir: self.path().join(data_dir),
                    unauthed_generate_root: false,
                    seal: SealMode::Static,
                    logs: secretstore_setup::supervise::LogRotation::default(),
                }),
                ..SecretStoreConfig::default()
            },
            file_tokens: FileTokensConfig { dir: self.file_tokens_dir() },
            token_server: ServerConfig { docker_socket: None, ..ServerConfig::default() },
            ..Config::default()
        }
    }

    /// `config` with its supervised OpenBao sealed with Shamir shares instead of the static seal.
    pub fn shamir(mut config: Config) -> Config {
        if let Some(supervise) = config.secret_store.supervise.as_mut() {
            supervise.seal = SealMode::Shamir;
        }
        config
    }

    /// Writes `config` as the device's `edgeseal.yaml` (serialized, as the binary reads it); returns
    /// its path.
    pub fn write_yaml(&self, config: &Config) -> PathBuf {
        let yaml = serde_yaml_ng::to_string(config).unwrap_or_else(|e| panic!("serializing the config: {e}"));
        let path = self.dir.path().join("edgeseal.yaml");
        fs::write(&path, yaml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// [`Device::config`] of `setup`, written as the device's `edgeseal.yaml`; returns its path.
    pub fn write_config(&self, setup: &Setup) -> PathBuf {
        self.write_yaml(&self.config(setup))
    }
}

impl Default for Device {
    fn default() -> Self {
        Self::new()
    }
}

/// A service with secrets and, optionally, a file token.
pub fn service(name: &str, secrets: &[&str], file_token: Option<(u32, u32)>) -> ServiceSetup {
    ServiceSetup {
        name: name.to_string(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        token: TokenSettings { ttl: Duration::from_secs(3600), ..Default::default() },
        file_token: file_token.map(|(uid, gid)| FileTokenOwner { uid, gid }),
        seed_file: None,
    }
}
