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
//! [`USER_CANDIDATES`] closest people, found through their name words;
//! pages walk that set with a keyset cursor (a video published between two
//! pages may shift the set).
//! Video candidates come from the `search_terms` postings of the query's
//! rarest word, not from a walk over videos. A query's ranking is reused
//! for a few seconds per process ([`Rankings`]); rows and the viewer's
//! rules are read anew for every page.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::search_history::{SearchHistoryCommand, SearchHistoryError};
use lokiz_domain::values::{name_words, FieldError, SearchQuery};
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
/// newest ones. Each costs one or two primary-key probes (`videos`, and
/// `search_videos` for several words): 200 cost a search without a
/// reusable ranking about a third more, for pages past the fifth.
pub const CANDIDATES: i64 = 100;
/// How many names a people search ranks at most (and usernames starting
/// with the query it adds at most): each costs a follower-count probe.
pub const USER_CANDIDATES: i64 = 50;

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

/// How many of its rarest word's newest postings a many-word search walks
/// (checking the other words on each) before it turns to the text index.
const WALK: i64 = 5_000;

/// Lexicon words one prefix (a non-English word) stands for at most: the
/// most used ones.
const PREFIX_TERMS: i64 = 10;

/// What a query's words find: their ranking already (one word, or a walk
/// that found its matches); or, from the text index, the newest
/// [`CANDIDATES`] counted videos holding every word, still to be ranked.
enum Found {
    Ranked(Vec<Ranked>),
    Candidates(Vec<Uuid>),
}

/// SQL: the relevance of a video whose caption holds a searched word `hits`
/// times: what `ts_rank_cd(tsv, word, 32)` gives for one word (every hit a
/// cover of weight 0.1, normalized by rank / (rank + 1)), from the posting.
const HITS_RELEVANCE: &str = "p.hits::float8 / (p.hits + 10)";

