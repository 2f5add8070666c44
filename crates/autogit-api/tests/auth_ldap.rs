//! LDAP logins through the real API (`POST /api/v1/auth/token`) against a real OpenLDAP
//! `slapd` (Debian's `slapd` and `ldap-utils`), started by each test on loopback ports with its
//! own configuration and database in a temporary directory, the test directory loaded with
//! `ldapadd`, its log in `target/test-logs/`. A CA and a server certificate made with rcgen
//! serve StartTLS and ldaps. Without slapd the tests say "skipping" and pass, unless
//! `AUTOGIT_REQUIRE_TOOLS` is set.

mod support;

use autogit_api::server::ServeOptions;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Server, unlimited};

const SUFFIX: &str = "dc=example,dc=org";
const ROOT_PW: &str = "root-secret-4711";
const SVC_PW: &str = "service-secret-0815";
const ALICE_PW: &str = "alice-password-1";

/// The test directory: alice in `admins` (groupOfNames), bob in `ops` (groupOfUniqueNames),
/// carol in the posixGroup `staff` (memberUid), dave only in `unmapped`.
fn ldif() -> String {
    let person = |uid: &str, pw: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {pw}\n\n"
        )
    };
    let mut s = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: cn=svc,{SUFFIX}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: svc\nuserPassword: {SVC_PW}\n\n"
    );
    s += &person("alice", ALICE_PW);
    s += &person("bob", "bob-password-2");
    s += &person("carol", "carol-password-3");
    s += &person("dave", "dave-password-4");
    s += &format!(
        "dn: cn=admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: admins\nmember: uid=alice,ou=people,{SUFFIX}\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfUniqueNames\ncn: ops\nuniqueMember: uid=bob,ou=people,{SUFFIX}\n\n\
         dn: cn=staff,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: staff\ngidNumber: 5000\nmemberUid: carol\n\n\
         dn: cn=unmapped,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: unmapped\nmember: uid=dave,ou=people,{SUFFIX}\n\n"
    );
    s
}

fn tool(name: &str, env: &str) -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin").join(name);
    if std::env::var_os(env).is_none() && sbin.is_file() {
        return Some(sbin);
    }
    support::tool(name, env)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-logs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running slapd; killed and waited for on drop, its directory removed.
