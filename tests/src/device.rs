//! A simulated device: a private directory with a KDF plug-in, a keystore directory and a file-token
//! directory, and the edgeseal configuration that ties them to an OpenBao.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kdf_plugins::KdfConfig;
use secretstore_setup::config::{
    FileTokenOwner, FileTokensConfig, KeystoreConfig, SecretStoreConfig, ServiceSetup, TokenSettings,
};
use secretstore_setup::setup::Setup;

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

    /// The same setup as an `edgeseal.yaml` for the `security-bootstrap` binary; returns its path.
    pub fn write_config(&self, setup: &Setup) -> PathBuf {
        let mut yaml = format!(
            "secret_store:\n  address: {}\n  ca_cert: {}\n  server_cert: {}\n  shares: {}\n  threshold: {}\n  wait_timeout: {}\n\
             keystore:\n  dir: {}\nkdf:\n  plugin: {}\n  timeout: 10s\nfile_tokens:\n  dir: {}\nservices:\n",
            setup.store.address,
            setup.ca_cert.display(),
            match &setup.server_pin {
                openbao_client::Pin::ServerCert(path) => path.display().to_string(),
                openbao_client::Pin::CaOnly => openbao_client::tls::CA_ONLY.to_string(),
            },
            setup.store.shares,
            setup.store.threshold,
            humantime::format_duration(setup.store.wait_timeout),
            setup.keystore.dir.display(),
            setup.kdf.plugin.display(),
            setup.file_tokens.dir.display(),
        );
        if setup.services.is_empty() {
            yaml.push_str("  {}\n");
        }
        for service in &setup.services {
            yaml.push_str(&format!(
                "  {}:\n    secrets: [{}]\n    token: {{ ttl: {}s }}\n",
                service.name,
                service.secrets.join(", "),
                service.token.ttl.as_secs()
            ));
            if let Some(owner) = service.file_token {
                yaml.push_str(&format!("    file_token: {{ uid: {}, gid: {} }}\n", owner.uid, owner.gid));
            }
        }
        let path = self.dir.path().join("edgeseal.yaml");
        fs::write(&path, yaml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
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
        token: TokenSettings { ttl: Duration::from_secs(3600), period: None },
        file_token: file_token.map(|(uid, gid)| FileTokenOwner { uid, gid }),
    }
}
