//! TPM 2.0 framing (TPM 2.0 Part 1 §18; types from Part 2), pure: a command is built in a buffer whose
//! size field is filled in last; a response is read through a [`Reader`] that checks every length
//! against what is left, so no input — truncated, oversized, lying about its sizes — can panic or read
//! out of bounds. Everything on the wire is big-endian.

use std::fmt;

/// A command or response with no authorization area.
pub const ST_NO_SESSIONS: u16 = 0x8001;
/// A command or response with an authorization area (and, in a response, a `parameterSize`).
pub const ST_SESSIONS: u16 = 0x8002;
/// `tag u16 | size u32 | code u32`.
pub const HEADER_LEN: usize = 10;
/// The largest response read. TPM2_PT_MAX_RESPONSE_SIZE is 4096 on the TPMs and simulators we know
/// (and the kernel's resource manager uses a 4096-byte buffer); nothing the plug-in asks for comes near.
pub const MAX_RESPONSE: usize = 4096;
/// The password authorization session (TPM_RS_PW).
pub const RS_PW: u32 = 0x4000_0009;
/// `sessionAttributes` continueSession.
const CONTINUE_SESSION: u8 = 0x01;

/// A response that does not parse; `.0` says what was wrong (never quotes the bytes, which may hold
/// the IKM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("tag", &format_args!("{:#06x}", self.tag))
            .field("code", &format_args!("{:#x}", self.code))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A command under construction. Commands carry no secret (empty authorizations; the HMAC input is
/// the public label), so a plain `Vec` is fine.
#[derive(Debug)]
pub struct CommandWriter {
    buf: Vec<u8>,
}

impl CommandWriter {
    /// A header with `tag` and `code`; the size is filled in by [`CommandWriter::finish`].
    pub fn new(tag: u16, code: u32) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&tag.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&code.to_be_bytes());
        Self { buf }
    }

    /// A structure on its own (no header), e.g. a TPMT_PUBLIC to be wrapped in a TPM2B.
    pub fn structure() -> Self {
        Self { buf: Vec::with_capacity(64) }
    }

    /// The bytes of a [`CommandWriter::structure`].
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends a TPM2B: `size u16 | bytes`. Every caller passes at most a few dozen bytes (digests,
    /// nonces, the label, a public area), far below u16::MAX.
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len).bytes(&v[..usize::from(len)])
    }

    /// Appends the authorization area with one session: `authorizationSize u32` and a
    /// TPMS_AUTH_COMMAND with an empty nonce and an empty HMAC/password. `handle` is [`RS_PW`] for the
    /// empty password, or a policy session (which then ends with this command: continueSession clear).
    pub fn auth(&mut self, handle: u32) -> &mut Self {
        let attributes = if handle == RS_PW { CONTINUE_SESSION } else { 0 };
        self.u32(9).u32(handle).u16(0).u8(attributes).u16(0)
    }

    /// The command with its size filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let size = u32::try_from(self.buf.len()).unwrap_or(u32::MAX).to_be_bytes();
        self.buf[2..6].copy_from_slice(&size);
        self.buf
    }
}

/// A bounded cursor over response bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if n > self.data.len() {
            return Err(Malformed(what));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// The next byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.take(1, what)?[0])
    }

    /// The next big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The next big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next TPM2B's content (its size checked against what is left).
    pub fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// The next TPM2B, read as a structure of its own.
    pub fn sized(&mut self, what: &'static str) -> Result<Reader<'a>, Malformed> {
        self.tpm2b(what).map(Reader::new)
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

/// A response whose header checked out. Its `Debug` leaves the body out: an HMAC's answer is the IKM.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// [`ST_SESSIONS`] or [`ST_NO_SESSIONS`].
    pub tag: u16,
    /// The response code: 0 is success.
    pub code: u32,
    /// What follows the header.
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// Checks the header: a known tag, a size equal to the bytes received, at most [`MAX_RESPONSE`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        let tag = r.u16("response shorter than its header")?;
        let size = r.u32("response shorter than its header")?;
        let code = r.u32("response shorter than its header")?;
        if tag != ST_SESSIONS && tag != ST_NO_SESSIONS {
            return Err(Malformed("response has an unknown tag"));
        }
        if usize::try_from(size) != Ok(bytes.len()) {
            return Err(Malformed("response size field does not match its length"));
        }
        if bytes.len() > MAX_RESPONSE {
            return Err(Malformed("response larger than 4096 bytes"));
        }
        Ok(Self { tag, code, body: &bytes[HEADER_LEN..] })
    }

    /// The response handles (`count` of them) and the parameter area of a successful response. With
    /// [`ST_SESSIONS`] the parameters are the `parameterSize` bytes after the handles (the
    /// authorization area after them is not read); with [`ST_NO_SESSIONS`], the rest.
    pub fn split<const N: usize>(&self) -> Result<([u32; N], Reader<'a>), Malformed> {
        if self.code != 0 {
            return Err(Malformed("not a successful response"));
        }
        let mut r = Reader::new(self.body);
        let mut handles = [0u32; N];
        for handle in &mut handles {
            *handle = r.u32("response ends before its handle")?;
        }
        if self.tag == ST_SESSIONS {
            let size = r.u32("response ends before its parameter size")?;
            let size = usize::try_from(size).map_err(|_| Malformed("parameter size out of range"))?;
            let params = r.take(size, "parameter size larger than the response")?;
            return Ok((handles, Reader::new(params)));
        }
        Ok((handles, r))
    }
}

