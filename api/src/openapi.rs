//! OpenAPI document at `/openapi.json`, interactive docs at `/docs`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use crate::routes::{auth, ops, users};
use crate::ApiContext;

#[derive(OpenApi)]
#[openapi(
    info(title = "LOKIZ API", description = "AI video-remix social platform — event-sourced CQRS backend. \
        Commands answer with `X-Lokiz-Position`; send it back as `X-Lokiz-Min-Position` to read your writes. \
        Errors always use the envelope `{\"error\": {\"code\", \"message\", \"details\"}}`."),
    paths(
        auth::register, auth::login, auth::me, auth::refresh_tokens, auth::logout,
        users::get_user, users::update_me,
        ops::health, ops::ready, ops::metrics_text,
    ),
    components(schemas(
        auth::AuthResponse, auth::RegisterRequest, auth::LoginRequest, auth::RefreshRequest,
        users::MeView, users::PublicUser, users::UpdateProfileRequest, users::UpdateProfileResponse,
        crate::error::ErrorEnvelope, crate::error::ErrorBody,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "ops"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .merge(Scalar::with_url("/docs", ApiDoc::openapi()))
}
