//! Hashtags: `GET /v1/hashtags/{tag}/videos` (newest first) and
//! `GET /v1/hashtags/trending`.
//!
//! Trending follows Mastodon's tag trends: what counts is how many distinct
//! people used a tag in the last 24 hours (`observed`) against how many
//! used it on an average day of the week before (`expected`, at least 1).
//! A tag scores `(observed − expected)² / expected` when at least
//! [`MIN_ACCOUNTS`] people used it and more than expected, and the score
//! halves every [`HALF_LIFE_HOURS`] hours after its last use. So a tag many
//! people pick up today outranks one that is always popular (observed ≈
//! expected scores nothing), and one account posting a tag a hundred times
//! is one person, below the threshold.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::values::FieldError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{MaybeAuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, Params};
use crate::reads::{listed_for, VideoPage, VideoRow, VIDEO_COLUMNS};
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/hashtags/trending", get(trending))
        .route("/hashtags/{tag}/videos", get(tag_videos))
}

/// People who must use a tag within 24 hours before it can trend.
pub const MIN_ACCOUNTS: i64 = 3;
/// A trend's score halves every this many hours after the tag's last use.
pub const HALF_LIFE_HOURS: f64 = 6.0;
/// How long one computation of the trends is served (they are the same for
/// everybody; computing them reads the last week of tag use).
const TRENDS_TTL: Duration = Duration::from_secs(15);

/// A tag from a path: an optional `#`, then 1–50 letters, digits (any
/// script) or underscores with at least one letter; case-folded. More than
/// 51 characters is refused; anything else that is not a tag is `None`,
/// which finds no videos.
fn parse_tag(raw: &str) -> Result<Option<String>, FieldError> {
    if raw.chars().count() > 51 {
        return Err(FieldError::new(
            "tag",
            "length",
            "must be at most 51 characters (a # and 50)",
        ));
    }
    let t = raw.strip_prefix('#').unwrap_or(raw);
    let tag = (1..=50).contains(&t.chars().count())
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
        && t.chars().any(char::is_alphabetic);
    Ok(tag.then(|| t.to_lowercase()))
}