struct Slapd {
    child: Child,
    ldap: u16,
    ldaps: u16,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Slapd {
    fn start() -> Option<Slapd> {
        let slapd = tool("slapd", "AUTOGIT_SLAPD")?;
        let ldapadd = tool("ldapadd", "AUTOGIT_LDAPADD")?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        // A CA, and a server certificate for 127.0.0.1 and localhost that it signs.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "autogit test LDAP CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(d.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(d.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("server.key"), key.serialize_pem()).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             pidfile {d}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             TLSCACertificateFile {d}/ca.pem\n\
             TLSCertificateFile {d}/server.pem\n\
             TLSCertificateKeyFile {d}/server.key\n\
             database mdb\n\
             maxsize 16777216\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw {ROOT_PW}\n\
             directory {d}/db\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by * read\n",
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let (ldap, ldaps) = (free_port(), free_port());
        let log = log_dir().join(format!("auth_ldap-slapd-{ldap}.log"));
        let child = Command::new(slapd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{ldap}/ ldaps://127.0.0.1:{ldaps}/"
            ))
            // Any -d keeps it in the foreground; `stats` logs connections and binds.
            .args(["-d", "stats"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        let s = Slapd {
            child,
            ldap,
            ldaps,
            ca: d.join("ca.pem"),
            dir,
        };
        std::fs::write(s.dir.path().join("data.ldif"), ldif()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(&ldapadd)
                .args(["-x", "-H", &format!("ldap://127.0.0.1:{ldap}")])
                .args(["-D", &format!("cn=admin,{SUFFIX}"), "-w", ROOT_PW, "-f"])
                .arg(s.dir.path().join("data.ldif"))
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ldapadd failed for 20 s (slapd log: {}): {}",
                log.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(s)
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap)
    }
}

fn search_env(url: &str) -> String {
    format!(
        "LDAP_URL={url}\nLDAP_BIND_DN=cn=svc,{SUFFIX}\nLDAP_BIND_PASSWORD={SVC_PW}\n\
         LDAP_USER_BASE=ou=people,{SUFFIX}\nLDAP_GROUP_BASE=ou=groups,{SUFFIX}\n\
         LDAP_ROLES=admins:admin,ops:operator,staff:viewer\nLDAP_TIMEOUT=3\n"
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `POST /api/v1/auth/token` with a login: the status and the body.
async fn login(s: &Server, body: Value) -> (u16, Value) {
    let r = client()
        .post(s.url("/api/v1/auth/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn whoami(s: &Server, token: &str) -> Value {
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
async fn search_then_bind_maps_groups_to_roles_and_refuses_the_rest() {
    let Some(dir) = Slapd::start() else { return };
    let s = Server::start_with_env(unlimited(), &search_env(&dir.url()));
    // `alice@ldap` names the provider in the username.
    let (st, body) = login(&s, json!({"username": "alice@ldap", "password": ALICE_PW})).await;
    assert_eq!(st, 201, "{body}");
    let me = whoami(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (me["subject"].as_str(), me["role"].as_str()),
        (Some("user:alice@ldap"), Some("admin")),
        "{me}"
    );
    // The provider field works too; each group kind maps (uniqueMember, memberUid).
    for (user, pw, role) in [
        ("bob", "bob-password-2", "operator"),
        ("carol", "carol-password-3", "viewer"),
    ] {
        let (st, body) = login(
            &s,
            json!({"username": user, "password": pw, "provider": "ldap"}),
        )
        .await;
        assert_eq!(st, 201, "{user}: {body}");
        let me = whoami(&s, body["access_token"].as_str().unwrap()).await;
        assert_eq!(me["role"], role, "{user}: {me}");
    }
    // A right password without a mapped group: 403, saying why.
    let (st, body) = login(
        &s,
        json!({"username": "dave@ldap", "password": "dave-password-4"}),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(body.to_string().contains("no group mapped"), "{body}");
    // Wrong password, unknown user, empty password (an unauthenticated bind LDAP would accept),
    // and names that would widen the filter or the DN if they were not escaped: `al*` matches
    // only alice unescaped, so her password would log in.
    for (user, pw) in [
        ("alice", "wrong-password"),
        ("nobody", ALICE_PW),
        ("alice", ""),
        ("al*", ALICE_PW),
        ("*", ALICE_PW),
        ("alice)(uid=*", ALICE_PW),
        ("*)(|(uid=alice)", ALICE_PW),
    ] {
        let (st, body) = login(
            &s,
            json!({"username": format!("{user}@ldap"), "password": pw}),
        )
        .await;
        assert_eq!(st, 401, "{user:?}: {body}");
        assert_eq!(body["detail"], "invalid username or password", "{body}");
        assert!(!body.to_string().contains(ALICE_PW), "{body}");
    }
    // A local user of the same name is another user: `alice` alone is local and unknown.
    let (st, _) = login(&s, json!({"username": "alice", "password": ALICE_PW})).await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_bind_over_starttls_and_ldaps_trusts_only_the_configured_ca() {
    let Some(dir) = Slapd::start() else { return };
    let direct = |url: String, extra: &str| {
        format!(
            "LDAP_URL={url}\nLDAP_USER_DN=uid={{username}},ou=people,{SUFFIX}\n\
             LDAP_GROUP_BASE=ou=groups,{SUFFIX}\nLDAP_ROLES=cn=admins,ou=groups,{SUFFIX}:admin; ops:operator\n\
             LDAP_TIMEOUT=3\n{extra}"
        )
    };
    let ca = format!("LDAP_CA_FILE={}\n", dir.ca.display());
    for env in [
        direct(dir.url(), &format!("LDAP_STARTTLS=true\n{ca}")),
        direct(format!("ldaps://127.0.0.1:{}", dir.ldaps), &ca),
    ] {
        let s = Server::start_with_env(unlimited(), &env);
        let (st, body) = login(&s, json!({"username": "alice@ldap", "password": ALICE_PW})).await;
        assert_eq!(st, 201, "{env}: {body}");
        let me = whoami(&s, body["access_token"].as_str().unwrap()).await;
        assert_eq!(me["role"], "admin", "{me}");
        // A DN in the name is escaped into one value: no such entry.
        let (st, body) = login(
            &s,
            json!({"username": "alice,ou=people@ldap", "password": ALICE_PW}),
        )
        .await;
        assert_eq!(st, 401, "{body}");
        let (st, _) = login(&s, json!({"username": "alice@ldap", "password": "nope"})).await;
        assert_eq!(st, 401);
    }
    // Without the CA the server's certificate is not trusted: the provider is unavailable
    // (503), not a wrong password.
    let s = Server::start_with_env(unlimited(), &direct(dir.url(), "LDAP_STARTTLS=true\n"));
    let (st, body) = login(&s, json!({"username": "alice@ldap", "password": ALICE_PW})).await;
    assert_eq!(st, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_that_is_down_is_503_and_a_wrong_service_password_too() {
    let port = free_port();
    let s = Server::start_with_env(
        unlimited(),
        &search_env(&format!("ldap://127.0.0.1:{port}")),
    );
    let (st, body) = login(&s, json!({"username": "alice@ldap", "password": ALICE_PW})).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["detail"], "login provider unavailable", "{body}");
    drop(s);
    let Some(dir) = Slapd::start() else { return };
    let env = search_env(&dir.url()).replace(SVC_PW, "not-the-service-password");
    let s = Server::start_with_env(ServeOptions::default(), &env);
    let (st, body) = login(&s, json!({"username": "alice@ldap", "password": ALICE_PW})).await;
    assert_eq!(st, 503, "{body}");
    assert!(!body.to_string().contains("not-the-service-password"));
}

#[test]
fn bad_ldap_settings_stop_the_start_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    for (env, key) in [
        ("LDAP_URL=http://dir\n", "LDAP_URL"),
        (
            "LDAP_URL=ldap://dir\nLDAP_USER_BASE=ou=p\nLDAP_BIND_DN=cn=svc\nLDAP_GROUP_BASE=ou=g\nLDAP_ROLES=admins:admin\n",
            "LDAP_BIND_PASSWORD",
        ),
        (
            "LDAP_URL=ldaps://dir\nLDAP_USER_DN=uid={username}\nLDAP_GROUP_BASE=ou=g\nLDAP_ROLES=a:admin\nLDAP_CA_FILE=/nonexistent/ca.pem\n",
            "LDAP_CA_FILE",
        ),
    ] {
        let settings = support::settings_with(data.path(), env);
        settings.ensure_data_dir().unwrap();
        let e =
            autogit_app::access::AccessController::open(&settings, autogit_app::clock::system())
                .unwrap_err()
                .to_string();
        assert!(e.contains(key) && e.contains("ldap"), "{env}: {e}");
    }
}
