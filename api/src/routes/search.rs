//! Search: `GET /v1/search/videos` (caption full-text), `GET /v1/search/users`
//! (names, typo-tolerant), `GET /v1/search` (both, and hashtags),
//! `GET /v1/search/autocomplete` (`@` users, `#` hashtags, otherwise
//! keywords), and the caller's private search history.
//!
//! Everything is read from read models (`search` and `search_history`
//! projections, joined with `videos` and `users`). What a viewer may not see
//! in a feed never appears here either: the same `listed_for` rule (public,
//! published, not deleted or removed, owner not banned, no block either way).
//!
//! Cost per request is bounded: a video search ranks at most
//! [`CANDIDATES`] matches (the newest ones), a people search at most
//! [`USER_CANDIDATES`] nearest names; pages walk that set with a keyset
//! cursor (a video published between two pages may shift the set).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::search_history::{SearchHistoryCommand, SearchHistoryError};
use lokiz_domain::values::{FieldError, SearchQuery};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MaybeAuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::reads::{listed_for, unblocked, VideoPage, VideoRow, VIDEO_COLUMNS};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/search", get(search_all))
        .route("/search/videos", get(search_videos))
        .route("/search/users", get(search_users))
        .route("/search/autocomplete", get(autocomplete))
        .route("/search/history", get(history).post(record))
        .route("/search/history/clear", delete(clear))
        .route("/search/history/{id}", delete(forget))
}

/// How many matches a search ranks at most (then pages through them): the
/// newest ones.
pub const CANDIDATES: i64 = 200;
/// How many names a people search ranks at most.
pub const USER_CANDIDATES: i64 = 100;
/// Below this trigram similarity a name is not a match.
const MIN_SIMILARITY: f64 = 0.2;

/// The words of a query: letters and digits of any script, at most 8 of up
/// to 50 characters each.
fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.chars().take(50).collect::<String>().to_lowercase())
        .collect()
}

/// A `to_tsquery` text: every word. English (ASCII) words are stemmed by
/// the `lokiz` configuration (`dancing` finds dance); other words match as
/// prefixes (`고양이:*` finds 고양이가: Korean attaches particles). Words hold
/// only letters and digits, so nothing in them is tsquery syntax.
fn words_tsquery(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_ascii() {
                w.clone()
            } else {
                format!("{w}:*")
            }
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// How many of the newest counted videos the first look walks.
const WINDOW: i64 = 5_000;

/// The newest [`CANDIDATES`] counted videos matching `query`, in two looks
/// whose cost does not depend on the planner's guess of how common the
/// words are: first along the newest [`WINDOW`] videos (stops as soon as it
/// has enough: common words); when that falls short, through the text
/// index alone (rarer words: few matches to sort).
async fn video_candidates(ctx: &ApiContext, query: &str) -> Result<Vec<Uuid>, ApiError> {
    let recent: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT r.video_id
           FROM (SELECT video_id, tsv FROM search_videos
                  WHERE live AND public AND published_at IS NOT NULL
                  ORDER BY published_at DESC, video_id DESC
                  LIMIT {WINDOW}) r
          WHERE r.tsv @@ to_tsquery('lokiz', $1)
          LIMIT {CANDIDATES}"
    ))
    .bind(query)
    .fetch_all(&ctx.pool)
    .await?;
    if recent.len() as i64 == CANDIDATES {
        return Ok(recent);
    }
    // ordering by an expression no index holds keeps this on the text index
    let all: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT video_id FROM search_videos
          WHERE tsv @@ to_tsquery('lokiz', $1) AND live AND public AND published_at IS NOT NULL
          ORDER BY published_at + interval '0 seconds' DESC, video_id DESC
          LIMIT {CANDIDATES}"
    ))
    .bind(query)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(all)
}

/// `s` for a `LIKE` pattern: its wildcards escaped, `%` appended.
fn like_prefix(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The required `q`: 1–100 characters.
fn query_param(params: &Params, errors: &mut Vec<FieldError>) -> String {
    match params.get("q") {
        None => {
            errors.push(FieldError::new("q", "required", "is required"));
            String::new()
        }
        Some(raw) => match SearchQuery::parse("q", raw) {
            Ok(q) => q.into_inner(),
            Err(e) => {
                errors.push(e);
                String::new()
            }
        },
    }
}

/// The `q` of every search operation.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct QueryParam {
    /// What to look for: 1–100 characters on one line, not only spaces.
    /// Autocomplete: `@…` completes people, `#…` hashtags, anything else
    /// keywords (the caller's own past searches first, then caption words)
    /// and a few people and hashtags.
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    q: String,
}

