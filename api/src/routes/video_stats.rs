//! `GET /v1/videos/{id}/stats`: a video's views, likes, comments and
//! glitches per UTC day (the `video_stats` projection), for its owner only.
//! Another user's video answers 404, as every owner-only video route does
//! (a 403 would confirm that the id names a video).
//!
//! Demographics and traffic sources are not part of the answer: LOKIZ does
//! not collect who its viewers are or where they came from.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Days, NaiveDate};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{path_uuid, AuthUser, MinPosition};
use crate::pagination::{check, Params};
use crate::ApiContext;

/// Default and largest window, in days.
pub const DEFAULT_DAYS: i64 = 30;
pub const MAX_DAYS: i64 = 90;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/videos/{id}/stats", get(stats))
}

#[derive(Serialize, ToSchema)]
pub struct DayViews {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    pub views: i64,
}

#[derive(Serialize, ToSchema)]
pub struct DayLikes {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// Likes given that day minus likes withdrawn that day (may be negative).
    pub likes: i64,
}

#[derive(Serialize, ToSchema)]
pub struct DayComments {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// Comments posted that day minus comments deleted that day.
    pub comments: i64,
}

#[derive(Serialize, ToSchema)]
pub struct DayGlitches {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// Glitch videos published from this one that day.
    pub glitches: i64,
}

/// Sums over the window.
#[derive(Serialize, ToSchema)]
pub struct StatsTotals {
    pub views: i64,
    pub likes: i64,
    pub comments: i64,
    pub glitches: i64,
}

#[derive(Serialize, ToSchema)]
pub struct VideoStats {
    pub video_id: Uuid,
    /// The window's length in days (today, UTC, and the days before it).
    pub days: i64,
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    /// Every day of the window, oldest first (days without views are 0).
    pub views_by_day: Vec<DayViews>,
    pub likes_by_day: Vec<DayLikes>,
    pub comments_by_day: Vec<DayComments>,
    pub glitches_by_day: Vec<DayGlitches>,
    pub totals: StatsTotals,
}

#[derive(sqlx::FromRow)]
struct DayRow {
    day: NaiveDate,
    views: i64,
    likes: i64,
    comments: i64,
    glitches: i64,
}

#[utoipa::path(get, path = "/v1/videos/{id}/stats", tag = "videos", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path),
           ("days" = Option<i64>, Query, minimum = 1, maximum = 90, description = "Window length in days, ending today (UTC); default 30")),
    responses((status = 200, body = VideoStats),
              (status = 404, description = "No such video, or not the caller's", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn stats(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<VideoStats>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut errors = Vec::new();
    let days = params.number("days", DEFAULT_DAYS, 1, MAX_DAYS, &mut errors);
    check(errors)?;
    ctx.wait_for(min, &["videos", "video_stats"]).await?;
    let owner: Option<(Uuid, String)> =
        sqlx::query_as("SELECT owner_id, status FROM videos WHERE id = $1")
            .bind(video_id)
            .fetch_optional(&ctx.pool)
            .await?;
    match owner {
        Some((owner, status)) if owner == user.user_id && status != "deleted" => {}
        _ => return Err(ApiError::NotFound { what: "Video" }),
    }
    let to = crate::now().date_naive();
    let from = to
        .checked_sub_days(Days::new(days as u64 - 1))
        .unwrap_or(to);
    let rows: Vec<DayRow> = sqlx::query_as(
        "SELECT day, views, likes, comments, glitches FROM video_daily_stats
          WHERE video_id = $1 AND day BETWEEN $2 AND $3",
    )
    .bind(video_id)
    .bind(from)
    .bind(to)
    .fetch_all(&ctx.pool)
    .await?;
    let by_day: HashMap<NaiveDate, DayRow> = rows.into_iter().map(|r| (r.day, r)).collect();
    let mut out = VideoStats {
        video_id,
        days,
        from,
        to,
        views_by_day: Vec::new(),
        likes_by_day: Vec::new(),
        comments_by_day: Vec::new(),
        glitches_by_day: Vec::new(),
        totals: StatsTotals {
            views: 0,
            likes: 0,
            comments: 0,
            glitches: 0,
        },
    };
    for date in from.iter_days().take(days as usize) {
        let (views, likes, comments, glitches) = by_day
            .get(&date)
            .map(|r| (r.views, r.likes, r.comments, r.glitches))
            .unwrap_or_default();
        out.totals.views += views;
        out.totals.likes += likes;
        out.totals.comments += comments;
        out.totals.glitches += glitches;
        out.views_by_day.push(DayViews { date, views });
        out.likes_by_day.push(DayLikes { date, likes });
        out.comments_by_day.push(DayComments { date, comments });
        out.glitches_by_day.push(DayGlitches { date, glitches });
    }
    Ok(Json(out))
}
