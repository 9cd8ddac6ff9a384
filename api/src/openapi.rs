//! OpenAPI document at `/openapi.json`, interactive docs (Swagger UI, served
//! from the binary) at `/docs`, and the same document as Redoc at `/redoc`
//! (its bundle vendored in `api/assets/` and served from the binary too).
//! Neither docs page is itself in the document.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{
    admin, ai, auth, blobs, blocks, bookmarks, comments, credits, drafts, follows, glitch,
    hashtags, images, likes, moderation, notifications, ops, payments, reports, search, shares,
    studio, subscriptions, users, video_stats, videos,
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
        videos::feed, videos::prefetch, video_stats::stats,
        drafts::save, drafts::list, drafts::remove, images::upload_url, images::complete, images::file, blobs::put_blob, blobs::get_blob,
        likes::like, likes::unlike, likes::check, likes::check_batch,
        bookmarks::save, bookmarks::remove, bookmarks::check_one, bookmarks::list, reports::report,
        shares::share, shares::share_count, shares::landing,
        follows::follow, follows::unfollow, follows::followers, follows::following,
        follows::check_one, follows::check_batch, blocks::block, blocks::unblock, blocks::list,
        notifications::list, notifications::unread_count, notifications::read_one,
        notifications::read_all, notifications::batch_mark_read, notifications::settings,
        notifications::change_settings, crate::live::socket,
        comments::post_comment, comments::list, comments::edit, comments::delete,
        admin::audit, moderation::stats, moderation::users, moderation::videos,
        moderation::reports, moderation::ban, moderation::remove_video,
        ai::capture_frame, ai::capture_frames, ai::template, ai::glitch_animate, ai::glitch_replace,
        ai::music, ai::get_job, ai::cancel_job, ai::batch_status, ai::callback,
        credits::balance, credits::history, credits::glitch_presets, credits::music_presets,
        credits::purchase, credits::packages, credits::plans, payments::webhook,
        subscriptions::subscribe, subscriptions::me, subscriptions::cancel,
        glitch::glitches, glitch::source, studio::timeline, studio::preview, studio::select_range,
        ops::health, ops::ready, ops::metrics_text,
        search::search_all, search::search_videos, search::search_users, search::autocomplete,
        search::history, search::record, search::forget, search::clear,
        hashtags::tag_videos, hashtags::trending,
    ),
    components(schemas(
        auth::AuthResponse, auth::RegisterRequest, auth::LoginRequest, auth::RefreshRequest,
        users::MeView, users::PublicUser, users::UpdateProfileRequest, users::UpdateProfileResponse,
        users::MyStats,
        crate::reads::VideoResponse, crate::reads::VideoUser, crate::reads::VideoPage, videos::UploadUrlRequest,
        videos::UploadUrlResponse, videos::CompleteRequest, videos::CompleteResponse,
        videos::UpdateVideoRequest, videos::ViewResponse, videos::Algorithm, videos::VideoCounts, videos::BatchMetadata,
        video_stats::VideoStats, video_stats::StatsTotals, video_stats::DayViews,
        video_stats::DayLikes, video_stats::DayComments, video_stats::DayGlitches,
        drafts::SaveDraftRequest, drafts::DraftSaved, drafts::DraftView, drafts::DraftPage,
        images::ImageUploadRequest, images::ImageUploadUrl, images::ImageCompleted,
        likes::LikeState, likes::LikeCheck, likes::VideoIds, likes::LikedVideos,
        bookmarks::BookmarkState, bookmarks::BookmarkCheck, reports::ReportRequest, reports::Filed,
        shares::ShareRequest, shares::Shared, shares::ShareCount,
        follows::FollowState, follows::FollowUser, follows::FollowPage, follows::FollowCheck,
        follows::UserIds, follows::FollowingUsers, blocks::BlockState, blocks::BlockedUser,
        blocks::BlockPage, notifications::NotificationView, notifications::NotificationPage,
        notifications::UnreadCount, notifications::Marked, notifications::NotificationIds,
        notifications::NotificationSettingsView, notifications::UpdateNotificationSettings,
        comments::PostCommentRequest, comments::Posted, comments::CommentResponse,
        comments::CommentPage, comments::EditCommentRequest,
        admin::AuditView, admin::AuditEvent, moderation::AdminStats, moderation::AdminUserView,
        moderation::AdminUserPage, moderation::AdminVideoView, moderation::AdminVideoPage,
        moderation::AdminReportView, moderation::AdminReportPage, moderation::BanRequest,
        moderation::BanState, moderation::RemoveRequest, moderation::Removed,
        ai::JobView, ai::Frame, ai::Frames, ai::Canceled, ai::JobStatusView, ai::BatchStatus, ai::CallbackReceived,
        credits::Balance, credits::CreditTransaction, credits::CreditHistory, credits::GlitchPresets,
        credits::PresetView, credits::Package, credits::Packages, credits::Purchase, credits::Plan,
        credits::Plans, credits::PurchaseRequest, payments::WebhookReceived,
        subscriptions::SubscribeRequest, subscriptions::SubscriptionView, glitch::ChainVideo, glitch::ChainPage,
        studio::Thumbnail, studio::SelectRangeRequest, studio::Timeline, studio::Preview, studio::SelectedRange,
        search::SearchUser, search::UserSearchPage, search::HashtagMatch, search::SearchResults,
        search::Suggestion, search::Suggestions, search::HistoryEntry, search::History,
        search::RecordSearchRequest, hashtags::TrendingTag, hashtags::Trending,
        crate::error::ErrorEnvelope, crate::error::ErrorBody,
    )),
    modifiers(&BearerAuth, &Contract),
    tags((name = "auth"), (name = "users"), (name = "videos"), (name = "images"), (name = "likes"), (name = "bookmarks"),
         (name = "follows"), (name = "blocks"), (name = "notifications"), (name = "comments"), (name = "ai"), (name = "credits"), (name = "glitch"), (name = "studio"), (name = "admin"), (name = "search"), (name = "ops"))
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
        .route("/openapi.json", get(|| async { Json(document().clone()) }))
        // Swagger UI's files are compiled into the binary (the vendored
        // `utoipa-swagger-ui-vendored` crate): `/docs` needs no network.
        .merge(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .route("/redoc", get(redoc_page))
        .route("/redoc/", get(redoc_page))
        .route("/redoc/redoc.standalone.js", get(redoc_bundle))
}