// ---------------------------------------------------------------- videos

type ScoreCursor = (f64, Uuid);

async fn video_matches(
    ctx: &ApiContext,
    q: &str,
    viewer: Option<Uuid>,
    after: Option<ScoreCursor>,
    limit: i64,
) -> Result<VideoPage, ApiError> {
    let words = words(q);
    if words.is_empty() {
        return Ok(VideoPage {
            videos: Vec::new(),
            next_cursor: None,
            has_more: false,
        });
    }
    let query = words_tsquery(&words);
    let candidates = video_candidates(ctx, &query).await?;
    // Ranked by the hot score (engagement and recency) plus up to 2 for
    // relevance (`ts_rank_cd` normalized to 0..1): a closer match outranks a
    // day of recency or a hundredfold engagement. The feeds' visibility
    // rule (banned owners, blocks) applies here.
    let listed = listed_for("$5::uuid");
    let sql = format!(
        "WITH c AS (SELECT v.id, v.hot_score + 2.0 * ts_rank_cd(s.tsv, to_tsquery('lokiz', $1), 32) AS score
                      FROM unnest($6::uuid[]) AS c(id)
                      JOIN search_videos s ON s.video_id = c.id
                      JOIN videos v ON v.id = c.id
                      JOIN users u ON u.id = v.owner_id
                     WHERE {listed})
         SELECT {VIDEO_COLUMNS}, c.score
           FROM c JOIN videos v ON v.id = c.id JOIN users u ON u.id = v.owner_id
          WHERE (c.score, v.id) < ($2, $3)
          ORDER BY c.score DESC, v.id DESC
          LIMIT $4"
    );
    #[derive(sqlx::FromRow)]
    struct Scored {
        #[sqlx(flatten)]
        video: VideoRow,
        score: f64,
    }
    let (after_score, after_id) = after.unwrap_or((f64::INFINITY, Uuid::max()));
    let rows: Vec<Scored> = sqlx::query_as(&sql)
        .bind(&query)
        .bind(after_score)
        .bind(after_id)
        .bind(limit + 1)
        .bind(viewer.unwrap_or(Uuid::nil()))
        .bind(&candidates)
        .fetch_all(&ctx.pool)
        .await?;
    Ok(VideoPage::from_rows(
        ctx,
        rows,
        limit,
        |r| r.video,
        |r| encode_cursor(&(r.score, r.video.id)),
    ))
}

fn score_cursor(params: &Params, errors: &mut Vec<FieldError>) -> Option<ScoreCursor> {
    let c: Option<ScoreCursor> = params.cursor(errors);
    match c {
        Some((s, _)) if !s.is_finite() => {
            errors.push(FieldError::new(
                "cursor",
                "format",
                "is not a cursor this server issued",
            ));
            None
        }
        c => c,
    }
}

#[utoipa::path(get, path = "/v1/search/videos", tag = "search", security((), ("bearer" = [])),
    params(crate::extract::MinPosition,
           QueryParam,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = VideoPage, description = "Videos whose caption holds every word (as a prefix: `danc` finds dancing, `고양이` finds 고양이가), most relevant and engaging first"),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn search_videos(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<VideoPage>, ApiError> {
    let mut errors = Vec::new();
    let q = query_param(&params, &mut errors);
    let after = score_cursor(&params, &mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["search", "videos", "users", "blocks"])
        .await?;
    let viewer = user.map(|u| u.user_id);
    Ok(Json(video_matches(&ctx, &q, viewer, after, limit).await?))
}

// ---------------------------------------------------------------- users

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct SearchUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub profile_image_url: Option<String>,
    pub follower_count: i64,
    #[serde(skip)]
    #[schema(ignore)]
    pub score: f64,
}