/// The videos holding every word, at a cost bounded by the words' own
/// postings (`search_terms`), not by how many videos there are:
/// - each word becomes its lexemes (`lokiz` stems English words) or, for a
///   prefix, the lexicon's words starting with it; a word no counted video
///   holds ends the search at once;
/// - one word (a prefix's words are alternatives): its newest
///   [`CANDIDATES`] postings are the matches, ranked in the same statement
///   from the postings' hits, with no caption read;
/// - more words: the rarest word's newest postings are the candidates,
///   checked against the whole query (at most [`WALK`]), the matches ranked
///   in the same statement from the captions the check read;
/// - only when that walk ends short with more postings left does the text
///   index answer (rare combinations of common words: few matches).
async fn video_candidates(
    ctx: &ApiContext,
    words: &[String],
    query: &str,
) -> Result<Found, ApiError> {
    let (mut exact, mut exact_at, mut prefixes, mut prefix_ends, mut prefix_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, w) in words.iter().enumerate() {
        if w.is_ascii() {
            exact.push(w.as_str());
            exact_at.push(i as i32);
        } else {
            let (lo, hi) = prefix_range(w);
            prefixes.push(lo);
            prefix_ends.push(hi);
            prefix_at.push(i as i32);
        }
    }
    let terms: Vec<(i32, String, i64)> = sqlx::query_as(&format!(
        "SELECT e.i, x.lexeme, coalesce(l.videos, 0)
           FROM unnest($1::text[], $2::int[]) AS e(w, i)
          CROSS JOIN LATERAL unnest(to_tsvector('lokiz', e.w)) AS x
           LEFT JOIN search_lexicon l ON l.term = x.lexeme
         UNION ALL
         SELECT p.i, l.term, l.videos
           FROM unnest($3::text[], $5::text[], $4::int[]) AS p(lo, hi, i)
          CROSS JOIN LATERAL (SELECT term, videos FROM search_lexicon
                               WHERE term ~>=~ p.lo AND term ~<~ p.hi
                               ORDER BY videos DESC, term LIMIT {PREFIX_TERMS}) l"
    ))
    .bind(&exact)
    .bind(&exact_at)
    .bind(&prefixes)
    .bind(&prefix_at)
    .bind(&prefix_ends)
    .fetch_all(&ctx.pool)
    .await?;
    // per word: its terms and their videos (English stop words have none
    // and are left out, as the text index leaves them out)
    let mut groups: BTreeMap<i32, Vec<(String, i64)>> = BTreeMap::new();
    for (i, term, videos) in terms {
        groups.entry(i).or_default().push((term, videos));
    }
    let held = |g: &Vec<(String, i64)>| g.iter().map(|(_, n)| n).sum::<i64>();
    let prefix_missing = prefix_at.iter().any(|i| !groups.contains_key(i));
    let Some(driver) = groups.values().min_by_key(|g| held(g)) else {
        return Ok(Found::Candidates(Vec::new()));
    };
    if prefix_missing || held(driver) == 0 {
        return Ok(Found::Candidates(Vec::new()));
    }
    let driver_terms: Vec<&str> = driver.iter().map(|(t, _)| t.as_str()).collect();
    // one word (a prefix's words are alternatives): its postings are the matches
    let alone = groups.len() == 1
        && groups
            .iter()
            .all(|(i, g)| g.len() == 1 || prefix_at.contains(i));
    if alone {
        let placeholders: Vec<String> = (0..driver_terms.len())
            .map(|i| format!("${}", i + 1))
            .collect();
        let terms = format!("ARRAY[{}]::text[]", placeholders.join(", "));
        let ranked = rank_postings(ctx, &terms, driver_terms.len() == 1, &driver_terms).await;
        return Ok(Found::Ranked(ranked?));
    }
    let per_term = (WALK / driver.len() as i64).max(CANDIDATES);
    // whether the walk reads every posting of the driver
    let whole = held(driver) <= WALK && driver.iter().all(|(_, n)| *n <= per_term);
    let driver = driver_terms;
    // the other words are checked on each walked posting, newest first,
    // until enough match, and the matches are ranked in the same statement
    // from the captions the check read; the query is parsed once, not once
    // per posting. The check is a probe per posting, never a join that
    // would read every match of the other words: a `LIMIT` keeps the
    // lateral subquery a parameterized probe (without it the planner may
    // hash every video holding the other words, 12,000 rows for "beat drop"
    // at 300,000 videos: 24 ms instead of 1.4). Unlisted matches come back
    // unscored: they count as matches (whether the walk found enough), not
    // as results.
    let postings = newest_postings("$1::text[]", driver.len() == 1, "$2", "$3");
    let walked: Vec<(Option<f64>, Uuid)> = sqlx::query_as(&format!(
        "WITH q AS MATERIALIZED (SELECT to_tsquery('lokiz', $4) AS q),
              m AS (SELECT p.video_id, s.tsv FROM ({postings}) p
                     CROSS JOIN LATERAL (SELECT tsv FROM search_videos s
                                          WHERE s.video_id = p.video_id LIMIT 1) s
                     WHERE s.tsv @@ (SELECT q FROM q)
                     ORDER BY p.published_at DESC, p.video_id DESC
                     LIMIT {CANDIDATES})
         SELECT CASE WHEN v.listed
                     THEN v.hot_score + 2.0 * ts_rank_cd(m.tsv, (SELECT q FROM q), 32) END AS score,
                m.video_id
           FROM m LEFT JOIN videos v ON v.id = m.video_id
          ORDER BY score DESC NULLS LAST, m.video_id DESC"
    ))
    .bind(&driver)
    .bind(per_term)
    .bind(WALK)
    .bind(query)
    .fetch_all(&ctx.pool)
    .await?;
    if whole || walked.len() as i64 == CANDIDATES {
        let ranked = walked
            .into_iter()
            .filter_map(|(score, id)| Some((score?, id)))
            .collect();
        return Ok(Found::Ranked(ranked));
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
    Ok(Found::Candidates(all))
}

/// SQL: the newest postings (`published_at, video_id, hits`) of the terms
/// `terms` (a `text[]` SQL expression), newest first, at most `limit`,
/// reading at most `per_term` of each term (SQL expressions). One term's
/// postings (`single`) are already in order; several are merged, a video
/// holding two of a prefix's words being one posting with their hits
/// summed.
fn newest_postings(terms: &str, single: bool, per_term: &str, limit: &str) -> String {
    if single {
        format!(
            "SELECT published_at, video_id, hits FROM search_terms
              WHERE term = ({terms})[1]
              ORDER BY published_at DESC, video_id DESC
              LIMIT {limit}"
        )
    } else {
        format!(
            "SELECT t.published_at, t.video_id, sum(t.hits) AS hits
               FROM unnest({terms}) AS d(term)
              CROSS JOIN LATERAL (SELECT published_at, video_id, hits FROM search_terms
                                   WHERE term = d.term
                                   ORDER BY published_at DESC, video_id DESC
                                   LIMIT {per_term}) t
              GROUP BY t.published_at, t.video_id
              ORDER BY t.published_at DESC, t.video_id DESC
              LIMIT {limit}"
        )
    }
}

/// One word's matches, ranked: the newest [`CANDIDATES`] postings of its
/// terms (one lexeme, or a prefix's words: a video holding two of them is
/// one match with their hits summed), listed ones ranked by hot score plus
/// up to 2 for relevance ([`HITS_RELEVANCE`]), as [`rank_videos`] ranks.
/// `terms` is a `text[]` SQL expression of `$1…`. Planned once per
/// connection (`generic_pool`): its custom plans cost more to make than to
/// run, and the limit is written in, so the plan knows it.
async fn rank_postings(
    ctx: &ApiContext,
    terms: &str,
    single: bool,
    binds: &[&str],
) -> Result<Vec<Ranked>, ApiError> {
    let limit = CANDIDATES.to_string();
    let postings = newest_postings(terms, single, &limit, &limit);
    let sql = format!(
        "SELECT v.hot_score + 2.0 * {HITS_RELEVANCE} AS score, v.id
           FROM ({postings}) p JOIN videos v ON v.id = p.video_id
          WHERE v.listed
          ORDER BY score DESC, v.id DESC"
    );
    let mut query = sqlx::query_as(&sql);
    for b in binds {
        query = query.bind(*b);
    }
    Ok(query.fetch_all(&ctx.generic_pool).await?)
}

/// A one-word query's ranking in one statement, its terms found in it: an
/// English word's lexeme (`to_tsvector('lokiz', …)`: stemmed; none for a
/// stop word), or the [`PREFIX_TERMS`] most used lexicon words a prefix
/// starts (any other word). What [`video_candidates`] finds for one word,
/// without its round trip for the terms.
async fn rank_word(ctx: &ApiContext, word: &str) -> Result<Vec<Ranked>, ApiError> {
    if word.is_ascii() {
        let lexemes = "ARRAY(SELECT x.lexeme FROM unnest(to_tsvector('lokiz', $1)) AS x)";
        rank_postings(ctx, lexemes, true, &[word]).await
    } else {
        let (lo, hi) = prefix_range(word);
        let words = format!(
            "ARRAY(SELECT term FROM search_lexicon WHERE term ~>=~ $1 AND term ~<~ $2
                    ORDER BY videos DESC, term LIMIT {PREFIX_TERMS})"
        );
        rank_postings(ctx, &words, false, &[&lo, &hi]).await
    }
}

