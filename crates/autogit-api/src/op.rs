//! One definition per operation: a marker type implementing [`Operation`] names its method,
//! path, role, area, and the typed path parameters, query, body and response. From that one
//! definition come the server route (`server::route`), the role check, the OpenAPI entry
//! (`openapi::document`) and the typed client call (`client::Client::call`).

use autogit_core::access::Role;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::Parameter;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

/// The HTTP method of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials (health, the OpenAPI document, the login itself).
    Public,
    /// A principal whose role allows this one, and whose scopes include the area.
    Role(Role),
}

/// What kind of operation, in Komodo's sense: reads change nothing; writes change autogit's
/// records (keys, quarantine, DNS records); executes start work (deploy, sync, backup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Execute,
}

/// The static description of an operation, as the route table and the OpenAPI document see it.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    /// Stable id, also the OpenAPI `operationId` and the audit log's `action` (`services.deploy`).
    pub id: &'static str,
    pub verb: Verb,
    /// The path template (`/api/v1/services/{service}`): axum's and OpenAPI's syntax.
    pub path: &'static str,
    pub access: Access,
    /// The area a key's scopes name (`services`, `dns`, `security`...).
    pub area: &'static str,
    pub kind: Kind,
    pub summary: &'static str,
    /// Status of a success (200, 201 or 202).
    pub success: u16,
    /// Whether the resource supports `ETag` / `If-Match`.
    pub etag: bool,
}

impl Info {
    /// Writes and executes are audited; reads are not (their denials are).
    pub fn mutates(&self) -> bool {
        self.kind != Kind::Read
    }
}

/// One API operation. Implemented by a marker type per operation (see `ops`).
pub trait Operation: Send + Sync + 'static {
    const INFO: Info;
    /// Path parameters: a struct whose field names are the template's `{names}`, or [`NoParams`].
    type Path: Serialize + DeserializeOwned + IntoParams + Send + Sync;
    /// Query parameters: a struct of optional fields, or [`NoParams`].
    type Query: Serialize + DeserializeOwned + IntoParams + Default + Send + Sync;
    /// The JSON request body, or [`NoBody`].
    type Body: RequestBody;
    /// The JSON response.
    type Response: Serialize + DeserializeOwned + ToSchema + Send + Sync;
}

/// No path or query parameters.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct NoParams {}

impl IntoParams for NoParams {
    fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<Parameter> {
        Vec::new()
    }
}

/// A request body: JSON of a documented type, or none.
pub trait RequestBody: Serialize + DeserializeOwned + Send + Sync + Sized {
    /// `None`: the operation takes no body (one sent is ignored).
    fn schema() -> Option<(String, RefOr<Schema>)>;
    /// Whether the client sends a body.
    fn present() -> bool {
        Self::schema().is_some()
    }
}

/// The operation takes no body.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct NoBody {}

impl RequestBody for NoBody {
    fn schema() -> Option<(String, RefOr<Schema>)> {
        None
    }
    fn present() -> bool {
        false
    }
}

/// `impl RequestBody` for JSON body types (their schema is a component of the document).
macro_rules! json_body {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::op::RequestBody for $t {
            fn schema() -> Option<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)> {
                Some((<$t as utoipa::ToSchema>::name().into_owned(), <$t as utoipa::PartialSchema>::schema()))
            }
        }
    )*};
}
pub(crate) use json_body;

/// Defines an operation's marker type and its [`Operation`] impl in one place.
macro_rules! operation {
    (
        $(#[$doc:meta])*
        $name:ident: $verb:ident $path:literal,
        id: $id:literal, access: $access:expr, area: $area:literal, kind: $kind:ident,
        $(success: $success:literal,)? $(etag: $etag:literal,)?
        path: $p:ty, query: $q:ty, body: $b:ty, response: $r:ty $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl $crate::op::Operation for $name {
            const INFO: $crate::op::Info = $crate::op::Info {
                id: $id,
                verb: $crate::op::Verb::$verb,
                path: $path,
                access: $access,
                area: $area,
                kind: $crate::op::Kind::$kind,
                summary: $crate::op::first_line(concat!($(stringify!($doc), "\n"),*)),
                success: $crate::op::or(200, &[$($success)?]),
                etag: $crate::op::flag(&[$($etag)?]),
            };
            type Path = $p;
            type Query = $q;
            type Body = $b;
            type Response = $r;
        }
    };
}
pub(crate) use operation;

#[doc(hidden)]
pub const fn or(default: u16, given: &[u16]) -> u16 {
    if given.is_empty() { default } else { given[0] }
}

#[doc(hidden)]
pub const fn flag(given: &[bool]) -> bool {
    !given.is_empty() && given[0]
}

/// The summary from `stringify!(doc = " text")`: the text of the first doc line.
#[doc(hidden)]
pub const fn first_line(s: &'static str) -> &'static str {
    // `doc = " List all services"` → `List all services`
    let b = s.as_bytes();
    let mut start = 0;
    while start < b.len() && b[start] != b'"' {
        start += 1;
    }
    start += 1;
    while start < b.len() && b[start] == b' ' {
        start += 1;
    }
    let mut end = start;
    while end < b.len() && b[end] != b'"' {
        end += 1;
    }
    if start >= b.len() {
        return "";
    }
    let (_, rest) = b.split_at(start);
    let (line, _) = rest.split_at(end - start);
    match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(_) => "",
    }
}

/// A path template filled from the serialized path parameters (each value percent-encoded as
/// one segment). `None` when a `{name}` has no value.
pub fn fill_path(template: &str, params: &serde_json::Value) -> Option<String> {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'/')
        .add(b'%');
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let name = &rest[open + 1..close];
        let value = match params.get(name)? {
            serde_json::Value::String(s) => s.clone(),
            v @ serde_json::Value::Number(_) => v.to_string(),
            _ => return None,
        };
        out.extend(utf8_percent_encode(&value, SEGMENT));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_come_from_the_first_doc_line() {
        assert_eq!(
            first_line("doc = \" List all services\"\n"),
            "List all services"
        );
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn path_parameters_are_one_encoded_segment_each() {
        let p = serde_json::json!({"service": "git lab/../x", "id": 7});
        assert_eq!(
            fill_path("/api/v1/services/{service}/jobs/{id}", &p).as_deref(),
            Some("/api/v1/services/git%20lab%2F..%2Fx/jobs/7")
        );
        assert_eq!(fill_path("/api/v1/x/{missing}", &p), None);
    }
}