#[utoipa::path(get, path = "/v1/hashtags/{tag}/videos", tag = "search", security((), ("bearer" = [])),
    params(crate::extract::MinPosition,
           ("tag" = String, Path, max_length = 51, description = "The tag, with or without `#` (URL-encoded); any case. What cannot be a tag finds nothing"),
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = VideoPage, description = "Public videos with the tag in their caption, newest first"),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn tag_videos(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(tag): Path<String>,
    params: Params,
) -> Result<Json<VideoPage>, ApiError> {
    let mut errors = Vec::new();
    let tag = parse_tag(&tag).map_err(|e| errors.push(e)).ok().flatten();
    let after: Option<(DateTime<Utc>, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    let Some(tag) = tag else {
        return Ok(Json(VideoPage {
            videos: Vec::new(),
            next_cursor: None,
            has_more: false,
        }));
    };
    ctx.wait_for(min, &["hashtags", "videos", "users", "blocks"])
        .await?;
    let viewer = user.map(|u| u.user_id);
    let listed = listed_for("$5::uuid");
    #[derive(sqlx::FromRow)]
    struct Tagged {
        #[sqlx(flatten)]
        video: VideoRow,
        tagged_at: DateTime<Utc>,
    }
    let rows: Vec<Tagged> = sqlx::query_as(&format!(
        "SELECT {VIDEO_COLUMNS}, h.published_at AS tagged_at
           FROM video_hashtags h
           JOIN videos v ON v.id = h.video_id
           JOIN users u ON u.id = v.owner_id
          WHERE h.tag = $1 AND {listed}
            AND ($2::timestamptz IS NULL OR (h.published_at, h.video_id) < ($2, $3))
          ORDER BY h.published_at DESC, h.video_id DESC
          LIMIT $4"
    ))
    .bind(&tag)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .bind(viewer.unwrap_or(Uuid::nil()))
    .fetch_all(&ctx.pool)
    .await?;
    Ok(Json(VideoPage::from_rows(
        &ctx,
        rows,
        limit,
        |r| r.video,
        |r| encode_cursor(&(r.tagged_at, r.video.id)),
    )))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TrendingTag {
    /// Case-folded, without `#`.
    pub tag: String,
    /// How much more it is used than usual, decayed since its last use.
    pub score: f64,
    /// Distinct people who used it in the last 24 hours.
    pub accounts: i64,
    /// People per day in the week before (at least 1).
    pub expected: f64,
    /// Public videos carrying it.
    pub video_count: i64,
    pub last_used_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct Trending {
    pub hashtags: Vec<TrendingTag>,
}

/// The last computation of the trends, served for [`TRENDS_TTL`].
#[derive(Default)]
pub struct TrendsCache(Mutex<Option<(Instant, Vec<TrendingTag>)>>);

impl TrendsCache {
    fn get(&self) -> Option<Vec<TrendingTag>> {
        let guard = self.0.lock().ok()?;
        match &*guard {
            Some((at, tags)) if at.elapsed() < TRENDS_TTL => Some(tags.clone()),
            _ => None,
        }
    }

    fn put(&self, tags: &[TrendingTag]) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some((Instant::now(), tags.to_vec()));
        }
    }
}

/// At most this many trends are computed and served.
const MAX_TRENDS: i64 = 50;

async fn compute_trends(ctx: &ApiContext) -> Result<Vec<TrendingTag>, ApiError> {
    let tags: Vec<TrendingTag> = sqlx::query_as(
        "WITH recent AS (
            SELECT tag, count(DISTINCT user_id) AS accounts, max(used_at) AS last_used_at
              FROM hashtag_uses
             WHERE day >= (now() AT TIME ZONE 'UTC')::date - 1
               AND used_at > now() - interval '24 hours'
             GROUP BY tag
            HAVING count(DISTINCT user_id) >= $1),
          usual AS (
            SELECT r.tag, greatest(coalesce(sum(d.accounts), 0) / 7.0, 1.0) AS expected
              FROM recent r
              LEFT JOIN hashtag_days d
                ON d.tag = r.tag
               AND d.day BETWEEN (now() AT TIME ZONE 'UTC')::date - 8
                             AND (now() AT TIME ZONE 'UTC')::date - 2
             GROUP BY r.tag)
         SELECT r.tag,
                (power(r.accounts - u.expected, 2) / u.expected
                  * power(0.5, extract(epoch FROM now() - r.last_used_at) / ($2 * 3600.0)))::float8
                  AS score,
                r.accounts, u.expected::float8 AS expected,
                coalesce(h.videos, 0) AS video_count, r.last_used_at
           FROM recent r JOIN usual u ON u.tag = r.tag
           LEFT JOIN hashtags h ON h.tag = r.tag
          WHERE r.accounts > u.expected
          ORDER BY score DESC, r.tag
          LIMIT $3",
    )
    .bind(MIN_ACCOUNTS)
    .bind(HALF_LIFE_HOURS)
    .bind(MAX_TRENDS)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(tags)
}

#[utoipa::path(get, path = "/v1/hashtags/trending", tag = "search",
    params(crate::extract::MinPosition,
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "At most this many (default 20)")),
    responses((status = 200, body = Trending, description = "Tags more people use today than usual, highest score first (recomputed at most every 15 seconds, or at once for a request with `X-Lokiz-Min-Position`)"),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn trending(
    State(ctx): State<ApiContext>,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<Trending>, ApiError> {
    let mut errors = Vec::new();
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["hashtags"]).await?;
    // a request that names a position it must see computes anew
    let cached = if min.is_some() {
        None
    } else {
        ctx.trends.get()
    };
    let mut tags = match cached {
        Some(tags) => tags,
        None => {
            let tags = compute_trends(&ctx).await?;
            ctx.trends.put(&tags);
            tags
        }
    };
    tags.truncate(limit as usize);
    Ok(Json(Trending { hashtags: tags }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_with_or_without_hash_in_any_script() {
        assert_eq!(parse_tag("#Dance").unwrap().unwrap(), "dance");
        assert_eq!(parse_tag("댄스").unwrap().unwrap(), "댄스");
        assert_eq!(parse_tag("#"), Ok(None));
        assert_eq!(parse_tag("123"), Ok(None));
        assert_eq!(parse_tag("a b"), Ok(None));
        assert!(parse_tag(&format!("#{}", "a".repeat(50)))
            .unwrap()
            .is_some());
        assert_eq!(parse_tag(&"a".repeat(51)), Ok(None));
        assert!(parse_tag(&"a".repeat(52)).is_err());
    }
}
