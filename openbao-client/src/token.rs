//! OpenBao tokens and other credentials: wiped on drop, never printed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Defines a string newtype that zeroizes on drop, prints as `Name([REDACTED])`, and (de)serializes
/// as a plain JSON string.
macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// Wraps the secret.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Zeroizing::new(value.into()))
            }

            /// The secret itself, for the one place that must send or store it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map($name::new)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

secret_string!(
    /// An OpenBao token (`s.…`/`hvs.…`), for the `X-Vault-Token` header or a token file.
    Token
);

secret_string!(
    /// Any other secret string from or for OpenBao (an AppRole secret-id, a KV value).
    SecretString
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let shown = format!("{:?} {:?}", Token::new("s.supersecret"), SecretString::new("hunter2"));
        assert!(!shown.contains("supersecret") && !shown.contains("hunter2"), "{shown}");
    }
}