/// The strings starting with `prefix`, as a byte-order range `[lo, hi)`
/// for `col ~>=~ lo AND col ~<~ hi`: what a `text_pattern_ops` index scans.
///
/// A prefix is looked up as this range, never as `col LIKE $1`: a prepared
/// statement's generic plan cannot see a parameter's pattern, so after a
/// few executions Postgres may cache a plan that scans every row (seen: a
/// sequential scan of `users` on every people search, 2 ms at 3,000 people),
/// or else it plans the statement anew each time. A range is an index range
/// in every plan. `hi` is `prefix` with its last character raised by one
/// (UTF-8 byte order is code point order); a prefix of nothing but
/// U+10FFFF has no such string and ends the range at a run of them.
fn prefix_range(prefix: &str) -> (String, String) {
    let mut head: Vec<char> = prefix.chars().collect();
    while let Some(last) = head.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            head.push(next);
            return (prefix.to_owned(), head.into_iter().collect());
        }
    }
    (
        prefix.to_owned(),
        format!("{prefix}{}", "\u{10FFFF}".repeat(4)),
    )
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

// ---------------------------------------------------------------- rankings

/// One ranked match: (score, id).
type Ranked = (f64, Uuid);

/// How long a query's ranking is reused by later pages and searches.
const RANKING_TTL: Duration = Duration::from_secs(10);

