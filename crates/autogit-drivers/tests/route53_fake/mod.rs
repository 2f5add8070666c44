//! A fake Amazon Route 53 (API 2013-04-01) for tests: an in-memory hosted zone answering
//! `ListResourceRecordSets` (`GET /2013-04-01/hostedzone/{id}/rrset`, with `name`, `type`,
//! `maxitems`, `IsTruncated`, `NextRecordName`, `NextRecordType`, Route 53's order and its `\052`
//! for `*`), `ChangeResourceRecordSets` (`POST .../rrset/`: CREATE, DELETE and UPSERT in one
//! all-or-nothing batch, with Route 53's `InvalidChangeBatch` refusals: creating an existing
//! set, deleting one whose values differ, unquoted TXT) and `GetChange` (`PENDING` for a few
//! polls, then `INSYNC`).
//!
//! Every request's AWS Signature Version 4 is recomputed here from the request as received
//! (canonical request from the method, path, query, signed headers and a hash of the body) and
//! checked against the secret of the access key: a wrong one is 403 `SignatureDoesNotMatch`, an
//! unknown key 403 `InvalidClientTokenId`, and a read-only key 403 `AccessDenied` on changes,
//! each as Route 53's `<ErrorResponse>` XML; a switch answers `Throttling`.
//!
//! It is a fake because Route 53 cannot run on the machines that test autogit; the code under
//! test is the production client (`autogit_drivers::dns::route53`), unchanged, talking HTTP to
//! this server over loopback.
#![allow(dead_code)]

use autogit_drivers::dns::{sigv4, xml};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub const ZONE_ID: &str = "Z0123456789TESTZONE";
pub const ACCESS_KEY: &str = "AKIAAUTOGITTEST00001";
pub const SECRET_KEY: &str = "autogit/route53/test/secret/key/0000000000";
/// A key whose policy allows reading only.
pub const READ_ONLY_KEY: &str = "AKIAAUTOGITREADONLY1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// Canonical, without the trailing dot.
    pub name: String,
    pub kind: String,
    pub ttl: u32,
    /// As stored (TXT quoted).
    pub values: Vec<String>,
}

#[derive(Debug)]
pub struct FakeState {
    pub zone: String,
    pub sets: Vec<Set>,
    /// Largest `maxitems` honoured (small in tests so listings span pages).
    pub max_items: usize,
    /// GetChange answers PENDING this many times per change before INSYNC.
    pub pending_polls: u32,
    changes: BTreeMap<String, u32>,
    next_change: u64,
    /// "METHOD path?query" of every request, in order.
    pub requests: Vec<String>,
    /// Another writer: this set replaces the one of its name and type just before the next
    /// change is processed (between autogit's read and its change).
    pub interfere: Option<Set>,
    /// Answer this many (signed) requests with 400 `Throttling`.
    pub throttle: u32,
    /// The change batches received (their XML), in order.
    pub batches: Vec<String>,
}

impl FakeState {
    pub fn add(&mut self, name: &str, kind: &str, ttl: u32, values: &[&str]) {
        self.sets.push(Set {
            name: name.to_ascii_lowercase(),
            kind: kind.into(),
            ttl,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        });
    }

    pub fn set(&self, name: &str, kind: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name && s.kind == kind)
    }
}

#[derive(Clone, Debug)]
pub struct Fake {
    /// To use as AWS_ROUTE53_ENDPOINT.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    /// A hosted zone `ZONE_ID` for `zone` holding its SOA and NS sets, as Route 53 creates it.
    pub async fn start(zone: &str) -> Fake {
        let mut st = FakeState {
            zone: zone.to_owned(),
            sets: Vec::new(),
            max_items: 300,
            pending_polls: 1,
            changes: BTreeMap::new(),
            next_change: 0,
            requests: Vec::new(),
            batches: Vec::new(),
            interfere: None,
            throttle: 0,
        };
        st.add(
            zone,
            "SOA",
            900,
            &["ns-1.awsdns-01.org. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"],
        );
        st.add(zone, "NS", 172_800, &["ns-1.awsdns-01.org."]);
        let state = Arc::new(Mutex::new(st));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Shared = Arc<Mutex<FakeState>>;

fn xml_reply(status: u16, body: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "text/xml")],
        format!("<?xml version=\"1.0\"?>\n{body}"),
    )
        .into_response()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    xml_reply(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>fake-request</RequestId></ErrorResponse>",
            xml::escape(message)
        ),
    )
}

fn invalid_batch(messages: &[String]) -> Response {
    let m: String = messages
        .iter()
        .map(|m| format!("<Message>{}</Message>", xml::escape(m)))
        .collect();
    xml_reply(
        400,
        format!(
            "<InvalidChangeBatch xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Messages>{m}</Messages><RequestId>fake-request</RequestId></InvalidChangeBatch>"
        ),
    )
}