#[derive(Serialize, ToSchema)]
pub struct UserSearchPage {
    pub users: Vec<SearchUser>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// SQL: a user's searchable name (what the trigram index holds).
const NAME: &str = "(lower(u.username) || ' ' || lower(u.display_name))";

async fn user_matches(
    ctx: &ApiContext,
    q: &str,
    viewer: Option<Uuid>,
    after: Option<ScoreCursor>,
    limit: i64,
) -> Result<UserSearchPage, ApiError> {
    let q = q.to_lowercase();
    // Candidates: the nearest names by trigram distance (typos: "trikster"
    // finds trickster) and usernames starting with the query. Score:
    // similarity, +0.5 for a username prefix, plus a little for followers.
    let visible = format!("NOT u.banned AND {}", unblocked("$5::uuid", "u.id"));
    let sql = format!(
        "WITH c AS ((SELECT u.id FROM users u WHERE {visible}
                      ORDER BY {NAME} <-> $1 LIMIT {USER_CANDIDATES})
                    UNION
                    (SELECT u.id FROM users u
                      WHERE lower(u.username) LIKE $6 AND {visible}
                      ORDER BY lower(u.username) LIMIT {USER_CANDIDATES})),
              s AS (SELECT u.id,
                           greatest(similarity({NAME}, $1), word_similarity($1, {NAME}))
                           + CASE WHEN lower(u.username) LIKE $6 THEN 0.5 ELSE 0 END
                           + 0.02 * ln(1 + coalesce(fc.followers, 0)) AS score,
                           greatest(similarity({NAME}, $1), word_similarity($1, {NAME})) AS sim,
                           lower(u.username) LIKE $6 AS prefix,
                           coalesce(fc.followers, 0)::bigint AS followers
                      FROM c JOIN users u ON u.id = c.id
                      LEFT JOIN follow_counts fc ON fc.user_id = u.id)
         SELECT u.id, u.username, u.display_name, u.profile_image_url,
                s.followers AS follower_count, s.score
           FROM s JOIN users u ON u.id = s.id
          WHERE (s.sim >= {MIN_SIMILARITY} OR s.prefix) AND (s.score, u.id) < ($2, $3)
          ORDER BY s.score DESC, u.id DESC
          LIMIT $4"
    );
    let (after_score, after_id) = after.unwrap_or((f64::INFINITY, Uuid::max()));
    let rows: Vec<SearchUser> = sqlx::query_as(&sql)
        .bind(&q)
        .bind(after_score)
        .bind(after_id)
        .bind(limit + 1)
        .bind(viewer.unwrap_or(Uuid::nil()))
        .bind(like_prefix(q.trim_start_matches('@')))
        .fetch_all(&ctx.pool)
        .await?;
    let (users, has_more) = page(rows, limit);
    let next_cursor = match users.last() {
        Some(u) if has_more => Some(encode_cursor(&(u.score, u.id))),
        _ => None,
    };
    Ok(UserSearchPage {
        users,
        next_cursor,
        has_more,
    })
}