/// Queries whose rankings one process keeps (per kind); past this, expired
/// ones are dropped, and if none has expired, all of them.
const RANKINGS_KEPT: usize = 1_000;

/// Recent rankings of queries, per process. A ranking is who matches and
/// in what order, decided with no viewer; every page still reads its rows
/// fresh and applies the viewer's visibility rules (listed, banned,
/// blocks), so a cached ranking can be late by [`RANKING_TTL`] (a new video
/// or a changed score), never show what the viewer may not see. A request
/// that names a position it must see (`X-Lokiz-Min-Position`) ranks anew.
#[derive(Default)]
pub struct Rankings(Mutex<HashMap<String, (Instant, Ranking)>>);

/// A query's matches, best first.
type Ranking = Arc<Vec<Ranked>>;

impl Rankings {
    fn recent(&self, key: &str, fresh: bool) -> Option<Ranking> {
        if fresh {
            return None;
        }
        let kept = self.0.lock().ok()?;
        kept.get(key)
            .filter(|(at, _)| at.elapsed() < RANKING_TTL)
            .map(|(_, r)| r.clone())
    }

    fn keep(&self, key: &str, ranking: &Ranking) {
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() >= RANKINGS_KEPT {
                kept.retain(|_, (at, _)| at.elapsed() < RANKING_TTL);
                if kept.len() >= RANKINGS_KEPT {
                    kept.clear();
                }
            }
            kept.insert(key.to_owned(), (Instant::now(), ranking.clone()));
        }
    }
}

/// Recent rankings of video and people searches.
#[derive(Default)]
pub struct SearchRankings {
    videos: Rankings,
    users: Rankings,
}

/// Rows a page reads beyond what it needs, for those hidden from the viewer
/// (reading twice what it needs, 42 rows for a page of 20 instead of 25,
/// made the page's statement about a quarter dearer).
const PAGE_SLACK: usize = 4;

