//! The wire types of the token API (SPEC §7). Every error body is `{"error": "..."}`.

use openbao_client::api::auth::Auth;
use serde::{Deserialize, Serialize};

use crate::attest::facts::Facts;

/// Largest request body accepted.
pub const MAX_BODY: usize = 4096;

/// `POST /v1/token` body: empty, or an assertion of the expected service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Must equal the attested service when given.
    #[serde(default)]
    pub service: Option<String>,
}

/// `POST /v1/token` answer: the `auth` object has the same shape as in the token file.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The attested service.
    pub service: String,
    /// OpenBao's token-create `auth`.
    pub auth: Auth,
}

/// `GET /v1/whoami` answer: what was seen, and which service matches or why none does.
#[derive(Debug, Serialize)]
pub struct WhoAmI {
    /// The attested facts.
    pub facts: Facts,
    /// The matching service.
    pub service: Option<String>,
    /// Why no service matches.
    pub reason: Option<String>,
}

/// `GET /v1/health` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Every error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong; never a secret.
    pub error: String,
}