/// The 10-byte header's `size` field, to know how much more to read from a stream.
pub fn response_size(header: &[u8; HEADER_LEN]) -> Result<usize, Malformed> {
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let size = usize::try_from(size).map_err(|_| Malformed("response size out of range"))?;
    if !(HEADER_LEN..=MAX_RESPONSE).contains(&size) {
        return Err(Malformed("response size field out of range (10 to 4096 bytes)"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_gets_its_size_and_a_password_or_policy_authorization() {
        let mut w = CommandWriter::new(ST_SESSIONS, 0x155);
        w.u32(0x8000_0000).auth(RS_PW).tpm2b(b"ab").u16(0x000B);
        let want = [
            "8002", "00000021", "00000155", "80000000", "00000009", "40000009", "0000", "01", "0000", "0002", "6162",
            "000b",
        ];
        assert_eq!(hex::encode(w.finish()), want.concat());
        let mut w = CommandWriter::new(ST_SESSIONS, 0x155);
        w.auth(0x0300_0000);
        let want = ["8002", "00000017", "00000155", "00000009", "03000000", "0000", "00", "0000"];
        assert_eq!(hex::encode(w.finish()), want.concat());
    }

    #[test]
    fn responses_are_checked_before_anything_is_read() {
        let ok = hex::decode("80010000000e00000000 12345678".replace(' ', "")).unwrap();
        let r = Response::parse(&ok).unwrap();
        assert_eq!(r.split::<1>().unwrap().0, [0x1234_5678]);
        let cases: &[(&str, &str)] = &[
            ("", "response shorter than its header"),
            ("8001000000", "response shorter than its header"),
            ("c4010000000a00000000", "response has an unknown tag"),
            ("80010000000b00000000", "response size field does not match its length"),
            ("80010000000a0000000000", "response size field does not match its length"),
        ];
        for (bytes, want) in cases {
            assert_eq!(Response::parse(&hex::decode(bytes).unwrap()), Err(Malformed(want)), "{bytes}");
        }
        let failed = hex::decode("80010000000a00000921").unwrap();
        let failed = Response::parse(&failed).unwrap();
        assert_eq!(failed.code, 0x921);
        assert!(failed.split::<0>().is_err());
    }

    #[test]
    fn a_parameter_size_cannot_reach_past_the_response() {
        // ST_SESSIONS, one handle, parameterSize 0x100 with 2 bytes left.
        let bytes = hex::decode("800200000014000000008000000000000100abcd").unwrap();
        let r = Response::parse(&bytes).unwrap();
        assert_eq!(r.split::<1>().unwrap_err(), Malformed("parameter size larger than the response"));
        let mut reader = Reader::new(&[0x00, 0x05, 1, 2]);
        assert!(reader.tpm2b("x").is_err());
    }

    #[test]
    fn the_header_size_bounds_what_is_read_from_a_stream() {
        let header = |size: u32| {
            let mut h = [0u8; HEADER_LEN];
            h[2..6].copy_from_slice(&size.to_be_bytes());
            h
        };
        assert_eq!(response_size(&header(10)), Ok(10));
        assert_eq!(response_size(&header(4096)), Ok(4096));
        assert!(response_size(&header(9)).is_err());
        assert!(response_size(&header(4097)).is_err());
        assert!(response_size(&header(u32::MAX)).is_err());
    }
}