#[utoipa::path(get, path = "/v1/search/users", tag = "search", security((), ("bearer" = [])),
    params(crate::extract::MinPosition,
           QueryParam,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = UserSearchPage, description = "People by username or display name, misspellings included; closest first"),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn search_users(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<UserSearchPage>, ApiError> {
    let mut errors = Vec::new();
    let q = query_param(&params, &mut errors);
    let after = score_cursor(&params, &mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["users", "follows", "blocks"]).await?;
    let viewer = user.map(|u| u.user_id);
    Ok(Json(user_matches(&ctx, &q, viewer, after, limit).await?))
}

// ---------------------------------------------------------------- hashtags

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct HashtagMatch {
    /// Case-folded, without `#`.
    pub tag: String,
    /// Public videos carrying it.
    pub video_count: i64,
}

/// Tags starting with `prefix` (most used first), then, for 3 characters
/// or more, tags within a typo of it.
async fn hashtag_matches(
    ctx: &ApiContext,
    prefix: &str,
    limit: i64,
) -> Result<Vec<HashtagMatch>, ApiError> {
    let prefix = prefix.trim_start_matches('#').to_lowercase();
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<HashtagMatch> = sqlx::query_as(
        "SELECT tag, videos AS video_count FROM hashtags WHERE tag LIKE $1
          ORDER BY videos DESC, tag LIMIT $2",
    )
    .bind(like_prefix(&prefix))
    .bind(limit)
    .fetch_all(&ctx.pool)
    .await?;
    if (rows.len() as i64) < limit && prefix.chars().count() >= 3 {
        let more: Vec<HashtagMatch> = sqlx::query_as(
            "SELECT tag, video_count FROM (
                SELECT tag, videos AS video_count, similarity(tag, $1) AS sim
                  FROM hashtags ORDER BY tag <-> $1 LIMIT $2) t
              WHERE sim >= 0.3 ORDER BY sim DESC, video_count DESC",
        )
        .bind(&prefix)
        .bind(limit)
        .fetch_all(&ctx.pool)
        .await?;
        for m in more {
            if (rows.len() as i64) < limit && !rows.iter().any(|r| r.tag == m.tag) {
                rows.push(m);
            }
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------- everything

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub query: String,
    /// The first page of `GET /v1/search/videos`.
    pub videos: VideoPage,
    /// The first page of `GET /v1/search/users` (at most 5).
    pub users: UserSearchPage,
    /// Hashtags starting with the query's first word (at most 5).
    pub hashtags: Vec<HashtagMatch>,
}

#[utoipa::path(get, path = "/v1/search", tag = "search", security((), ("bearer" = [])),
    params(crate::extract::MinPosition,
           QueryParam,
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Videos on the first page (default 20)")),
    responses((status = 200, body = SearchResults, description = "Videos, people and hashtags at once; each list continues at its own endpoint"),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn search_all(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<SearchResults>, ApiError> {
    let mut errors = Vec::new();
    let q = query_param(&params, &mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["search", "videos", "users", "follows", "blocks"])
        .await?;
    let viewer = user.map(|u| u.user_id);
    let first = words(&q).into_iter().next().unwrap_or_default();
    let (videos, users, hashtags) = tokio::try_join!(
        video_matches(&ctx, &q, viewer, None, limit),
        user_matches(&ctx, &q, viewer, None, 5),
        hashtag_matches(&ctx, &first, 5),
    )?;
    Ok(Json(SearchResults {
        query: q,
        videos,
        users,
        hashtags,
    }))
}

// ---------------------------------------------------------------- autocomplete

#[derive(Serialize, ToSchema)]
pub struct Suggestion {
    /// `user`, `hashtag` or `keyword`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(user|hashtag|keyword)$")]
    pub kind: &'static str,
    /// What to show and complete to: `@username`, `#tag` or the words.
    pub text: String,
    /// The user's id (users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Public videos with the tag (hashtags), or with the word (keywords
    /// from captions; none for the caller's own past searches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Suggestions {
    pub suggestions: Vec<Suggestion>,
}

/// Usernames starting with `prefix`; with `typos`, when those are fewer
/// than `limit` and the prefix has 3 characters or more, then the nearest
/// names (trigram distance).
async fn user_suggestions(
    ctx: &ApiContext,
    prefix: &str,
    viewer: Option<Uuid>,
    limit: i64,
    typos: bool,
) -> Result<Vec<Suggestion>, ApiError> {
    let prefix = prefix.trim_start_matches('@').to_lowercase();
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    let visible = format!("NOT u.banned AND {}", unblocked("$3::uuid", "u.id"));
    let mut rows: Vec<(Uuid, String)> = sqlx::query_as(&format!(
        "SELECT u.id, u.username FROM users u
          WHERE lower(u.username) LIKE $1 AND {visible}
          ORDER BY lower(u.username) LIMIT $2"
    ))
    .bind(like_prefix(&prefix))
    .bind(limit)
    .bind(viewer.unwrap_or(Uuid::nil()))
    .fetch_all(&ctx.pool)
    .await?;
    if typos && (rows.len() as i64) < limit && prefix.chars().count() >= 3 {
        let near: Vec<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT id, username FROM (
                SELECT u.id, u.username, {NAME} <-> $2 AS d FROM users u
                 WHERE {visible}
                 ORDER BY {NAME} <-> $2 LIMIT $1) n
              WHERE d <= 0.7 ORDER BY d"
        ))
        .bind(limit)
        .bind(&prefix)
        .bind(viewer.unwrap_or(Uuid::nil()))
        .fetch_all(&ctx.pool)
        .await?;
        rows.extend(near);
    }
    let mut out: Vec<Suggestion> = Vec::new();
    for (id, username) in rows {
        if (out.len() as i64) < limit && !out.iter().any(|s| s.id == Some(id)) {
            out.push(Suggestion {
                kind: "user",
                text: format!("@{username}"),
                id: Some(id),
                count: None,
            });
        }
    }
    Ok(out)
}

async fn keyword_suggestions(
    ctx: &ApiContext,
    q: &str,
    viewer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Suggestion>, ApiError> {
    let q = q.to_lowercase();
    let mut out: Vec<Suggestion> = Vec::new();
    // the caller's own past searches first
    if let Some(viewer) = viewer {
        let mine: Vec<String> = sqlx::query_scalar(
            "SELECT query FROM search_history WHERE user_id = $1 AND lower(query) LIKE $2
              ORDER BY seq DESC LIMIT $3",
        )
        .bind(viewer)
        .bind(like_prefix(&q))
        .bind(limit.min(3))
        .fetch_all(&ctx.pool)
        .await?;
        out.extend(mine.into_iter().map(|text| Suggestion {
            kind: "keyword",
            text,
            id: None,
            count: None,
        }));
    }
    // then caption words: the last word completed, by how many videos use it
    let (head, last) = match q.rsplit_once(' ') {
        Some((head, last)) => (format!("{head} "), last.to_owned()),
        None => (String::new(), q.clone()),
    };
    if last.is_empty() {
        return Ok(out);
    }
    let mut words: Vec<(String, i64)> = sqlx::query_as(
        "SELECT word, videos FROM search_keywords WHERE word LIKE $1
          ORDER BY videos DESC, word LIMIT $2",
    )
    .bind(like_prefix(&last))
    .bind(limit)
    .fetch_all(&ctx.pool)
    .await?;
    if (words.len() as i64) < limit && last.chars().count() >= 3 {
        let near: Vec<(String, i64)> = sqlx::query_as(
            "SELECT word, videos FROM (
                SELECT word, videos, similarity(word, $1) AS sim
                  FROM search_keywords ORDER BY word <-> $1 LIMIT $2) k
              WHERE sim >= 0.3 ORDER BY sim DESC, videos DESC",
        )
        .bind(&last)
        .bind(limit)
        .fetch_all(&ctx.pool)
        .await?;
        for w in near {
            if !words.iter().any(|(x, _)| *x == w.0) {
                words.push(w);
            }
        }
    }
    for (word, videos) in words {
        let text = format!("{head}{word}");
        if !out.iter().any(|s| s.text == text) {
            out.push(Suggestion {
                kind: "keyword",
                text,
                id: None,
                count: Some(videos),
            });
        }
    }
    Ok(out)
}

#[utoipa::path(get, path = "/v1/search/autocomplete", tag = "search", security((), ("bearer" = [])),
    params(QueryParam,
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 20, description = "At most this many suggestions (default 10)")),
    responses((status = 200, body = Suggestions),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn autocomplete(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    params: Params,
) -> Result<Json<Suggestions>, ApiError> {
    let mut errors = Vec::new();
    let q = query_param(&params, &mut errors);
    let limit = params.number("limit", 10, 1, 20, &mut errors);
    check(errors)?;
    let viewer = user.map(|u| u.user_id);
    let hashtag = |m: HashtagMatch| Suggestion {
        kind: "hashtag",
        text: format!("#{}", m.tag),
        id: None,
        count: Some(m.video_count),
    };
    let suggestions = if q.starts_with('@') {
        user_suggestions(&ctx, &q, viewer, limit, true).await?
    } else if q.starts_with('#') {
        hashtag_matches(&ctx, &q, limit)
            .await?
            .into_iter()
            .map(hashtag)
            .collect()
    } else {
        let (mut keywords, users, tags) = tokio::try_join!(
            keyword_suggestions(&ctx, &q, viewer, limit),
            user_suggestions(&ctx, &q, viewer, 2, false),
            hashtag_matches(&ctx, &q, 2),
        )?;
        // keywords first, keeping room for up to two people and two tags
        let others = users.len() + tags.len();
        keywords.truncate((limit as usize).saturating_sub(others).max(1));
        keywords.extend(users);
        keywords.extend(tags.into_iter().map(hashtag));
        keywords.truncate(limit as usize);
        keywords
    };
    Ok(Json(Suggestions { suggestions }))
}

// ---------------------------------------------------------------- history

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub query: String,
    pub searched_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    /// Newest first; at most 50 are kept.
    pub history: Vec<HistoryEntry>,
}

/// Body of `POST /v1/search/history`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RecordSearchRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    query: String,
}

fn actor(user_id: Uuid) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), user_id.to_string())])
}

