//! OpenAPI document at `/openapi.json`, interactive docs at `/docs`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use crate::routes::{
    admin, ai, auth, blobs, comments, credits, follows, glitch, likes, ops, studio, users, videos,
};
use crate::ApiContext;

#[derive(OpenApi)]
#[openapi(
    info(title = "LOKIZ API", description = "AI video-remix social platform — event-sourced CQRS backend. \
        Commands answer with `X-Lokiz-Position`; send it back as `X-Lokiz-Min-Position` to read your writes. \
        Errors always use the envelope `{\"error\": {\"code\", \"message\", \"details\"}}`."),
    paths(
        auth::register, auth::login, auth::me, auth::refresh_tokens, auth::logout,
        users::get_user, users::update_me, users::my_stats,
        videos::upload_url, videos::complete_upload, videos::get_video, videos::update_video,
        videos::delete_video, videos::view, videos::batch_metadata, videos::list_latest,
        videos::feed, videos::prefetch, blobs::put_blob, blobs::get_blob,
        likes::like, likes::unlike, likes::check, likes::check_batch,
        follows::follow, follows::unfollow, follows::followers, follows::following,
        follows::check_one, follows::check_batch,
        comments::post_comment, comments::list, comments::edit, comments::delete,
        admin::audit,
        ai::capture_frame, ai::capture_frames, ai::template, ai::glitch_animate, ai::glitch_replace,
        ai::music, ai::get_job, ai::cancel_job, ai::batch_status, ai::callback,
        credits::balance, credits::history, credits::glitch_presets, credits::music_presets,
        credits::purchase, credits::packages, credits::plans,
        glitch::glitches, glitch::source, studio::timeline, studio::preview, studio::select_range,
        ops::health, ops::ready, ops::metrics_text,
    ),
    components(schemas(
        auth::AuthResponse, auth::RegisterRequest, auth::LoginRequest, auth::RefreshRequest,
        users::MeView, users::PublicUser, users::UpdateProfileRequest, users::UpdateProfileResponse,
        users::MyStats,
        videos::VideoResponse, videos::VideoUser, videos::VideoPage, videos::UploadUrlRequest,
        videos::UploadUrlResponse, videos::CompleteRequest, videos::CompleteResponse,
        videos::UpdateVideoRequest, videos::ViewResponse, videos::VideoCounts, videos::BatchMetadata,
        likes::LikeState, likes::LikeCheck, likes::VideoIds, likes::LikedVideos,
        follows::FollowState, follows::FollowUser, follows::FollowPage, follows::FollowCheck,
        follows::UserIds, follows::FollowingUsers,
        comments::PostCommentRequest, comments::Posted, comments::CommentResponse,
        comments::CommentPage, comments::EditCommentRequest,
        admin::AuditView, admin::AuditEvent,
        ai::JobView, ai::Frame, ai::Frames, ai::Canceled, ai::JobStatusView, ai::BatchStatus, ai::CallbackReceived,
        credits::Balance, credits::CreditTransaction, credits::CreditHistory, credits::GlitchPresets,
        credits::PresetView, credits::Package, credits::Packages, credits::Purchase, credits::Plan,
        credits::Plans, glitch::ChainVideo, glitch::ChainPage,
        studio::Thumbnail, studio::Timeline, studio::Preview, studio::SelectedRange,
        crate::error::ErrorEnvelope, crate::error::ErrorBody,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "videos"), (name = "likes"),
         (name = "follows"), (name = "comments"), (name = "ai"), (name = "credits"), (name = "glitch"), (name = "studio"), (name = "admin"), (name = "ops"))
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
