//! A fake Google Cloud DNS (API v1) and Google OAuth token endpoint for tests: an in-memory
//! managed zone answering `GET .../managedZones/{zone}/rrsets` (with `name`, `type`,
//! `maxResults`, `pageToken` / `nextPageToken`), `POST .../changes` (deletions that must match
//! the current set exactly, else 412 `conditionNotMet`; additions that must not exist, else 409
//! `alreadyExists`; all or nothing) and `GET .../changes/{id}` (`pending` for a few polls, then
//! `done`), with Google's `{"error": {"code", "message", "errors": [{"reason"}], "status"}}`
//! bodies.
//!
//! The token endpoint (`POST /token`) takes the OAuth 2.0 JWT bearer grant and checks the
//! assertion as Google does: RS256 signature verified with the service account's public key
//! (a JWT signed with another key is `invalid_grant` "Invalid JWT Signature."), `iss`, `aud`,
//! `scope` and expiry. API calls need a token it issued (401 otherwise); a second, read-only
//! account gets 403 on changes; a switch answers 429.
//!
//! It is a fake because Google Cloud DNS cannot run on the machines that test autogit; the code
//! under test is the production client (`autogit_drivers::dns::gcloud`), unchanged, talking
//! HTTP to this server over loopback.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub const PROJECT: &str = "autogit-test";
pub const MANAGED_ZONE: &str = "example-test";
pub const EMAIL: &str = "autogit-dns@autogit-test.iam.gserviceaccount.com";
/// An account whose role allows reading only.
pub const READER_EMAIL: &str = "reader@autogit-test.iam.gserviceaccount.com";
/// The test service account's RSA key (generated for these tests only; it grants nothing).
pub const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDyO2WLDH37eewS\nf7F79/9I0zzG9dki9IpWWNe/hYdY/gEDCKgZjhkXjiHg9GWUocrq08y9fXBf3DbK\nliftMM9AI7H4HAN8csQN+kZzJt17wFx5JH1tKKe6NXEaTjrnywElVVffwQNjXW+2\nYH7ApClSW7EIElSM7wNuSlC3JZicQV4BNA/ouIdUA88fGrm0CRHypTB6HdIZD0iJ\np7hjG/v8wTUgMD5UmDxbslquP677ZbJ+dsqz32n5yukt69QhWK/w66K3VO5AR0iI\nRkQts3GGnaHTHfE0RshcBBmlYldMKDm9+d0/N5pVKK433fVhuZGbh59lF+nzJVNE\n+klHLEgfAgMBAAECggEAI0NrrZRspWFtxpD5q4xs3j3c3oddIZjr/VStron9LC1o\nxEz2+9Folw9FS1RePVxYXVs8C7yT0WtjkUEkIC7iMk9//G3yQU8Lz4/HFcMWAd/9\nFlMDl2flvavuAosE9Eg6AHoDcuV3CCN1ZzLLq7Zk9Ze3lpnkiSfPyLc04j9Xj4Iu\nwtN0OxtzTlbbAnMw15xGV6sc0zBM159d43rAbHDmku864v5umvLhdQE+6JbKdQwz\nTQ1g9NK3EfrjBRmimxaJFd0qkqoLwjggd7aHNn8OaWS6jpsDQLG/cc/VXAWiY806\nXI9Y+170lTg1bo7BFejPBLGiMNO9gGfbq4TKAjT4QQKBgQD9uMTyiz5bD0Gvxh22\nz/2nwXOYoXzpeg5l0HhPemdbBmDa3MZxi6X1y6HxPY7nRpz+LgsiSr6uXeR/L8EO\nAdEKARbZAk2PKQFEyuypMfxcI/wCDWNxM5R5O5E+rcg5PX8HQqixjKt782DGPSje\nth3O01FAAtVNJyLlGa86ESl6TwKBgQD0aDdBwLr0Ea7I5N6n6DfnhPYnpHjEM9jB\n4CWOUTo1owWgs5v8y8TGUwczovJrjMAJe5EdpTk+I7ELT2qNwWgWqI6r+zS+KQoo\n4VCMBN3lDosfNXh6W50t4leCJ81kaMrpjoBNBaPt5l2q8Q+Be1ARfHk7vOb6x0Ag\nDLEbcBFxMQKBgCMVN3ZqNpcUxvptJJKws9xMbZV/Tuxhyjfd2aTzwfLeMOpSeMYe\njzYrkBrxbh8grnifGT8GotMtfHjxu3oaWjNN70DWhq7y9o/yl0LV/JUpDKGkBEoU\n3cTdrbnDAdqYXEY+u2DBmLys7Ia80jfparm8kpGNUr02WibfpFEdKmUVAoGALUni\nc1yzR+a+7Jr8Z0Cwm0YYFuBzQGgbElHmo6iJkMbUlCK0FPPtUpKwEvFu2l8Kdrde\n/I9RPCKA/AeLRxk/oHM7fMLf0xzntQuLUWbVd0xqmy3dVU8EoSv/6y5U8PY6I200\neRFCfyLg2Hwy01t2Ssc178vhQTcKuuWfK+ZoVQECgYBCFL/2LhznR4SzW5Xy7etP\n5XJet+/UsmXS5W5d7760SyoG1qxM0pD+C1dUOaTkAZ9p4rBNQCwxwUskfwgCXq//\nh+Kt1oIlUsJTmCFohAeCgQ2IPxKwNCn9a3+zCwgaqHhFWrp/HFgbOP85DHlH3GqW\nwHu1+PHei/tdmEJgKZm9sw==\n-----END PRIVATE KEY-----\n";
/// Another RSA key: a key file holding it signs JWTs the fake refuses.
pub const OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCWfebp+tR6M9kJ\nHQ8kluc3LIWZsAaEnUg8OxvvQrS27NjbC1dW0pA233i7esUvXNR3rpjTIbUVmfMq\nAEfJsCD5hDACa3yfMp51cXmkLSvUfqxPyri7gM4lXNZYM0l49TEtUp5cSGhgk2Cw\nONxTTqh1Rz5Wn83ElAAfVar9eVXJeQAVrREGcRUzBL4l/XrvOY/7m4MT3B31JidY\nFbNaQZRTMWPQGJNuWsP0jjgw0NZCaltiK/39aRuLAEKbeIzloqiHpeHWTuGntnmy\nlf1aX5MO1pEsVn6G+Gri4aEdkcVeA4G1cr8On3ovhLjgMO9Q5hpEjIpb8XqauO6d\n/a6iW3NpAgMBAAECggEARbDxVgqcCilniUJlSFb/pTvfdNAg/JnPoWDoK1FTWeDt\n/eZPIHxrX5X2la+hkDDnjbMTv7Z84w+DncA6fmqropE2IHDBagHpgs61e7OVeBbf\nWiYxjVd1X7UR6A98J2E40FnRzz+S4qJtZL44PfYPqhv/gOMJSc8WDWzBPhfKA/3o\ng1hv5euNv/XV6p2aDjwNvKhJsciIvHWfRawRZ7yTYylro/uXxXWlWhVaPl8/gXem\neHRnM2r4q1Xl5v8h8TBN8eJ4WeXOf45KVPDXPHQHe0RXgUlCIYcpCGnzFUsImGIp\nx+49eYntlpLeHU1p+mxhg50O7E+zCrfLCMEY1nVVbwKBgQDLmSrKWzX1dmfEwBx5\nwFqALByogPIyfVJHvXcvixOJlXPrZFPKrqeftfQBTd3GuW42LSYdot0oNEvKWsjI\nh0GpuReNQRNAJ5HpKIBqpm/w9UWrQBBRq0itbeFJvXJMEo8lQAbOtMK2DXoWN904\nRElCKV7uanBrjVD8jnloOLfMhwKBgQC9OZ1ykxgr/ig5u4ysciCdd5xBZqPwKHRy\nE47sCNvmdtQBn1FPagixDJSreEnC84oiIJ+yaM8VoPzf0+Y2MnjoWeMYupUCesrl\nh3a2yAjaxtuDLlXYFED4ZGfOS5Hmjx5SdluVhiwuY7Rl3VUtGFwUjDQE/ZUFiLpj\nQ1P2Ym8sjwKBgEpg7Fb8t1uzI/mmzUBVWzqT4uxUHyb+zX5T4yTFRB/xL2YBQvM6\nlxYrnLaVQb4FpBO6rsAI7Y5wfHeybsODViOw8L+z1FqNmip5l2Be6Wo30Hndb5jG\nYEirabBMu2K7LPxIxbPiKXfkuINBaVnS6Ih5IKssy2EfQUTir8u5XLwlAoGBAKiO\nySUFyNNvbE+5NJ9sboc2xBcyIjjNIKV5rKevYItUMJhdXeXa83EbXte7qCEkJlku\nLHOVj1qZ9IhBzuFaZn+7imM92XzC+zgpSmOZnuGboHCjds6rhBCACEQo5we1V3Jn\ngj+YrISKRmkzFyu7dlLLbY9AgF3UpQvFLubcWmIbAoGANyzsWa3EwzKpTytni2Kh\nNlSRf06+RSF5vnrvD+2KbFInZc3kWMZJp/Z4fYqPMiKDAcBB64h/I8ULvZDoP925\n/K+XyDmdDhTirBaQplh+CX4ilC7wvbKp2grJKt9Q3zzD1PuSLz9NCqgYKrDjJOZ1\ntFJsvREpxGWN9iyNTBsfQ0g=\n-----END PRIVATE KEY-----\n";
/// The public half of [`KEY_PEM`] (PKCS#1 RSAPublicKey, DER, base64).
const PUBLIC_DER_B64: &str = "MIIBCgKCAQEA8jtliwx9+3nsEn+xe/f/SNM8xvXZIvSKVljXv4WHWP4BAwioGY4ZF44h4PRllKHK6tPMvX1wX9w2ypYn7TDPQCOx+BwDfHLEDfpGcybde8BceSR9bSinujVxGk4658sBJVVX38EDY11vtmB+wKQpUluxCBJUjO8DbkpQtyWYnEFeATQP6LiHVAPPHxq5tAkR8qUweh3SGQ9Iiae4Yxv7/ME1IDA+VJg8W7Jarj+u+2WyfnbKs99p+crpLevUIViv8Ouit1TuQEdIiEZELbNxhp2h0x3xNEbIXAQZpWJXTCg5vfndPzeaVSiuN931YbmRm4efZRfp8yVTRPpJRyxIHwIDAQAB";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// With the trailing dot, as Cloud DNS writes names.
    pub name: String,
    pub kind: String,
    pub ttl: u64,
    pub rrdatas: Vec<String>,
}

