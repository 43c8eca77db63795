//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the response types' `ToSchema` derives, served at `/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(|| async { Json(document()) }))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(
                "A token from `certhost token create` (or POST /v1/tokens); roles: admin, operator, requester, auditor",
            )).build()),
        );
    }
}

/// Every answer carries `X-Request-Id` (see `request_id`); said once here rather than on each
/// handler's annotation, where one would be forgotten.
struct RequestIdHeader;

impl Modify for RequestIdHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let header = utoipa::openapi::header::HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The request's id: the request's own `X-Request-Id` when it is 1–128 characters of \
                 letters, digits and `-_.:/+=@~`, otherwise a new one. Log lines about the request carry it.",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response.headers.insert("X-Request-Id".to_owned(), header.clone());
                    }
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "certhost", description = "Certificate lifecycle host: CA accounts, profiles, certificates, orders, audit."),
    modifiers(&BearerAuth, &RequestIdHeader),
    security(("bearer" = [])),
    paths(
        super::health::healthz, super::health::readyz, super::health::metrics,
        super::certificates::list, super::certificates::issue, super::certificates::show,
        super::certificates::delete, super::certificates::pem, super::certificates::chain,
        super::certificates::fullchain, super::certificates::der, super::certificates::key, super::certificates::pkcs12, super::certificates::renew,
        super::certificates::reissue, super::certificates::revoke, super::certificates::renew_lookup,
        super::deploy::deploy, super::renewals::list, super::renewals::retry,
        super::accounts::list, super::accounts::create, super::accounts::show, super::accounts::update,
        super::accounts::delete, super::accounts::activate, super::accounts::deactivate,
        super::accounts::test, super::accounts::set_secret,
        super::profiles::list, super::profiles::create, super::profiles::show, super::profiles::update,
        super::profiles::delete, super::profiles::set_secret,
        super::orders::list, super::orders::show, super::orders::poll, super::orders::approve,
        super::orders::decline, super::orders::resubmit,
        super::audit::list,
        super::tokens::list, super::tokens::create, super::tokens::revoke,
    ),
    tags(
        (name = "certificates", description = "The inventory and issuance"),
        (name = "accounts", description = "CA accounts (admin)"),
        (name = "profiles", description = "Issuance profiles"),
        (name = "orders", description = "Requests to CAs"),
        (name = "audit", description = "The append-only audit log"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "health", description = "Probes and metrics (no token)"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of this build.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
