//! edgeseal's one family of secret types.
//!
//! Every secret edgeseal holds in memory — the IKM a plug-in prints, the KEK, unseal shares, keystore
//! items, OpenBao tokens, private keys in PEM — is a newtype made by one of three macros here, so they
//! all behave the same way:
//!
//! - the bytes are wiped when the value is dropped ([`zeroize`]);
//! - `Debug` prints the type's name and `[REDACTED]` (with the length for byte secrets), never a value,
//!   and there is no `Display`;
//! - the value is reached only through `expose()`, which makes every use greppable;
//! - equality is constant-time, so comparing two shares or tokens leaks no prefix length.
//!
//! Each type keeps its own name (`Ikm`, `Kek`, `UnsealShare`, `Token`, …), so a share can never be
//! passed where a token is expected, and a crate can add inherent items (limits, constructors) to its own
//! types.
//!
//! - [`secret_bytes!`]: a variable-length byte secret (`Vec<u8>` inside).
//! - [`secret_array!`]: a fixed-length key (`Box<[u8; N]>` inside, so moves never copy it).
//! - [`secret_string!`]: a UTF-8 secret (`String` inside) that (de)serializes as a plain JSON string,
//!   for wire types such as OpenBao tokens.

#![forbid(unsafe_code)]

use zeroize::Zeroizing;

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use zeroize;
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The storage behind [`secret_bytes!`] types: wiped on drop, compared in constant time.
#[derive(Clone, Default)]
pub struct SecretBuf(Zeroizing<Vec<u8>>);

impl SecretBuf {
    /// Takes ownership of `bytes` (no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Takes ownership of a buffer that is already wiped on drop, without copying it: the heap
    /// allocation moves in as it is (capacity included, all of which is wiped on drop).
    pub fn from_zeroizing(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for SecretBuf {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for SecretBuf {}

impl std::fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBuf([REDACTED; {} bytes])", self.0.len())
    }
}

/// The storage behind [`secret_string!`] types: wiped on drop, compared in constant time.
#[derive(Clone, Default)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Takes ownership of `text`.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for SecretText {}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText([REDACTED])")
    }
}

/// Declares a variable-length byte secret: `secret_bytes! { /// doc \n pub struct Ikm; }`.
///
/// The type gets `new(Vec<u8>)`, `from_zeroizing(Zeroizing<Vec<u8>>)` (for a buffer filled in place,
/// e.g. a child's stdout read into a pre-sized wiped buffer: it moves in without a copy),
/// `expose() -> &[u8]`, `len()`, `is_empty()`, `Clone`, constant-time `PartialEq`/`Eq`, and a
/// redacting `Debug`.
#[macro_export]
macro_rules! secret_bytes {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        $vis struct $name($crate::SecretBuf);

        #[allow(dead_code, unreachable_pub)]
        impl $name {
            /// Takes ownership of the bytes; they are wiped when the value is dropped.
            pub fn new(bytes: ::std::vec::Vec<u8>) -> Self {
                Self($crate::SecretBuf::new(bytes))
            }

            /// Takes ownership of a buffer that is already wiped on drop, without copying it.
            pub fn from_zeroizing(bytes: $crate::__private::zeroize::Zeroizing<::std::vec::Vec<u8>>) -> Self {
                Self($crate::SecretBuf::from_zeroizing(bytes))
            }

            /// The secret bytes. Every use of a secret goes through here.
            pub fn expose(&self) -> &[u8] {
                self.0.expose()
            }

            /// Length in bytes (not secret).
            pub fn len(&self) -> usize {
                self.0.expose().len()
            }

            /// Whether there are no bytes.
            pub fn is_empty(&self) -> bool {
                self.0.expose().is_empty()
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                write!(f, concat!(stringify!($name), "([REDACTED; {} bytes])"), self.len())
            }
        }
    };
}