#[derive(Debug)]
pub struct FakeState {
    /// The DNS name of the managed zone, with the trailing dot.
    pub dns_name: String,
    pub sets: Vec<Set>,
    /// Largest page (small in tests so listings span pages).
    pub page_size: usize,
    pub pending_polls: u32,
    changes: BTreeMap<String, u32>,
    /// Access token -> the account it was issued to.
    tokens: BTreeMap<String, String>,
    /// Tokens issued so far.
    pub issued: u32,
    /// The change bodies received, in order.
    pub changes_received: Vec<Value>,
    pub requests: Vec<String>,
    /// Another writer: this set replaces the one of its name and type just before the next
    /// change is processed (between autogit's read and its change).
    pub interfere: Option<Set>,
    /// Answer this many API requests with 429 `rateLimitExceeded`.
    pub rate_limit: u32,
}

impl FakeState {
    pub fn add(&mut self, name: &str, kind: &str, ttl: u64, rrdatas: &[&str]) {
        self.sets.push(Set {
            name: format!("{}.", name.trim_end_matches('.')),
            kind: kind.into(),
            ttl,
            rrdatas: rrdatas.iter().map(|v| (*v).to_owned()).collect(),
        });
    }

    pub fn set(&self, name: &str, kind: &str) -> Option<&Set> {
        let name = format!("{}.", name.trim_end_matches('.'));
        self.sets.iter().find(|s| s.name == name && s.kind == kind)
    }
}