#[utoipa::path(get, path = "/v1/search/history", tag = "search", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = History, description = "The caller's own searches, newest first")))]
pub async fn history(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<History>, ApiError> {
    ctx.wait_for(min, &["search_history"]).await?;
    let history: Vec<HistoryEntry> = sqlx::query_as(
        "SELECT id, query, searched_at FROM search_history WHERE user_id = $1
          ORDER BY seq DESC LIMIT 50",
    )
    .bind(me.user_id)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(Json(History { history }))
}

#[utoipa::path(post, path = "/v1/search/history", tag = "search", security(("bearer" = [])),
    request_body = RecordSearchRequest,
    responses((status = 201, body = HistoryEntry, description = "Recorded as the newest search (a search already in the history moves up, keeping its id)"),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn record(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let raw = f.required_str("query");
    let query = f.parse("query", raw, SearchQuery::parse);
    f.finish()?;
    let Some(query) = query else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    let at = crate::now();
    let command = SearchHistoryCommand::RecordSearch {
        user_id: me.user_id,
        entry_id: Uuid::new_v4(),
        query: query.clone(),
        at,
    };
    // the entry as the history now holds it (a repeated search keeps its id)
    let position = run_history(&ctx, me, command).await?;
    let entry: Option<HistoryEntry> = sqlx::query_as(
        "SELECT id, query, searched_at FROM search_history WHERE user_id = $1 AND query = $2",
    )
    .bind(me.user_id)
    .bind(query.as_str())
    .fetch_optional(&ctx.pool)
    .await?;
    let entry = entry.unwrap_or(HistoryEntry {
        id: Uuid::nil(),
        query: query.into_inner(),
        searched_at: at,
    });
    Ok(with_position(position, (StatusCode::CREATED, Json(entry))))
}

/// Runs `command` on the caller's history and waits until the read model
/// has it; returns the position.
async fn run_history(
    ctx: &ApiContext,
    me: AuthUser,
    command: SearchHistoryCommand,
) -> Result<Option<i64>, ApiError> {
    let written = ctx
        .store
        .searches
        .execute(&me.user_id.to_string(), command, actor(me.user_id))
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                SearchHistoryError::EntryNotFound => ApiError::NotFound {
                    what: "Search history entry",
                },
            })
        })?;
    ctx.wait_for(written.position, &["search_history"]).await?;
    Ok(written.position)
}