/// Redoc 2.1.5's standalone bundle (`api/assets/README.md`).
const REDOC_BUNDLE: &[u8] = include_bytes!("../assets/redoc.standalone.js");

const REDOC_PAGE: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>LOKIZ API reference</title>
<style>body { margin: 0; padding: 0; }</style>
</head><body>
<redoc spec-url=\"/openapi.json\"></redoc>
<script src=\"/redoc/redoc.standalone.js\"></script>
</body></html>
";

/// The page may load only from this server: Redoc's sidebar shows a logo
/// from its CDN, which this keeps the browser from asking for (the logo
/// hides itself when it cannot load).
const REDOC_CSP: &str = "default-src 'none'; script-src 'self'; worker-src 'self' blob:; \
    connect-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'";

async fn redoc_page() -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, REDOC_CSP),
        ],
        REDOC_PAGE,
    )
}

async fn redoc_bundle() -> impl axum::response::IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        REDOC_BUNDLE,
    )
}

/// The statuses every operation can answer because of what it takes, added
/// where a route's own `responses(...)` does not list them, and the error
/// envelope on every 4xx/5xx answer. One place derives them from the
/// operation's shape (sign-in, body, path, query, read-your-writes header),
/// so a new route is documented like the others without repeating them.
struct Contract;

/// Operations that touch no database (everything else may answer 503).
const WITHOUT_DATABASE: &[&str] = &["/health", "/metrics"];

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let secured = op.security.as_ref().is_some_and(|reqs| {
                    reqs.iter().any(|r| {
                        serde_json::to_value(r)
                            .ok()
                            .and_then(|v| v.as_object().map(|o| !o.is_empty()))
                            .unwrap_or(false)
                    })
                });
                let params = op.parameters.as_deref().unwrap_or_default();
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.keys().any(|c| c == "application/json"));
                let has = |kind: ParameterIn| params.iter().any(|p| p.parameter_in == kind);
                let (path_params, query) = (has(ParameterIn::Path), has(ParameterIn::Query));
                let min_position = params.iter().any(|p| p.name == "X-Lokiz-Min-Position");

                let mut reasons: Vec<(&str, &str)> = Vec::new();
                if secured {
                    reasons.push((
                        "401",
                        "`UNAUTHENTICATED` (no bearer token where sign-in is required) or \
                         `INVALID_TOKEN` (a token that is malformed, expired or not ours)",
                    ));
                    reasons.push((
                        "403",
                        "`USER_BANNED`: the signed-in account is banned (by an admin); \
                         `BLOCKED`: a block stands between the caller and the other user \
                         (likes, comments, follows, AI jobs on their videos)",
                    ));
                }
                if json_body {
                    reasons.push((
                        "400",
                        "`INVALID_JSON` (the body is not JSON) or `INVALID_BODY` (unreadable)",
                    ));
                    reasons.push((
                        "415",
                        "`UNSUPPORTED_MEDIA_TYPE`: the body must be sent as `application/json`",
                    ));
                    reasons.push((
                        "422",
                        "`VALIDATION_FAILED`: `details.fields` lists every bad field \
                         (`{field, code, message}`)",
                    ));
                }
                if query {
                    reasons.push((
                        "400",
                        "`INVALID_QUERY`: the query string cannot be parsed, or repeats a parameter",
                    ));
                    reasons.push((
                        "422",
                        "`VALIDATION_FAILED`: `details.fields` lists every bad query parameter",
                    ));
                }
                if path_params {
                    reasons.push((
                        "404",
                        "`NOT_FOUND`: no such resource (an id that is not a UUID names none)",
                    ));
                }
                if min_position {
                    reasons.push((
                        "400",
                        "`INVALID_MIN_POSITION`: `X-Lokiz-Min-Position` is not a non-negative integer",
                    ));
                    reasons.push((
                        "409",
                        "`POSITION_NOT_ISSUED`: `X-Lokiz-Min-Position` is beyond every position \
                         this server has issued (answered at once, never waited for; \
                         `details: {min_position}`)",
                    ));
                    reasons.push((
                        "503",
                        "`CONSISTENCY_TIMEOUT`: the read models did not reach \
                         `X-Lokiz-Min-Position` in time (`details: {min_position, waited_ms}`); \
                         retry after `Retry-After`",
                    ));
                }
                let limited = crate::rate_limit::is_limited(path);
                if limited {
                    reasons.push((
                        "429",
                        "`RATE_LIMIT_EXCEEDED`: too many requests from this user (or, without \
                         a token, this address); retry after `Retry-After` seconds \
                         (`details: {retry_after}`)",
                    ));
                }
                if !WITHOUT_DATABASE.contains(&path.as_str()) {
                    reasons.push((
                        "503",
                        "`SERVICE_UNAVAILABLE`: the database or event store is unreachable; \
                         retry after `Retry-After`",
                    ));
                }
                if path.starts_with("/v1/") {
                    reasons.push((
                        "503",
                        "`REQUEST_TIMEOUT`: no answer within the server's request timeout \
                         (`LOKIZ_REQUEST_TIMEOUT_MS`)",
                    ));
                }
                let responses = &mut op.responses.responses;
                for (status, reason) in reasons {
                    match responses.get_mut(status) {
                        Some(utoipa::openapi::RefOr::T(r)) => {
                            if !r.description.contains(reason) {
                                r.description = if r.description.is_empty() {
                                    reason.to_owned()
                                } else {
                                    format!("{}; {reason}", r.description)
                                };
                            }
                        }
                        Some(utoipa::openapi::RefOr::Ref(_)) => {}
                        None => {
                            responses.insert(
                                status.to_owned(),
                                utoipa::openapi::RefOr::T(utoipa::openapi::Response::new(reason)),
                            );
                        }
                    }
                }
                if limited {
                    if let Some(utoipa::openapi::RefOr::T(r)) = responses.get_mut("429") {
                        rate_limit_headers(r, true);
                    }
                }
                // every error answer is the envelope
                for (status, r) in responses.iter_mut() {
                    let utoipa::openapi::RefOr::T(r) = r else {
                        continue;
                    };
                    let error = status.starts_with('4') || status.starts_with('5');
                    if error && r.content.is_empty() {
                        r.content.insert(
                            "application/json".to_owned(),
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                    "ErrorEnvelope",
                                )))
                                .build(),
                        );
                    }
                }
            }
        }
    }
}