/// Up to `limit + 1` rows of `ranking` after `after`, in ranked order, each
/// with its score, read a few at a time by `sql` (`$1` the ids, `$2` the
/// viewer, nil for nobody), which leaves out what the viewer may not see.
async fn page_of<R>(
    ctx: &ApiContext,
    ranking: &[Ranked],
    after: Option<ScoreCursor>,
    limit: i64,
    sql: &str,
    viewer: Option<Uuid>,
    id_of: impl Fn(&R) -> Uuid,
) -> Result<Vec<(f64, R)>, ApiError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let want = limit as usize + 1;
    let start = match after {
        Some(cursor) => ranking
            .iter()
            .position(|&(score, id)| (score, id) < cursor)
            .unwrap_or(ranking.len()),
        None => 0,
    };
    let mut rest = &ranking[start..];
    let mut rows = Vec::with_capacity(want);
    while rows.len() < want && !rest.is_empty() {
        // a few more than needed: some may be hidden from this viewer (rare:
        // a block, a ban, a video unlisted since it was ranked), and what is
        // missing is read in the next round
        let (chunk, tail) = rest.split_at((want - rows.len() + PAGE_SLACK).min(rest.len()));
        rest = tail;
        let ids: Vec<Uuid> = chunk.iter().map(|(_, id)| *id).collect();
        let mut found: HashMap<Uuid, R> = sqlx::query_as::<_, R>(sql)
            .bind(ids)
            .bind(viewer.unwrap_or(Uuid::nil()))
            .fetch_all(&ctx.pool)
            .await?
            .into_iter()
            .map(|r| (id_of(&r), r))
            .collect();
        for (score, id) in chunk {
            if let Some(row) = found.remove(id) {
                rows.push((*score, row));
                if rows.len() == want {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------- videos

type ScoreCursor = (f64, Uuid);

/// The videos `q` finds, best first, as (score, id): every match among
/// the candidates that is listed (a banned owner's are left out by the
/// page, with the viewer's blocks: one lookup fewer per candidate). Ranked by
/// the hot score (engagement and recency) plus up to 2 for relevance
/// (`ts_rank_cd` normalized to 0..1): a closer match outranks a day of
/// recency or a hundredfold engagement. The query is parsed once (in
/// `FROM`), not per candidate as a generic plan would.
async fn rank_videos(
    ctx: &ApiContext,
    words: &[String],
    query: &str,
) -> Result<Vec<Ranked>, ApiError> {
    if let [word] = words {
        return rank_word(ctx, word).await;
    }
    let candidates = match video_candidates(ctx, words, query).await? {
        Found::Ranked(ranked) => return Ok(ranked),
        Found::Candidates(ids) if ids.is_empty() => return Ok(Vec::new()),
        Found::Candidates(ids) => ids,
    };
    let ranked: Vec<Ranked> = sqlx::query_as(
        "SELECT v.hot_score + 2.0 * ts_rank_cd(s.tsv, q, 32) AS score, v.id
           FROM unnest($2::uuid[]) AS c(id)
          CROSS JOIN to_tsquery('lokiz', $1) AS q
           JOIN search_videos s ON s.video_id = c.id
           JOIN videos v ON v.id = c.id
          WHERE v.listed
          ORDER BY score DESC, v.id DESC",
    )
    .bind(query)
    .bind(&candidates)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(ranked)
}

async fn video_matches(
    ctx: &ApiContext,
    q: &str,
    viewer: Option<Uuid>,
    after: Option<ScoreCursor>,
    limit: i64,
    fresh: bool,
) -> Result<VideoPage, ApiError> {
    let words = words(q);
    let query = words_tsquery(&words);
    let ranking = match ctx.search.videos.recent(&query, fresh) {
        Some(r) => r,
        None if words.is_empty() => Arc::new(Vec::new()),
        None => {
            let r = Arc::new(rank_videos(ctx, &words, &query).await?);
            ctx.search.videos.keep(&query, &r);
            r
        }
    };
    // the viewer's page: ranked videos after the cursor that they may see now
    let listed = listed_for("$2::uuid");
    let sql = format!(
        "SELECT {VIDEO_COLUMNS} FROM videos v JOIN users u ON u.id = v.owner_id
          WHERE v.id = ANY($1) AND {listed}"
    );
    let rows = page_of(ctx, &ranking, after, limit, &sql, viewer, |v: &VideoRow| {
        v.id
    })
    .await?;
    Ok(VideoPage::from_rows(
        ctx,
        rows,
        limit,
        |(_, v)| v,
        |(score, v)| encode_cursor(&(*score, v.id)),
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
    Ok(Json(
        video_matches(&ctx, &q, viewer, after, limit, min.is_some()).await?,
    ))
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

/// Query words a people search looks for at most (names rarely have more).
const PEOPLE_QUERY_WORDS: usize = 4;
/// Name words each query word stands for at most: the closest ones.
const WORD_MATCHES: i64 = 3;
/// People read at most per matched name word (in the postings' order): a
/// word held by more is a common one, and which 200 of them are ranked is
/// arbitrary anyway (at 10,000 people, 500 cost a two-word search 50 % more).
const WORD_PEOPLE: i64 = 200;
/// Below this trigram similarity a name word is not a match for a query
/// word.
const MIN_WORD_SIMILARITY: f64 = 0.3;

/// The people `q` finds, closest first, as (score, id).
///
/// Found by their name words (the `people` projection: `name_words` of
/// username and display name), not by a walk over every name:
/// - each query word (at most [`PEOPLE_QUERY_WORDS`]) stands for its
///   [`WORD_MATCHES`] closest name words in `people_lexicon` (trigram word
///   similarity: the word itself first, then words it begins or nearly
///   matches — "phenix" finds "phoenix"), those of similarity
///   [`MIN_WORD_SIMILARITY`] or more;
/// - a person's closeness is the mean over the query words of their best
///   matching word's similarity; the closest [`USER_CANDIDATES`] (read
///   through at most [`WORD_PEOPLE`] postings per word) are candidates,
///   with the usernames starting with the query (in the prefix index's byte
///   order, so the scan stops at the `LIMIT`);
/// - score: closeness, +0.5 for a username prefix, plus a little for
///   followers (one index probe per candidate: joined, the planner hashed
///   every row of `follow_counts`).
///
/// Cost is bounded by the query's words and the postings read, whatever
/// the number of people. Bans are left to the page (like blocks). Planned
/// once per connection (`generic_pool`): Postgres planned it anew on every
/// search (0.95 ms of planning for 2.65 ms of execution under load).
async fn rank_users(ctx: &ApiContext, q: &str) -> Result<Vec<Ranked>, ApiError> {
    let mut words = name_words(q);
    words.truncate(PEOPLE_QUERY_WORDS);
    let sql = format!(
        "WITH q AS (SELECT w, i FROM unnest($1::text[]) WITH ORDINALITY AS q(w, i)),
              m AS (SELECT q.i, l.word, l.sim
                      FROM q CROSS JOIN LATERAL (
                           SELECT word, greatest(similarity(word, q.w), word_similarity(q.w, word)) AS sim
                             FROM people_lexicon ORDER BY q.w <<-> word LIMIT {WORD_MATCHES}) l
                     WHERE l.sim >= {MIN_WORD_SIMILARITY}),
              hits AS (SELECT p.user_id, m.i, max(m.sim) AS sim
                         FROM m CROSS JOIN LATERAL (
                              SELECT user_id FROM people_words p WHERE p.word = m.word
                               LIMIT {WORD_PEOPLE}) p
                        GROUP BY p.user_id, m.i),
              named AS (SELECT user_id AS id, sum(sim) / cardinality($1::text[]) AS sim
                          FROM hits GROUP BY user_id
                         ORDER BY sim DESC, user_id DESC LIMIT {USER_CANDIDATES}),
              prefixed AS (SELECT u.id FROM users u
                            WHERE lower(u.username) ~>=~ $2 AND lower(u.username) ~<~ $3
                              AND NOT u.banned
                            ORDER BY lower(u.username) USING ~<~ LIMIT {USER_CANDIDATES}),
              c AS (SELECT coalesce(n.id, p.id) AS id, coalesce(n.sim, 0) AS sim,
                           p.id IS NOT NULL AS prefix
                      FROM named n FULL JOIN prefixed p ON p.id = n.id)
         SELECT sim + CASE WHEN prefix THEN 0.5 ELSE 0 END
                    + 0.02 * ln(1 + coalesce((SELECT fc.followers FROM follow_counts fc
                                               WHERE fc.user_id = c.id), 0)) AS score, id
           FROM c
          ORDER BY score DESC, id DESC"
    );
    let (lo, hi) = prefix_range(q.trim_start_matches('@'));
    let ranked: Vec<Ranked> = sqlx::query_as(&sql)
        .bind(&words)
        .bind(lo)
        .bind(hi)
        .fetch_all(&ctx.generic_pool)
        .await?;
    Ok(ranked)
}

async fn user_matches(
    ctx: &ApiContext,
    q: &str,
    viewer: Option<Uuid>,
    after: Option<ScoreCursor>,
    limit: i64,
    fresh: bool,
) -> Result<UserSearchPage, ApiError> {
    let q = q.to_lowercase();
    let ranking = match ctx.search.users.recent(&q, fresh) {
        Some(r) => r,
        None => {
            let r = Arc::new(rank_users(ctx, &q).await?);
            ctx.search.users.keep(&q, &r);
            r
        }
    };
    let sql = format!(
        "SELECT u.id, u.username, u.display_name, u.profile_image_url,
                coalesce(fc.followers, 0)::bigint AS follower_count, 0::float8 AS score
           FROM users u LEFT JOIN follow_counts fc ON fc.user_id = u.id
          WHERE u.id = ANY($1) AND NOT u.banned AND {}",
        unblocked("$2::uuid", "u.id")
    );
    let rows = page_of(
        ctx,
        &ranking,
        after,
        limit,
        &sql,
        viewer,
        |u: &SearchUser| u.id,
    )
    .await?;
    let rows: Vec<SearchUser> = rows
        .into_iter()
        .map(|(score, u)| SearchUser { score, ..u })
        .collect();
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
    ctx.wait_for(min, &["people", "users", "follows", "blocks"])
        .await?;
    let viewer = user.map(|u| u.user_id);
    Ok(Json(
        user_matches(&ctx, &q, viewer, after, limit, min.is_some()).await?,
    ))
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
    let (lo, hi) = prefix_range(&prefix);
    let mut rows: Vec<HashtagMatch> = sqlx::query_as(
        "SELECT tag, videos AS video_count FROM hashtags WHERE tag ~>=~ $1 AND tag ~<~ $3
          ORDER BY videos DESC, tag LIMIT $2",
    )
    .bind(&lo)
    .bind(limit)
    .bind(&hi)
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
    ctx.wait_for(
        min,
        &[
            "search", "hashtags", "videos", "people", "users", "follows", "blocks",
        ],
    )
    .await?;
    let viewer = user.map(|u| u.user_id);
    let first = words(&q).into_iter().next().unwrap_or_default();
    let (videos, users, hashtags) = tokio::try_join!(
        video_matches(&ctx, &q, viewer, None, limit, min.is_some()),
        user_matches(&ctx, &q, viewer, None, 5, min.is_some()),
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
/// than `limit` and the prefix has 3 characters or more, then the closest
/// people by name words (misspellings included), as a people search ranks
/// them.
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
    let (lo, hi) = prefix_range(&prefix);
    let mut rows: Vec<(Uuid, String)> = sqlx::query_as(&format!(
        "SELECT u.id, u.username FROM users u
          WHERE lower(u.username) ~>=~ $1 AND lower(u.username) ~<~ $4 AND {visible}
          ORDER BY lower(u.username) USING ~<~ LIMIT $2"
    ))
    .bind(&lo)
    .bind(limit)
    .bind(viewer.unwrap_or(Uuid::nil()))
    .bind(&hi)
    .fetch_all(&ctx.pool)
    .await?;
    if typos && (rows.len() as i64) < limit && prefix.chars().count() >= 3 {
        // the closest people by name words, as a people search ranks them
        let ranked = rank_users(ctx, &prefix).await?;
        let ids: Vec<Uuid> = ranked
            .iter()
            .take(2 * limit as usize)
            .map(|(_, id)| *id)
            .collect();
        let mut near: HashMap<Uuid, String> = sqlx::query_as::<_, (Uuid, String)>(&format!(
            "SELECT u.id, u.username FROM users u
              WHERE u.id = ANY($1) AND NOT u.banned AND {}",
            unblocked("$2::uuid", "u.id")
        ))
        .bind(&ids)
        .bind(viewer.unwrap_or(Uuid::nil()))
        .fetch_all(&ctx.pool)
        .await?
        .into_iter()
        .collect();
        rows.extend(ids.iter().filter_map(|id| Some((*id, near.remove(id)?))));
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
    let (lo, hi) = prefix_range(&last);
    let mut words: Vec<(String, i64)> = sqlx::query_as(
        "SELECT word, videos FROM search_keywords WHERE word ~>=~ $1 AND word ~<~ $3
          ORDER BY videos DESC, word LIMIT $2",
    )
    .bind(&lo)
    .bind(limit)
    .bind(&hi)
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
    params(crate::extract::MinPosition,
           QueryParam,
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 20, description = "At most this many suggestions (default 10)")),
    responses((status = 200, body = Suggestions),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn autocomplete(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<Suggestions>, ApiError> {
    let mut errors = Vec::new();
    let q = query_param(&params, &mut errors);
    let limit = params.number("limit", 10, 1, 20, &mut errors);
    check(errors)?;
    ctx.wait_for(
        min,
        &[
            "search",
            "hashtags",
            "search_history",
            "people",
            "users",
            "blocks",
        ],
    )
    .await?;
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
    fn prefix_ranges_hold_exactly_the_strings_with_the_prefix() {
        let (lo, hi) = prefix_range("neo");
        assert_eq!((lo.as_str(), hi.as_str()), ("neo", "nep"));
        let within = |s: &str| s.as_bytes() >= lo.as_bytes() && s.as_bytes() < hi.as_bytes();
        assert!(within("neo") && within("neon_rider") && within("neo\u{10FFFF}"));
        assert!(!within("ne") && !within("nep") && !within("nf"));
        // Korean, and a last character at the edge of the surrogates
        let (lo, hi) = prefix_range("고양");
        assert_eq!(hi, "고얒");
        assert!(hi.as_bytes() > "고양이가".as_bytes() && lo.as_bytes() <= "고양이가".as_bytes());
        assert_eq!(prefix_range("a\u{D7FF}").1, "a\u{E000}");
        assert_eq!(prefix_range("a\u{10FFFF}").1, "b");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
