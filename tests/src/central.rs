//! A fleet's central OpenBao for tests and benches: a harness [`OpenBao`] initialized with one
//! unseal share, its root token (the fleet admin's), and the admin CLI run against it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use openbao_client::{Client, Token};

use crate::openbao::OpenBao;
use crate::{output_with_stdin, poll_until_async, workspace_binary};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Initializes and unseals a fresh OpenBao: its client, root token and unseal share.
pub async fn init_central(bao: &OpenBao) -> (Client, Token, Vec<u8>) {
    let client = Client::new(&bao.address(), bao.ca(), &bao.pin(), TIMEOUT).unwrap();
    let init = client.init(1, 1).await.unwrap();
    let share = init.shares[0].expose().to_vec();
    client.unseal(&share).await.unwrap();
    let token = init.root_token;
    wait_active(&client, &token, bao).await;
    (client, token, share)
}

/// Waits until the central OpenBao answers an authenticated request (active, mounts readable).
pub async fn wait_active(client: &Client, token: &Token, bao: &OpenBao) {
    let ready = poll_until_async(Duration::from_secs(60), || async { client.mounts(token).await.ok() }).await;
    assert!(ready.is_some(), "the central OpenBao did not become active:\n{}", bao.server_log());
}

/// `security-bootstrap fleet ARGS` against `bao` with `token` (`BAO_ADDR`, `BAO_CACERT`,
/// `BAO_TOKEN`, nothing else in its environment), `stdin` on its standard input.
pub fn fleet_cli(bao: &OpenBao, token: &Token, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(workspace_binary("security-bootstrap"));
    command
        .arg("fleet")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("BAO_ADDR", bao.address())
        .env("BAO_CACERT", PathBuf::from(bao.ca()))
        .env("BAO_TOKEN", token.expose());
    output_with_stdin(&mut command, stdin)
}