#[derive(Clone, Debug)]
pub struct Fake {
    /// The API base, to use as GCP_DNS_ENDPOINT.
    pub url: String,
    /// The token endpoint, for the key file's `token_uri`.
    pub token_uri: String,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    /// A managed zone `MANAGED_ZONE` for `zone` with its SOA and NS sets.
    pub async fn start(zone: &str) -> Fake {
        let mut st = FakeState {
            dns_name: format!("{zone}."),
            sets: Vec::new(),
            page_size: 100,
            pending_polls: 1,
            changes: BTreeMap::new(),
            tokens: BTreeMap::new(),
            issued: 0,
            changes_received: Vec::new(),
            requests: Vec::new(),
            interfere: None,
            rate_limit: 0,
        };
        st.add(
            zone,
            "SOA",
            21600,
            &["ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"],
        );
        st.add(zone, "NS", 21600, &["ns-cloud-a1.googledomains.com."]);
        let state = Arc::new(Mutex::new(st));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}/dns/v1"),
            token_uri: format!("http://{addr}/token"),
            state,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a service-account key file (mode 0600) for `email` holding `key_pem`.
    pub fn write_key_file(&self, path: &Path, email: &str, key_pem: &str) {
        let v = json!({
            "type": "service_account", "project_id": PROJECT,
            "private_key_id": "0123456789abcdef", "private_key": key_pem,
            "client_email": email, "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        });
        std::fs::write(path, v.to_string()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

type Shared = Arc<Mutex<FakeState>>;

fn reply(status: u16, v: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json; charset=UTF-8")],
        v.to_string(),
    )
        .into_response()
}

fn gerror(code: u16, reason: &str, status: &str, message: &str) -> Response {
    reply(
        code,
        json!({"error": {"code": code, "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status}}),
    )
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(x) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a JWT bearer assertion; the account's email, or Google's error answer.
fn check_assertion(jwt: &str, token_uri: &str) -> Result<String, Response> {
    let invalid = |d: &str| {
        reply(
            400,
            json!({"error": "invalid_grant", "error_description": d}),
        )
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err(invalid("Invalid JWT: Token must be a short-lived token"));
    };
    let b64 = data_encoding::BASE64URL_NOPAD;
    let header: Value = b64
        .decode(h.as_bytes())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("Invalid JWT header"))?;
    if header["alg"] != "RS256" {
        return Err(invalid("Invalid JWT: unsupported alg"));
    }
    let claims: Value = b64
        .decode(c.as_bytes())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("Invalid JWT claims"))?;
    let sig = b64
        .decode(s.as_bytes())
        .map_err(|_| invalid("Invalid JWT Signature."))?;
    let public = data_encoding::BASE64
        .decode(PUBLIC_DER_B64.as_bytes())
        .unwrap();
    // Both test accounts share the key; what differs is their role.
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| invalid("Invalid JWT Signature."))?;
    let email = claims["iss"].as_str().unwrap_or("");
    if email != EMAIL && email != READER_EMAIL {
        return Err(invalid("Invalid grant: account not found"));
    }
    if claims["aud"] != token_uri {
        return Err(invalid("Invalid JWT: Failed audience check."));
    }
    if !claims["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .any(|s| s.ends_with("/auth/ndev.clouddns.readwrite"))
    {
        return Err(invalid("Invalid JWT: missing scope"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(0),
        claims["exp"].as_u64().unwrap_or(0),
    );
    if exp <= now || iat > now + 300 || exp - iat > 3600 {
        return Err(invalid(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        ));
    }
    Ok(email.to_owned())
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

fn set_json(s: &Set) -> Value {
    json!({"kind": "dns#resourceRecordSet", "name": s.name, "type": s.kind, "ttl": s.ttl,
        "rrdatas": s.rrdatas})
}

fn parse_set(v: &Value) -> Option<Set> {
    Some(Set {
        name: v["name"].as_str()?.to_ascii_lowercase(),
        kind: v["type"].as_str()?.to_owned(),
        ttl: v["ttl"].as_u64().unwrap_or(300),
        rrdatas: v["rrdatas"]
            .as_array()?
            .iter()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect(),
    })
}

fn change(st: &mut FakeState, body: &[u8]) -> Response {
    if let Some(other) = st.interfere.take() {
        st.sets
            .retain(|s| !(s.name == other.name && s.kind == other.kind));
        st.sets.push(other);
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return gerror(400, "parseError", "INVALID_ARGUMENT", "Parse Error");
    };
    st.changes_received.push(v.clone());
    let mut next = st.sets.clone();
    for d in v["deletions"].as_array().into_iter().flatten() {
        let Some(d) = parse_set(d) else {
            return gerror(
                400,
                "invalid",
                "INVALID_ARGUMENT",
                "Invalid value for 'entity.change.deletions'",
            );
        };
        match next.iter().position(|s| *s == d) {
            Some(i) => {
                next.remove(i);
            }
            None => {
                return gerror(
                    412,
                    "conditionNotMet",
                    "FAILED_PRECONDITION",
                    &format!(
                        "The resource 'entity.change.deletions[{}][{}]' named '{}' does not exist or has different values",
                        d.name, d.kind, d.name
                    ),
                );
            }
        }
    }
    for a in v["additions"].as_array().into_iter().flatten() {
        let Some(a) = parse_set(a) else {
            return gerror(
                400,
                "invalid",
                "INVALID_ARGUMENT",
                "Invalid value for 'entity.change.additions'",
            );
        };
        if !(a.name == st.dns_name || a.name.ends_with(&format!(".{}", st.dns_name))) {
            return gerror(
                400,
                "invalid",
                "INVALID_ARGUMENT",
                &format!(
                    "Invalid value for 'entity.change.additions[{}].name'",
                    a.name
                ),
            );
        }
        if next.iter().any(|s| s.name == a.name && s.kind == a.kind) {
            return gerror(
                409,
                "alreadyExists",
                "ALREADY_EXISTS",
                &format!(
                    "The resource 'entity.change.additions[{}][{}]' named '{}' already exists",
                    a.name, a.kind, a.name
                ),
            );
        }
        next.push(a);
    }
    st.sets = next;
    let id = (st.changes.len() + 1).to_string();
    let polls = st.pending_polls;
    st.changes.insert(id.clone(), polls);
    let status = if polls == 0 { "done" } else { "pending" };
    reply(
        200,
        json!({"kind": "dns#change", "id": id, "status": status,
            "startTime": "2025-01-01T00:00:00.000Z",
            "additions": v["additions"], "deletions": v["deletions"]}),
    )
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    st.requests.push(format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    if uri.path() == "/token" && method == Method::POST {
        let f = form(&body);
        if f.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return reply(
                400,
                json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
            );
        }
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let token_uri = format!("http://{host}/token");
        let email = match check_assertion(f.get("assertion").map_or("", String::as_str), &token_uri)
        {
            Ok(e) => e,
            Err(r) => return r,
        };
        st.issued += 1;
        let token = format!("ya29.fake-{}", st.issued);
        st.tokens.insert(token.clone(), email);
        return reply(
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        );
    }
    let account = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t).cloned());
    let Some(account) = account else {
        return gerror(
            401,
            "authError",
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    };
    if st.rate_limit > 0 {
        st.rate_limit -= 1;
        return gerror(
            429,
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Read requests'",
        );
    }
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let [
        "dns",
        "v1",
        "projects",
        project,
        "managedZones",
        zone,
        rest @ ..,
    ] = segs.as_slice()
    else {
        return gerror(404, "notFound", "NOT_FOUND", "Not Found");
    };
    if *project != PROJECT || *zone != MANAGED_ZONE {
        return gerror(
            404,
            "notFound",
            "NOT_FOUND",
            &format!("The 'parameters.managedZone' resource named '{zone}' does not exist."),
        );
    }
    match (method.as_str(), rest) {
        ("GET", ["rrsets"]) => {
            let q = query_map(&uri);
            let mut sets: Vec<&Set> = st
                .sets
                .iter()
                .filter(|s| q.get("name").is_none_or(|n| *n == s.name))
                .filter(|s| q.get("type").is_none_or(|t| *t == s.kind))
                .collect();
            sets.sort_by(|a, b| (&a.name, &a.kind).cmp(&(&b.name, &b.kind)));
            let size = q
                .get("maxResults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(st.page_size)
                .min(st.page_size);
            let from = q
                .get("pageToken")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(0);
            let page: Vec<Value> = sets
                .iter()
                .skip(from)
                .take(size)
                .map(|s| set_json(s))
                .collect();
            let mut v = json!({"kind": "dns#resourceRecordSetsListResponse", "rrsets": page});
            if from + size < sets.len() {
                v["nextPageToken"] = json!((from + size).to_string());
            }
            reply(200, v)
        }
        ("POST", ["changes"]) => {
            if account == READER_EMAIL {
                return gerror(
                    403,
                    "forbidden",
                    "PERMISSION_DENIED",
                    &format!(
                        "Forbidden: {READER_EMAIL} does not have dns.changes.create access to the Google Cloud project."
                    ),
                );
            }
            change(&mut st, &body)
        }
        ("GET", ["changes", id]) => {
            let Some(left) = st.changes.get_mut(*id) else {
                return gerror(
                    404,
                    "notFound",
                    "NOT_FOUND",
                    "The 'parameters.changeId' resource does not exist.",
                );
            };
            let status = if *left == 0 {
                "done"
            } else {
                *left -= 1;
                "pending"
            };
            reply(
                200,
                json!({"kind": "dns#change", "id": id, "status": status}),
            )
        }
        _ => gerror(404, "notFound", "NOT_FOUND", "Not Found"),
    }
}
