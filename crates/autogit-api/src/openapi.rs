//! The OpenAPI 3.1 document, generated from the operation table: each operation's path,
//! parameters (from its typed path and query), body, response, errors and required role (as
//! the scope of the `bearer` security requirement). Served at `/api/v1/openapi.json` and
//! committed as `docs/api/openapi.json` (`autogit serve --print-openapi`; a test compares).

use crate::op::{Access, Operation, RequestBody, Verb};
use crate::problem::{CONTENT_TYPE as PROBLEM, Problem};
use utoipa::openapi::path::{
    OperationBuilder, Parameter, ParameterBuilder, ParameterIn, Paths, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, Ref,
    RefOr, Required, ResponseBuilder, Schema, ServerBuilder,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Links between operations (OpenAPI `links`): where a response supplies another
/// operation's parameter. Stateful clients (and schemathesis) follow them.
/// (from operation, to operation, parameter, runtime expression)
const LINKS: &[(&str, &str, &str, &str)] = &[
    (
        "services.list",
        "services.get",
        "service",
        "$response.body#/0/name",
    ),
    (
        "services.list",
        "services.deploy",
        "service",
        "$response.body#/0/name",
    ),
    (
        "services.list",
        "services.clear_flag",
        "service",
        "$response.body#/0/name",
    ),
    ("compute.submit", "compute.get", "id", "$response.body#/id"),
    (
        "compute.submit",
        "compute.cancel",
        "id",
        "$response.body#/id",
    ),
    ("compute.list", "compute.get", "id", "$response.body#/0/id"),
    (
        "quarantine.list",
        "quarantine.get",
        "id",
        "$response.body#/0/id",
    ),
    (
        "quarantine.list",
        "quarantine.release",
        "id",
        "$response.body#/0/id",
    ),
    (
        "quarantine.list",
        "quarantine.delete",
        "id",
        "$response.body#/0/id",
    ),
    (
        "security.analyze",
        "quarantine.get",
        "id",
        "$response.body#/quarantine_id",
    ),
    (
        "security.analyze",
        "quarantine.release",
        "id",
        "$response.body#/quarantine_id",
    ),
    (
        "backups.list",
        "backups.restore",
        "name",
        "$response.body#/0/name",
    ),
    (
        "keys.create",
        "keys.revoke",
        "prefix",
        "$response.body#/prefix",
    ),
    ("dns.create", "dns.delete", "name", "$response.body#/name"),
];

/// The security scheme's name in the document.
pub const BEARER: &str = "bearer";

/// Collects paths and component schemas while the operations are added.
struct Builder {
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

fn json_ref(name: &str, content_type: &str) -> utoipa::openapi::Content {
    let _ = content_type;
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(name)))
        .build()
}

fn error_response(desc: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(desc)
        .content(PROBLEM, json_ref("Problem", PROBLEM))
        .build()
}