/// `Retry-After` (on 429) and the `X-RateLimit-*` headers.
fn rate_limit_headers(r: &mut utoipa::openapi::Response, retry_after: bool) {
    use utoipa::openapi::{header::HeaderBuilder, ObjectBuilder, Type};
    let int = |description: &str| {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some(description))
            .build()
    };
    if retry_after {
        r.headers
            .insert("Retry-After".into(), int("Seconds until the window ends"));
    }
    r.headers.insert(
        "X-RateLimit-Limit".into(),
        int("Requests allowed in the window"),
    );
    r.headers.insert(
        "X-RateLimit-Remaining".into(),
        int("Requests left in the window"),
    );
    r.headers.insert(
        "X-RateLimit-Reset".into(),
        int("Unix time (seconds) when the window ends"),
    );
}

/// The document as served: [`ApiDoc`] with the JSON-level rules utoipa's
/// attributes cannot state, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        strict_ids(&mut doc);
        at_least_one_field(&mut doc, "UpdateProfileRequest");
        at_least_one_field(&mut doc, "UpdateVideoRequest");
        at_least_one_field(&mut doc, "UpdateNotificationSettings");
        if let Some(s) = doc
            .pointer_mut("/components/schemas/UpdateNotificationSettings")
            .and_then(|s| s.as_object_mut())
        {
            // every kind is named; another key is refused
            s.insert(
                "additionalProperties".into(),
                serde_json::Value::Bool(false),
            );
        }
        links(&mut doc);
        if let Some(p) = doc
            .pointer_mut("/components/schemas/PurchaseRequest/properties/package_id")
            .and_then(|p| p.as_object_mut())
        {
            let ids: Vec<&str> = credits::PACKAGES.iter().map(|p| p.id).collect();
            p.insert("enum".into(), serde_json::json!(ids));
        }
        doc
    })
}

