//! AWS Signature Version 4 (header form) for the Route 53 API: the canonical request, the
//! string to sign, the derived signing key and the `Authorization` header.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>
//!
//! Tested with AWS's published `get-vanilla` example; the fake Route 53 of the tests recomputes
//! every signature from the request it receives.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What to sign for one request.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, already percent-encoded as sent (`/2013-04-01/hostedzone/Z1/rrset`).
    pub path: &'a str,
    /// `(key, value)` pairs, not encoded.
    pub query: &'a [(String, String)],
    /// `host` (with `:port` when not the default).
    pub host: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// Extra headers to sign (lower-case names), e.g. `x-amz-security-token`.
    pub extra_headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// Credentials and scope.
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

impl std::fmt::Debug for Request<'_> {
    /// Header values (a session token among them) are not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.extra_headers.iter().map(|(k, _)| *k).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("amz_date", &self.amz_date)
            .field("extra_headers", &headers)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters as they are, every other byte
/// `%XX` (upper-case).
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: pairs encoded, sorted by key then value, joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signing key for `date` (`YYYYMMDD`).
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

impl Signer<'_> {
    /// The `Authorization` header value.
    pub fn authorization(&self, req: &Request<'_>) -> String {
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), req.host.trim().to_owned()),
            ("x-amz-date".into(), req.amz_date.to_owned()),
        ];
        headers.extend(
            req.extra_headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned())),
        );
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed_headers = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
            req.method,
            req.path,
            canonical_query(req.query),
            sha256_hex(req.payload)
        );
        let date = &req.amz_date[..req.amz_date.len().min(8)];
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            req.amz_date,
            sha256_hex(canonical_request.as_bytes())
        );
        let key = signing_key(self.secret_access_key, date, self.region, self.service);
        let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        )
    }
}

/// Now as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    amz_date(secs)
}

/// Seconds since the epoch as `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(secs: u64) -> String {
    autogit_core::civil::compact_utc(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's Signature Version 4 test suite, `get-vanilla`.
    #[test]
    fn aws_get_vanilla_example() {
        let signer = Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
        };
        let auth = signer.authorization(&Request {
            method: "GET",
            path: "/",
            query: &[],
            host: "example.amazonaws.com",
            amz_date: "20150830T123600Z",
            extra_headers: &[],
            payload: b"",
        });
        assert!(!format!("{signer:?}").contains("EXAMPLEKEY"));
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(uri_encode("*.a b/~"), "%2A.a%20b%2F~");
        assert_eq!(
            canonical_query(&[("name".into(), "b".into()), ("a".into(), "x y".into())]),
            "a=x%20y&name=b"
        );
    }
}