impl Builder {
    fn add<O: Operation>(&mut self) {
        let info = O::INFO;
        let mut params: Vec<Parameter> = O::Path::into_params(|| Some(ParameterIn::Path));
        params.extend(O::Query::into_params(|| Some(ParameterIn::Query)));
        let writes = info.verb != Verb::Get;
        if info.etag && writes {
            params.push(
                ParameterBuilder::new()
                    .name("If-Match")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Only act when the resource's current ETag is this one (412 otherwise)",
                    ))
                    .schema(Some(String::schema()))
                    .build(),
            );
        }
        let role_text = match info.access {
            Access::Public => "No credentials needed.".to_owned(),
            Access::Role(r) => format!(
                "Role: `{r}` or above; a key with scopes must include `{}`.",
                info.area
            ),
        };
        let mut op = OperationBuilder::new()
            .operation_id(Some(info.id))
            .summary(Some(info.summary))
            .description(Some(role_text))
            .tag(info.area)
            .parameters(Some(params));
        if let Some((name, schema)) = <O::Body as RequestBody>::schema() {
            self.schemas.push((name.clone(), schema));
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", json_ref(&name, "application/json"))
                    .build(),
            ));
        }
        let resp_name = <O::Response as ToSchema>::name().into_owned();
        self.schemas
            .push((resp_name.clone(), <O::Response as PartialSchema>::schema()));
        <O::Response as ToSchema>::schemas(&mut self.schemas);
        let content_type = if info.id == "events.stream" {
            "text/event-stream"
        } else if info.id == "metrics.scrape" {
            "application/openmetrics-text"
        } else {
            "application/json"
        };
        let mut ok = ResponseBuilder::new()
            .description(info.summary)
            .content(content_type, json_ref(&resp_name, content_type));
        if info.etag {
            ok = ok.header(
                "ETag",
                utoipa::openapi::HeaderBuilder::new()
                    .schema(String::schema())
                    .description(Some("The resource's version, for If-Match"))
                    .build(),
            );
        }
        for (_, to, param, expr) in LINKS.iter().filter(|l| l.0 == info.id) {
            let mut link = utoipa::openapi::link::LinkBuilder::new()
                .operation_id(*to)
                .parameter(*param, *expr);
            if *to == "dns.delete" {
                link = link.parameter("type", "$response.body#/type");
            }
            ok = ok.link(to.to_string(), link.build());
        }
        let mut op = op.response(info.success.to_string(), ok.build());
        op = op.response("400", error_response("The request is malformed"));
        if let Access::Role(role) = info.access {
            op = op
                .response(
                    "401",
                    error_response("No credentials, or they are invalid, expired or revoked"),
                )
                .response(
                    "403",
                    error_response("The credentials' role or scopes do not allow this"),
                )
                .security(SecurityRequirement::new(BEARER, [role.as_str()]));
        } else {
            op = op
                .response("401", error_response("The login failed"))
                .security(SecurityRequirement::default());
            if info.id == "auth.token" {
                op = op.response(
                    "403",
                    error_response(
                        "The login is right but gives no role (an LDAP user in no mapped group)",
                    ),
                );
            }
        }
        if !O::Path::into_params(|| None).is_empty() {
            op = op.response("404", error_response("No such resource"));
        }
        if let Access::Role(_) = info.access {
            op = op.response(
                "409",
                error_response("The platform's configuration does not allow this now"),
            );
        }
        if info.etag && writes {
            op = op.response("412", error_response("If-Match does not match"));
        }
        if <O::Body as RequestBody>::present() {
            op = op
                .response("413", error_response("The body is too large"))
                .response("415", error_response("The body is not application/json"));
        }
        op = op
            .response("422", error_response("A field is invalid"))
            .response("429", error_response("Too many requests; see Retry-After"));
        if writes {
            op = op.response("502", error_response("Something autogit drives failed"));
        }
        if info.id != "meta.health" {
            op = op.response(
                "503",
                error_response("Not available now, or not finished in time; see the detail"),
            );
        }
        let method = match info.verb {
            Verb::Get => HttpMethod::Get,
            Verb::Post => HttpMethod::Post,
            Verb::Delete => HttpMethod::Delete,
        };
        self.paths
            .add_path_operation(info.path, vec![method], op.build());
    }
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut b = Builder {
        paths: PathsBuilder::new().build(),
        schemas: Vec::new(),
    };
    macro_rules! add_all {
        ($($op:ident),*) => { $( b.add::<crate::ops::$op>(); )* };
    }
    crate::for_each_operation!(add_all);
    b.schemas
        .push(("Problem".into(), <Problem as PartialSchema>::schema()));
    <Problem as ToSchema>::schemas(&mut b.schemas);
    b.schemas.sort_by(|a, c| a.0.cmp(&c.0));
    b.schemas.dedup_by(|a, c| a.0 == c.0);
    let mut components = ComponentsBuilder::new().security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("API key (agk_…) or JWT")
                .build(),
        ),
    );
    for (name, schema) in b.schemas {
        components = components.schema(name, schema);
    }
    let mut tags: Vec<&str> = crate::ops::all().iter().map(|i| i.area).collect();
    tags.sort_unstable();
    tags.dedup();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("AutoGit Platform API")
                .version("1.0.0")
                .description(Some(
                    "Self-hosted GitOps platform API. Errors are RFC 9457 problem details. \
                     Send `Authorization: Bearer <API key or token>`; each operation names the \
                     role it needs as the scope of its `bearer` requirement.",
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new().url("/").build()]))
        .paths(b.paths)
        .components(Some(components.build()))
        .tags(Some(tags.into_iter().map(|t| {
            utoipa::openapi::tag::TagBuilder::new().name(t).build()
        })))
        .build()
}

/// The document as committed (`docs/api/openapi.json`): pretty JSON and a final newline.
pub fn json() -> String {
    let mut doc = serde_json::to_value(document()).expect("the OpenAPI document serializes");
    fix_links(&mut doc);
    let mut s = serde_json::to_string_pretty(&doc).expect("the OpenAPI document serializes");
    s.push('\n');
    s
}

/// utoipa 5 writes a link's `operationId` as `operation_id`; OpenAPI says `operationId`.
fn fix_links(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(links) = map.get_mut("links").and_then(|l| l.as_object_mut()) {
                for link in links.values_mut() {
                    if let Some(obj) = link.as_object_mut()
                        && let Some(id) = obj.remove("operation_id")
                    {
                        obj.insert("operationId".into(), id);
                    }
                }
            }
            map.values_mut().for_each(fix_links);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_links),
        _ => {}
    }
}