/// `%XX` decoding (SigV4 canonicalizes decoded values).
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
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Recomputes the request's signature; `Err` is the answer to send.
fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Response> {
    let missing = || {
        error(
            403,
            "MissingAuthenticationToken",
            "Missing Authentication Token",
        )
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| error(400, "IncompleteSignature", "Unsupported algorithm"))?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            fields.insert(k.to_owned(), v.to_owned());
        }
    }
    let (Some(cred), Some(signed), Some(sig)) = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    ) else {
        return Err(error(
            400,
            "IncompleteSignature",
            "Authorization header incomplete",
        ));
    };
    let scope: Vec<&str> = cred.split('/').collect();
    let [key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(error(400, "IncompleteSignature", "Bad credential scope"));
    };
    if *region != "us-east-1" || *service != "route53" {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            "Credential should be scoped to a valid region and service",
        ));
    }
    let secret = match *key {
        ACCESS_KEY | READ_ONLY_KEY => SECRET_KEY,
        _ => {
            return Err(error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ));
        }
    };
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    if !amz_date.starts_with(date) {
        return Err(error(403, "SignatureDoesNotMatch", "Date mismatch"));
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            "host and x-amz-date must be signed",
        ));
    }
    let mut canonical_headers = String::new();
    for n in &names {
        let v = headers
            .get(*n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        canonical_headers.push_str(&format!("{n}:{v}\n"));
    }
    let mut q: Vec<(String, String)> = query_pairs(uri)
        .into_iter()
        .map(|(k, v)| (sigv4::uri_encode(&k), sigv4::uri_encode(&v)))
        .collect();
    q.sort();
    let query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "{method}\n{}\n{query}\n{canonical_headers}\n{signed}\n{}",
        uri.path(),
        sigv4::sha256_hex(body)
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sigv4::sha256_hex(canonical.as_bytes())
    );
    let k = sigv4::signing_key(secret, date, region, service);
    let expected = sigv4::hex(&sigv4::hmac(&k, to_sign.as_bytes()));
    if expected != *sig {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok((*key).to_owned())
}

/// Route 53's listing order: names by reversed labels, then type.
fn order_key(name: &str, kind: &str) -> (Vec<String>, String) {
    let mut labels: Vec<String> = name
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .split('.')
        .map(|l| l.replace('*', "\\052"))
        .collect();
    labels.reverse();
    (labels, kind.to_owned())
}

fn wire_name(name: &str) -> String {
    format!("{}.", name.replace('*', "\\052"))
}

fn list(st: &FakeState, uri: &Uri) -> Response {
    let q: BTreeMap<String, String> = query_pairs(uri).into_iter().collect();
    let max = q
        .get("maxitems")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(300)
        .clamp(1, st.max_items);
    let start = q.get("name").map(|n| {
        let n = n.replace("\\052", "*");
        order_key(&n, q.get("type").map_or("", String::as_str))
    });
    let mut sets: Vec<&Set> = st.sets.iter().collect();
    sets.sort_by_key(|s| order_key(&s.name, &s.kind));
    let from: Vec<&Set> = sets
        .into_iter()
        .filter(|s| {
            start
                .as_ref()
                .is_none_or(|k| order_key(&s.name, &s.kind) >= *k)
        })
        .collect();
    let page = &from[..from.len().min(max)];
    let mut x = String::from(
        "<ListResourceRecordSetsResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ResourceRecordSets>",
    );
    for s in page {
        x.push_str(&format!(
            "<ResourceRecordSet><Name>{}</Name><Type>{}</Type><TTL>{}</TTL><ResourceRecords>",
            wire_name(&s.name),
            s.kind,
            s.ttl
        ));
        for v in &s.values {
            x.push_str(&format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                xml::escape(v)
            ));
        }
        x.push_str("</ResourceRecords></ResourceRecordSet>");
    }
    x.push_str("</ResourceRecordSets>");
    if let Some(next) = from.get(page.len()) {
        x.push_str(&format!(
            "<IsTruncated>true</IsTruncated><NextRecordName>{}</NextRecordName><NextRecordType>{}</NextRecordType>",
            wire_name(&next.name),
            next.kind
        ));
    } else {
        x.push_str("<IsTruncated>false</IsTruncated>");
    }
    x.push_str(&format!(
        "<MaxItems>{max}</MaxItems></ListResourceRecordSetsResponse>"
    ));
    xml_reply(200, x)
}

