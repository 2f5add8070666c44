//! The dashboard's OIDC sign-in (`/login/oidc`, `/login/oidc/callback`) against a fake
//! provider. No real OpenID provider runs here (Keycloak, Dex and the like are not packaged for
//! this machine), so the fake below, in this test, answers as OpenID Connect Core 1.0 and
//! Discovery 1.0 document: the discovery document, a JWKS with an RSA (RS256) and a P-256
//! (ES256) key, the authorization endpoint of the code flow redirecting back with `code` and
//! `state`, and the token endpoint, which checks the client's basic credentials, the
//! `redirect_uri` and the PKCE `code_verifier` against the S256 challenge (RFC 7636) and
//! answers `{"error": "invalid_grant"}` with 400 otherwise. autogit's production client path
//! is unchanged. The RSA key comes from `openssl genpkey` (skipped without openssl unless
//! `AUTOGIT_REQUIRE_TOOLS` is set); the EC keys from ring.

mod support;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, Router, routing::get, routing::post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Server, unlimited};

const CLIENT_SECRET: &str = "client-secret-xyz";
const CALLBACK: &str = "http://127.0.0.1:1/login/oidc/callback";

/// What the fake's next ID token is like.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Rs256,
    Es256,
    WrongNonce,
    Expired,
    WrongAudience,
    OtherKey,
    AlgNone,
    NoGroups,
    /// The fake stores another challenge: the verifier autogit sends cannot match.
    WrongChallenge,
}

struct Grant {
    challenge: String,
    nonce: String,
    redirect_uri: String,
}

struct Fake {
    issuer: String,
    mode: Mutex<Mode>,
    codes: Mutex<HashMap<String, Grant>>,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    other_ec: EcdsaKeyPair,
    /// Token requests whose verifier matched.
    verified: Mutex<u32>,
}

fn b64(v: &[u8]) -> String {
    B64.encode(v)
}

impl Fake {
    fn jwks(&self) -> Value {
        let rsa = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        let pt = self.ec.public_key().as_ref();
        json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": b64(&rsa.n), "e": b64(&rsa.e)},
            {"kty": "EC", "kid": "e1", "use": "sig", "crv": "P-256", "x": b64(&pt[1..33]), "y": b64(&pt[33..])},
        ]})
    }

    fn id_token(&self, mode: Mode, nonce: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims = json!({
            "iss": self.issuer, "sub": "248289761001", "aud": "autogit",
            "exp": now + 300, "iat": now, "nonce": nonce,
            "preferred_username": "alice", "groups": ["admins", "staff"],
        });
        match mode {
            Mode::Es256 => claims["groups"] = json!(["devs"]),
            Mode::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
            Mode::Expired => {
                claims["exp"] = json!(now - 3600);
                claims["iat"] = json!(now - 7200);
            }
            Mode::WrongAudience => claims["aud"] = json!("another-client"),
            Mode::NoGroups => claims["groups"] = json!(["staff"]),
            _ => {}
        }
        let (alg, kid) = match mode {
            Mode::Es256 | Mode::OtherKey => ("ES256", "e1"),
            Mode::AlgNone => ("none", "r1"),
            _ => ("RS256", "r1"),
        };
        let signed = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": kid, "typ": "JWT"})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match (alg, mode) {
            ("none", _) => Vec::new(),
            ("ES256", Mode::OtherKey) => self
                .other_ec
                .sign(&rng, signed.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            ("ES256", _) => self
                .ec
                .sign(&rng, signed.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        signed.as_bytes(),
                        &mut sig,
                    )
                    .unwrap();
                sig
            }
        };
        format!("{signed}.{}", b64(&sig))
    }
}

async fn discovery(State(f): State<Arc<Fake>>) -> Json<Value> {
    Json(json!({
        "issuer": f.issuer,
        "authorization_endpoint": format!("{}/authorize", f.issuer),
        "token_endpoint": format!("{}/token", f.issuer),
        "jwks_uri": format!("{}/jwks", f.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn authorize(
    State(f): State<Arc<Fake>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != "autogit"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("state").is_empty()
        || get("nonce").is_empty()
        || !get("scope").split(' ').any(|s| s == "openid")
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("bad authorization request: {q:?}"),
        )
            .into_response();
    }
    let code = format!("code-{}", f.codes.lock().unwrap().len());
    let challenge = if *f.mode.lock().unwrap() == Mode::WrongChallenge {
        b64(&Sha256::digest(b"another verifier"))
    } else {
        get("code_challenge")
    };
    f.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge,
            nonce: get("nonce"),
            redirect_uri: get("redirect_uri"),
        },
    );
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        get("redirect_uri"),
        get("state")
    ))
    .into_response()
}

async fn token(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let err = |e: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("autogit:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return err("unsupported_grant_type");
    }
    // A code is used once.
    let Some(grant) = f.codes.lock().unwrap().remove(&get("code")) else {
        return err("invalid_grant");
    };
    if grant.redirect_uri != get("redirect_uri") {
        return err("invalid_grant");
    }
    if b64(&Sha256::digest(get("code_verifier").as_bytes())) != grant.challenge {
        return err("invalid_grant");
    }
    *f.verified.lock().unwrap() += 1;
    let mode = *f.mode.lock().unwrap();
    Json(json!({
        "access_token": "opaque-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": f.id_token(mode, &grant.nonce),
    }))
    .into_response()
}

async fn jwks(State(f): State<Arc<Fake>>) -> Json<Value> {
    Json(f.jwks())
}

