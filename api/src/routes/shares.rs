//! Shares: `POST /v1/videos/{id}/share` (a deep link, and the share
//! counted once per person and channel), `GET /v1/videos/{id}/share-count`
//! (per channel), and the deep link's landing page `GET /v/{id}` (Open
//! Graph tags for link previews, and the `lokiz://` app link).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lokiz_domain::share::{Share, ShareChannel, ShareCommand, ShareError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MaybeAuthUser, MinPosition};
use crate::reads::live_video;
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/videos/{id}/share", post(share))
        .route("/videos/{id}/share-count", get(share_count))
}

/// Outside `/v1`: the page a share link opens.
pub fn landing_router() -> Router<ApiContext> {
    Router::new().route("/v/{id}", get(landing))
}

/// Body of `POST /v1/videos/{id}/share`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ShareRequest {
    /// Where it is shared to.
    #[schema(
        pattern = "^(link|kakao|instagram|facebook|x|line|whatsapp|telegram|email|sms|other)$"
    )]
    channel: String,
}

#[derive(Serialize, ToSchema)]
pub struct Shared {
    pub video_id: Uuid,
    pub channel: String,
    /// The web link to hand out (opens the landing page, then the app).
    pub share_url: String,
    /// The app's own link.
    pub app_url: String,
    /// The video's share count, this share included.
    pub share_count: i64,
    /// False when this person had shared it to this channel before (not
    /// counted again).
    pub changed: bool,
    pub position: Option<i64>,
}

fn links(ctx: &ApiContext, video_id: Uuid, channel: ShareChannel) -> (String, String) {
    (
        format!(
            "{}/v/{video_id}?utm_source={}",
            ctx.public_base,
            channel.as_str()
        ),
        format!("lokiz://videos/{video_id}"),
    )
}

#[utoipa::path(post, path = "/v1/videos/{id}/share", tag = "videos", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)), request_body = ShareRequest,
    responses((status = 200, body = Shared),
              (status = 404, body = crate::error::ErrorEnvelope),
              (status = 409, description = "`VIDEO_PRIVATE`: only public videos can be shared", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn share(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let raw = f.required_str("channel");
    let channel = f.parse("channel", raw, |field, raw| {
        ShareChannel::parse(raw).ok_or_else(|| {
            lokiz_domain::values::FieldError::new(
                field,
                "format",
                "must be link, kakao, instagram, facebook, x, line, whatsapp, telegram, email, sms or other",
            )
        })
    });
    f.finish()?;
    let Some(channel) = channel else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    ctx.wait_for(min, &["videos", "blocks"]).await?;
    let video = live_video(&ctx, video_id, Some(me.user_id)).await?;
    if !video.public {
        return Err(ApiError::Conflict {
            code: "VIDEO_PRIVATE",
            message: "Only public videos can be shared.".into(),
            details: None,
        });
    }
    let written = ctx
        .store
        .shares
        .execute(
            &Share::id(me.user_id, video_id),
            ShareCommand::ShareVideo {
                user_id: me.user_id,
                video_id,
                channel,
                at: crate::now(),
            },
            HashMap::from([("actor".to_owned(), me.user_id.to_string())]),
        )
        .await
        .map_err(|e| command_error(e, |e: ShareError| match e {}))?;
    // the count the answer shows includes this share
    ctx.wait_for(written.position, &["videos"]).await?;
    let share_count: i64 = sqlx::query_scalar("SELECT share_count FROM videos WHERE id = $1")
        .bind(video_id)
        .fetch_one(&ctx.pool)
        .await?;
    let (share_url, app_url) = links(&ctx, video_id, channel);
    Ok(with_position(
        written.position,
        Json(Shared {
            video_id,
            channel: channel.as_str().to_owned(),
            share_url,
            app_url,
            share_count,
            changed: written.appended,
            position: written.position,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ShareCount {
    pub video_id: Uuid,
    pub share_count: i64,
    /// Per channel shared to (channels nobody used are left out).
    pub channels: BTreeMap<String, i64>,
}

#[utoipa::path(get, path = "/v1/videos/{id}/share-count", tag = "videos", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = ShareCount), (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn share_count(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<ShareCount>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    ctx.wait_for(min, &["videos", "shares", "blocks"]).await?;
    live_video(&ctx, video_id, user.map(|u| u.user_id)).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT channel, count(*) FROM shares WHERE video_id = $1 GROUP BY channel")
            .bind(video_id)
            .fetch_all(&ctx.pool)
            .await?;
    let share_count: i64 = sqlx::query_scalar("SELECT share_count FROM videos WHERE id = $1")
        .bind(video_id)
        .fetch_one(&ctx.pool)
        .await?;
    Ok(Json(ShareCount {
        video_id,
        share_count,
        channels: rows.into_iter().collect(),
    }))
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[utoipa::path(get, path = "/v/{id}", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The share link's landing page: Open Graph tags for previews, the video, and the app link", content_type = "text/html"),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn landing(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let video = live_video(&ctx, video_id, None).await?;
    let row: (Option<String>, String) = sqlx::query_as(
        "SELECT v.caption, u.display_name FROM videos v JOIN users u ON u.id = v.owner_id
          WHERE v.id = $1",
    )
    .bind(video_id)
    .fetch_one(&ctx.pool)
    .await?;
    let (caption, author) = (row.0.unwrap_or_default(), row.1);
    let file = crate::files::file_url(&ctx, &video.file_key, true);
    let (_, app_url) = links(&ctx, video_id, ShareChannel::Link);
    let title = escape(&format!("{author} on LOKIZ"));
    let caption = escape(&caption);
    let file = escape(&file);
    let page = format!(
        "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>{title}</title>
<meta property=\"og:type\" content=\"video.other\">
<meta property=\"og:title\" content=\"{title}\">
<meta property=\"og:description\" content=\"{caption}\">
<meta property=\"og:video\" content=\"{file}\">
<meta property=\"og:video:type\" content=\"video/mp4\">
<meta property=\"al:android:url\" content=\"{app_url}\">
<meta property=\"al:ios:url\" content=\"{app_url}\">
</head><body>
<h1>{title}</h1>
<p>{caption}</p>
<video src=\"{file}\" controls playsinline></video>
<p><a href=\"{app_url}\">Open in the LOKIZ app</a></p>
</body></html>
"
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; media-src *; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response())
}