fn change(st: &mut FakeState, body: &[u8]) -> Response {
    if let Some(other) = st.interfere.take() {
        st.sets
            .retain(|s| !(s.name == other.name && s.kind == other.kind));
        st.sets.push(other);
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let Ok(root) = xml::parse(&text) else {
        return error(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed",
        );
    };
    st.batches.push(text.clone());
    let mut next = st.sets.clone();
    let mut problems = Vec::new();
    for c in root
        .child("ChangeBatch")
        .and_then(|b| b.child("Changes"))
        .into_iter()
        .flat_map(|c| c.all("Change"))
    {
        let action = c.text_at(&["Action"]).unwrap_or_default();
        let Some(rs) = c.child("ResourceRecordSet") else {
            problems.push("missing ResourceRecordSet".to_owned());
            continue;
        };
        let name = rs
            .text_at(&["Name"])
            .unwrap_or_default()
            .replace("\\052", "*")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let kind = rs.text_at(&["Type"]).unwrap_or_default();
        let ttl = rs
            .text_at(&["TTL"])
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let values: Vec<String> = rs
            .child("ResourceRecords")
            .into_iter()
            .flat_map(|r| r.all("ResourceRecord"))
            .filter_map(|r| r.text_at(&["Value"]))
            .collect();
        if !(name == st.zone || name.ends_with(&format!(".{}", st.zone))) {
            problems.push(format!(
                "RRSet with DNS name {name}. is not permitted in zone {}.",
                st.zone
            ));
            continue;
        }
        if kind == "TXT"
            && values
                .iter()
                .any(|v| !(v.starts_with('"') && v.ends_with('"')))
        {
            problems.push("Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks) encountered with ...'".to_owned());
            continue;
        }
        if values.is_empty() {
            problems.push("RRSet must contain at least one resource record".to_owned());
            continue;
        }
        let set = Set {
            name: name.clone(),
            kind: kind.clone(),
            ttl,
            values,
        };
        let at = next.iter().position(|s| s.name == name && s.kind == kind);
        match (action.as_str(), at) {
            ("CREATE", Some(_)) => problems.push(format!(
                "Tried to create resource record set [name='{name}.', type='{kind}'] but it already exists"
            )),
            ("CREATE" | "UPSERT", None) => next.push(set),
            ("UPSERT", Some(i)) => next[i] = set,
            ("DELETE", None) => problems.push(format!(
                "Tried to delete resource record set [name='{name}.', type='{kind}'] but it was not found"
            )),
            ("DELETE", Some(i)) => {
                if next[i] == set {
                    next.remove(i);
                } else {
                    problems.push(format!(
                        "Tried to delete resource record set [name='{name}.', type='{kind}'] but the values provided do not match the current values"
                    ));
                }
            }
            (a, _) => problems.push(format!("Invalid action {a}")),
        }
    }
    if !problems.is_empty() {
        return invalid_batch(&problems);
    }
    st.sets = next;
    st.next_change += 1;
    let id = format!("C{:012}", st.next_change);
    let polls = st.pending_polls;
    st.changes.insert(id.clone(), polls);
    xml_reply(
        200,
        format!(
            "<ChangeResourceRecordSetsResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeInfo><Id>/change/{id}</Id><Status>PENDING</Status><SubmittedAt>2025-01-01T00:00:00.000Z</SubmittedAt><Comment>autogit</Comment></ChangeInfo></ChangeResourceRecordSetsResponse>"
        ),
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
    let key = match verify(&method, &uri, &headers, &body) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if st.throttle > 0 {
        st.throttle -= 1;
        return error(400, "Throttling", "Rate exceeded");
    }
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        (m, ["2013-04-01", "hostedzone", zone, "rrset"]) => {
            if *zone != ZONE_ID {
                return error(
                    404,
                    "NoSuchHostedZone",
                    &format!("No hosted zone found with ID: {zone}"),
                );
            }
            match m {
                "GET" => list(&st, &uri),
                "POST" if key == READ_ONLY_KEY => error(
                    403,
                    "AccessDenied",
                    &format!(
                        "User: arn:aws:iam::123456789012:user/readonly is not authorized to perform: route53:ChangeResourceRecordSets on resource: arn:aws:route53:::hostedzone/{ZONE_ID}"
                    ),
                ),
                "POST" => change(&mut st, &body),
                _ => error(405, "MethodNotAllowed", "method not allowed"),
            }
        }
        ("GET", ["2013-04-01", "change", id]) => {
            let Some(left) = st.changes.get_mut(*id) else {
                return error(
                    404,
                    "NoSuchChange",
                    &format!("A change with the specified change ID does not exist: {id}"),
                );
            };
            let status = if *left == 0 {
                "INSYNC"
            } else {
                *left -= 1;
                "PENDING"
            };
            xml_reply(
                200,
                format!(
                    "<GetChangeResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeInfo><Id>/change/{id}</Id><Status>{status}</Status><SubmittedAt>2025-01-01T00:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
                ),
            )
        }
        _ => error(404, "UnknownOperationException", "unknown operation"),
    }
}