/// Declares a fixed-length key: `secret_array! { /// doc \n pub struct Kek([u8; 32]); }`.
///
/// The key lives in a box (moving the value never copies the bytes) and is wiped on drop. The type gets
/// `LEN`, `from_bytes([u8; N])` (which wipes the array it was given), `expose() -> &[u8; N]`,
/// constant-time `PartialEq`/`Eq`, and a redacting `Debug`. No `Clone`: a key has one owner.
#[macro_export]
macro_rules! secret_array {
    ($(#[$meta:meta])* $vis:vis struct $name:ident([u8; $len:expr]);) => {
        $(#[$meta])*
        $vis struct $name(::std::boxed::Box<[u8; $len]>);

        #[allow(dead_code, unreachable_pub)]
        impl $name {
            /// Length of the key in bytes.
            pub const LEN: usize = $len;

            /// Moves the key into a box and wipes the array it came in.
            pub fn from_bytes(mut bytes: [u8; $len]) -> Self {
                let key = Self(::std::boxed::Box::new(bytes));
                $crate::__private::zeroize::Zeroize::zeroize(&mut bytes);
                key
            }

            /// The key bytes. Every use of a secret goes through here.
            pub fn expose(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl ::core::ops::Drop for $name {
            fn drop(&mut self) {
                $crate::__private::zeroize::Zeroize::zeroize(&mut *self.0);
            }
        }

        impl ::core::cmp::PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                $crate::constant_time_eq(&self.0[..], &other.0[..])
            }
        }

        impl ::core::cmp::Eq for $name {}

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

/// Declares a UTF-8 secret: `secret_string! { /// doc \n pub struct Token; }`.
///
/// The type gets `new(impl Into<String>)`, `expose() -> &str`, `Clone`, constant-time
/// `PartialEq`/`Eq`, a redacting `Debug`, and `Serialize`/`Deserialize` as a plain string (wire formats
/// need the value; logs and `Debug` never get it).
#[macro_export]
macro_rules! secret_string {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        $vis struct $name($crate::SecretText);

        #[allow(dead_code, unreachable_pub)]
        impl $name {
            /// Takes ownership of the text; it is wiped when the value is dropped.
            pub fn new(value: impl ::core::convert::Into<::std::string::String>) -> Self {
                Self($crate::SecretText::new(value.into()))
            }

            /// The secret text. Every use of a secret goes through here.
            pub fn expose(&self) -> &str {
                self.0.expose()
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                <::std::string::String as $crate::__private::serde::Deserialize>::deserialize(d).map($name::new)
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.expose())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    secret_bytes! {
        /// A test byte secret.
        struct Share;
    }
    secret_array! {
        /// A test key.
        struct Key([u8; 32]);
    }
    secret_string! {
        /// A test token.
        struct Tok;
    }

    #[test]
    fn debug_names_the_type_and_never_the_value() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Share::new(b"sharesecret".to_vec()),
            Key::from_bytes([0xCD; 32]),
            Tok::new("s.supersecret")
        );
        assert_eq!(shown, "Share([REDACTED; 11 bytes]) Key([REDACTED]) Tok([REDACTED])");
    }

    #[test]
    fn equality_compares_whole_values() {
        let cases: &[(&[u8], &[u8], bool)] =
            &[(b"abc", b"abc", true), (b"abc", b"abd", false), (b"abc", b"ab", false), (b"", b"", true)];
        for (a, b, want) in cases {
            assert_eq!(constant_time_eq(a, b), *want, "{a:?} vs {b:?}");
            assert_eq!(Share::new(a.to_vec()) == Share::new(b.to_vec()), *want);
        }
        assert!(Key::from_bytes([1; 32]) == Key::from_bytes([1; 32]));
        assert!(Key::from_bytes([1; 32]) != Key::from_bytes([2; 32]));
        assert!(Tok::new("a") != Tok::new("b"));
    }

    #[test]
    fn from_zeroizing_moves_the_buffer_without_copying() {
        let mut buf = Zeroizing::new(Vec::with_capacity(64));
        buf.extend_from_slice(b"ikm bytes");
        let heap = buf.as_ptr();
        let share = Share::from_zeroizing(buf);
        assert_eq!(share.expose(), b"ikm bytes");
        assert_eq!(share.expose().as_ptr(), heap, "the same allocation, not a copy");
        assert_eq!(format!("{share:?}"), "Share([REDACTED; 9 bytes])");
    }

    #[test]
    fn strings_round_trip_as_plain_json_strings() {
        let json = serde_json::to_string(&Tok::new("s.abc")).unwrap();
        assert_eq!(json, "\"s.abc\"");
        let back: Tok = serde_json::from_str(&json).unwrap();
        assert!(back == Tok::new("s.abc"));
    }
}