fn rsa_key() -> Option<RsaKeyPair> {
    let openssl = support::tool("openssl", "AUTOGIT_OPENSSL")?;
    let out = std::process::Command::new(openssl)
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenSSL 3 writes an RSA key in DER as PKCS#1 RSAPrivateKey.
    Some(RsaKeyPair::from_der(&out.stdout).unwrap())
}

fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()
}

async fn start_fake() -> Option<Arc<Fake>> {
    let rsa = rsa_key()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(Fake {
        issuer: format!("http://{}", listener.local_addr().unwrap()),
        mode: Mutex::new(Mode::Rs256),
        codes: Mutex::new(HashMap::new()),
        rsa,
        ec: ec_key(),
        other_ec: ec_key(),
        verified: Mutex::new(0),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/jwks", get(jwks))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Some(fake)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The `name=value` of cookie `name` set by `r`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// Starts a sign-in, lets the fake "log in" and follow its redirect: the callback URL (on the
/// server) and the browser's state cookie.
async fn through_provider(s: &Server) -> (String, String) {
    let c = client();
    let r = c
        .get(s.url("/login/oidc?next=/runners"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let cookie = set_cookie(&r, "__Host-autogit-oidc").expect("a state cookie");
    let r = c.get(location(&r)).send().await.unwrap();
    assert_eq!(
        r.status(),
        303,
        "the fake redirects back: {}",
        r.text().await.unwrap()
    );
    let callback = location(&r).replace("http://127.0.0.1:1", &s.url(""));
    (callback, cookie)
}

async fn callback(url: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

async fn whoami(s: &Server, session_cookie: &str) -> Value {
    let token = session_cookie.split_once('=').unwrap().1;
    client()
        .get(s.url("/api/v1/auth/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_with_pkce_signs_in_and_every_bad_token_is_refused() {
    let Some(fake) = start_fake().await else {
        return;
    };
    let env = format!(
        "OIDC_ISSUER={}\nOIDC_CLIENT_ID=autogit\nOIDC_CLIENT_SECRET={CLIENT_SECRET}\n\
         OIDC_REDIRECT_URL={CALLBACK}\nOIDC_ROLES=admins:admin,devs:operator\nOIDC_TIMEOUT=5\n",
        fake.issuer
    );
    let s = Server::start_with_env(unlimited(), &env);
    let page = client()
        .get(s.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("/login/oidc?next="),
        "the sign-in page offers OIDC"
    );

    for (mode, role) in [(Mode::Rs256, "admin"), (Mode::Es256, "operator")] {
        *fake.mode.lock().unwrap() = mode;
        let (url, cookie) = through_provider(&s).await;
        let r = callback(&url, Some(&cookie)).await;
        assert_eq!(r.status(), 200, "{mode:?}");
        let session = set_cookie(&r, "__Host-autogit-session").expect("a session cookie");
        assert!(
            r.text().await.unwrap().contains("url=/runners"),
            "goes on to next"
        );
        let me = whoami(&s, &session).await;
        assert_eq!(
            (me["subject"].as_str(), me["role"].as_str()),
            (Some("user:alice@oidc"), Some(role)),
            "{mode:?}: {me}"
        );
        // The same callback again: the state is spent.
        let r = callback(&url, Some(&cookie)).await;
        assert_eq!(r.status(), 400, "{mode:?} replayed");
    }
    assert_eq!(
        *fake.verified.lock().unwrap(),
        2,
        "the fake checked both verifiers"
    );

    for (mode, status) in [
        (Mode::WrongNonce, 401),
        (Mode::Expired, 401),
        (Mode::WrongAudience, 401),
        (Mode::OtherKey, 401),
        (Mode::AlgNone, 401),
        (Mode::WrongChallenge, 401),
        (Mode::NoGroups, 403),
    ] {
        *fake.mode.lock().unwrap() = mode;
        let (url, cookie) = through_provider(&s).await;
        let r = callback(&url, Some(&cookie)).await;
        assert_eq!(r.status(), status, "{mode:?}");
        assert!(
            set_cookie(&r, "__Host-autogit-session").is_none(),
            "{mode:?}"
        );
    }

    // A callback without this browser's state cookie (a login CSRF) never uses the code.
    *fake.mode.lock().unwrap() = Mode::Rs256;
    let before = *fake.verified.lock().unwrap();
    let (url, _) = through_provider(&s).await;
    let r = callback(&url, None).await;
    assert_eq!(r.status(), 400);
    let r = callback(&url, Some("__Host-autogit-oidc=forged")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(*fake.verified.lock().unwrap(), before);
    // The provider's own refusal.
    let (url, cookie) = through_provider(&s).await;
    let denied = url.split('?').next().unwrap().to_owned()
        + "?error=access_denied&state="
        + url.split("state=").nth(1).unwrap();
    assert_eq!(callback(&denied, Some(&cookie)).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_is_503_and_bad_settings_stop_the_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = format!(
        "OIDC_ISSUER=http://127.0.0.1:{port}\nOIDC_CLIENT_ID=autogit\nOIDC_REDIRECT_URL={CALLBACK}\nOIDC_ROLES=admins:admin\nOIDC_TIMEOUT=2\n"
    );
    let s = Server::start_with_env(unlimited(), &env);
    let r = client().get(s.url("/login/oidc")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    drop(s);
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings_with(data.path(), "OIDC_ISSUER=http://id.example.org\n");
    settings.ensure_data_dir().unwrap();
    let e = autogit_app::oidc::OidcLogin::from_settings(&settings, autogit_app::clock::system())
        .unwrap_err()
        .to_string();
    assert!(e.contains("OIDC_ISSUER") && e.contains("https://"), "{e}");
}