/// How the server reads every id: a hyphenated UUID. (`format: uuid` alone
/// is an annotation in JSON Schema 2020-12, which validators need not check.)
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

fn strict_ids(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.get("format").and_then(|f| f.as_str()) == Some("uuid") {
                map.entry("pattern")
                    .or_insert_with(|| serde_json::Value::from(UUID_PATTERN));
            }
            for child in map.values_mut() {
                strict_ids(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strict_ids),
        _ => {}
    }
}

/// A PATCH body must change something: at least one of its properties.
fn at_least_one_field(doc: &mut serde_json::Value, schema: &str) {
    let Some(s) = doc
        .pointer_mut(&format!("/components/schemas/{schema}"))
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    let names: Vec<String> = s
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let any_of: Vec<serde_json::Value> = names
        .iter()
        .map(|n| serde_json::json!({ "required": [n] }))
        .collect();
    s.insert("anyOf".into(), serde_json::Value::from(any_of));
}

/// OpenAPI links: how a client goes on from an answer (and how schemathesis'
/// stateful phase chains calls). Reads that follow a command carry its
/// `X-Lokiz-Position` as `X-Lokiz-Min-Position` (read your writes).
fn links(doc: &mut serde_json::Value) {
    use serde_json::json;
    let video = "$response.body#/video_id";
    let position = "$response.header.X-Lokiz-Position";
    let add = |doc: &mut serde_json::Value, path: &str, method: &str, status: &str, links| {
        if let Some(r) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('/', "~1")
            ))
            .and_then(|r| r.as_object_mut())
        {
            r.insert("links".into(), links);
        }
    };
    add(
        doc,
        "/v1/videos/upload-url",
        "post",
        "200",
        json!({
            "CompleteUpload": {"operationId": "complete_upload", "parameters": {"path.id": video}},
            "GetVideo": {"operationId": "get_video",
                         "parameters": {"path.id": video, "header.X-Lokiz-Min-Position": position}},
            "LikeVideo": {"operationId": "like", "parameters": {"path.id": video}},
            "UpdateVideo": {"operationId": "update_video", "parameters": {"path.id": video}},
            "DeleteVideo": {"operationId": "delete_video", "parameters": {"path.id": video}},
        }),
    );
    add(
        doc,
        "/v1/likes/videos/{id}",
        "post",
        "200",
        json!({
            "CheckLike": {"operationId": "check", "parameters": {"path.id": video}},
            "BatchMetadata": {"operationId": "batch_metadata",
                              "requestBody": {"video_ids": [video]}},
            "Unlike": {"operationId": "unlike", "parameters": {"path.id": video}},
        }),
    );
}