#[utoipa::path(delete, path = "/v1/search/history/{id}", tag = "search", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "Not in the caller's history", body = crate::error::ErrorEnvelope)))]
pub async fn forget(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry_id = path_uuid(&id, "Search history entry")?;
    let command = SearchHistoryCommand::DeleteSearch {
        entry_id,
        at: crate::now(),
    };
    let position = run_history(&ctx, me, command).await?;
    Ok(with_position(
        position,
        StatusCode::NO_CONTENT.into_response(),
    ))
}

#[utoipa::path(delete, path = "/v1/search/history/clear", tag = "search", security(("bearer" = [])),
    responses((status = 204, description = "The caller's history is empty")))]
pub async fn clear(State(ctx): State<ApiContext>, me: AuthUser) -> Result<Response, ApiError> {
    let command = SearchHistoryCommand::ClearHistory { at: crate::now() };
    let position = run_history(&ctx, me, command).await?;
    Ok(with_position(
        position,
        StatusCode::NO_CONTENT.into_response(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_prefix_tsqueries_of_their_words() {
        let w = words("  Dancing, 고양이!  it's ");
        assert_eq!(w, vec!["dancing", "고양이", "it", "s"]);
        assert_eq!(words_tsquery(&w[..2]), "dancing & 고양이:*");
        assert!(words("!!! ... ???").is_empty());
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
