//! The OpenAPI document (`/openapi.json`), generated from the handlers'
//! annotations and completed here with what every operation shares: the
//! 401 of a protected operation, the 400 of one with input, the 408 of one
//! with a body, the 429 of an upload, the 413 and 415
//! of a JSON body, and binary bodies typed as bytes.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use super::{auth, blocks, changes, commit, files, links, pending, shares, trash, web};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry",
        description = "Ferry's HTTP API: auth, blocks, commits, changes, long polling and the file API. \
            Every error answer has the body `{\"error\":{\"code\",\"message\"}}` with a stable `code`."
    ),
    paths(
        auth::login, auth::logout, auth::account,
        web::login, web::current, web::logout,
        blocks::missing, blocks::put_block, blocks::get_block, blocks::batch, blocks::fetch,
        commit::commit,
        changes::changes, changes::poll, changes::activity,
        files::upload_start, files::upload_put, files::download, files::list_revisions_get, files::list_revisions_post,
        files::list, files::delete, files::zip, trash::list, trash::restore,
        pending::announce, pending::list, pending::drop_one, pending::drop_all,
        links::create, links::list, links::revoke, links::open_root, links::open_path, links::give_password,
        shares::create, shares::list, shares::set_role, shares::remove_member, shares::unshare,
    ),
    components(schemas(ferry_shared::api::ErrorBody, Binary, files::UploadType, changes::BlocksMode, ferry_shared::path::NonRootPath)),
    modifiers(&BearerAuth, &Complete),
)]
pub struct ApiDoc;

/// Raw bytes: a file, a block as stored, or a sequence of block frames.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // A browser's session (`POST /auth/session`) works wherever a bearer
        // token does; what changes something also needs `X-CSRF-Token`.
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::web::COOKIE))),
        );
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for op in ops.into_iter().flatten() {
                let Some(security) = op.security.as_mut() else { continue };
                let json = serde_json::to_string(&*security).unwrap_or_default();
                if json.contains("\"bearer\"") && !json.contains("\"cookie\"") {
                    security.push(utoipa::openapi::security::SecurityRequirement::new("cookie", Vec::<String>::new()));
                }
            }
        }
    }
}

/// Adds the answers every operation of a kind has, where its annotation
/// does not already say more.
struct Complete;

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
        .into()
}

fn add(op: &mut Operation, status: &str, description: &str) {
    op.responses.responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
}

/// An enum serde writes as `{"variant": ...}` is a `oneOf` of objects with
/// one required property each; the object may have no other property.
fn single_key_variants(schema: &mut utoipa::openapi::schema::Schema) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Schema::OneOf(one_of) = schema else { return };
    for item in &mut one_of.items {
        if let RefOr::T(Schema::Object(o)) = item
            && o.properties.len() == 1
            && o.required.len() == 1
        {
            o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

impl utoipa::Modify for Complete {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for schema in components.schemas.values_mut() {
                if let RefOr::T(s) = schema {
                    single_key_variants(s);
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for op in ops.into_iter().flatten() {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(op, "401", "missing, invalid or revoked token (`unauthorized`): log in again");
                }
                let has_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
                if has_input {
                    add(op, "400", "the request is malformed (`bad_request`, `invalid_path`); the message says how");
                }
                let typed_body = op.request_body.as_ref().is_some_and(|b| {
                    b.content.contains_key("application/json")
                        || b.content.contains_key("application/x-www-form-urlencoded")
                });
                if typed_body {
                    add(op, "413", "the body is larger than this operation takes (`payload_too_large`)");
                    add(op, "415", "the body is not of the type this operation reads (`unsupported_media_type`)");
                }
                if op.request_body.is_some() {
                    add(op, "408", "the body arrived too slowly and was cut off (`request_timeout`)");
                }
                // Routes whose bodies count among the user's uploads in flight.
                let uploads = ["/blocks", "/commit", "/uploads/pending", "/files/upload"];
                if op.request_body.is_some() && uploads.iter().any(|p| path.starts_with(p)) {
                    add(
                        op,
                        "429",
                        "too many uploads of yours are in progress (`too_many_requests`): send it again shortly",
                    );
                }
                // Every error answer is an `ErrorBody`, also where an annotation gave none.
                for (status, resp) in op.responses.responses.iter_mut() {
                    if let RefOr::T(r) = resp
                        && (status.starts_with('4') || status.starts_with('5'))
                        && r.content.is_empty()
                    {
                        r.content.insert(
                            "application/json".to_owned(),
                            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                        );
                    }
                }
            }
        }
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
