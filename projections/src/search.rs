//! `search`: what search, autocomplete and hashtags read.
//!
//! - `search_videos`: each video's caption (a generated `tsvector` under the
//!   `lokiz` text search configuration, GIN-indexed) and whether it counts:
//!   public, published, not deleted or removed. Its own copy, so the counter
//!   updates on `videos` never rewrite a text index.
//! - `search_terms`, `search_lexicon`: one posting per (lexeme, counted
//!   video), kept in publication order per lexeme, and each lexeme's video
//!   count: a search walks only the newest postings of its rarest word.
//! - `search_keywords`: caption words of counted videos with their video
//!   counts (autocomplete keywords).
//! - `hashtags`, `video_hashtags`: tags of counted videos, and which videos
//!   carry each (newest first, for `GET /v1/hashtags/{tag}/videos`).
//! - `hashtag_uses`, `hashtag_days`: who used a tag on which UTC day and how
//!   many distinct people that is (trending), recorded when a counted video
//!   gains the tag (published, made public again, or a caption edit).
//!
//! A batch is folded per video in memory (its rows read once, the events
//! applied in order), then written with a fixed number of set-based
//! statements, so catch-up and rebuilds do not pay per event.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use lokiz_domain::values::{Caption, Visibility};
use lokiz_domain::video::{Video, VideoEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct SearchProjector;

#[derive(Debug, Clone, PartialEq)]
struct VideoText {
    owner_id: Uuid,
    caption: String,
    public: bool,
    published_at: Option<DateTime<Utc>>,
    live: bool,
}

impl VideoText {
    /// In search, keywords and hashtags.
    fn counted(&self) -> bool {
        self.live && self.public && self.published_at.is_some()
    }

    fn caption(&self) -> Option<Caption> {
        Caption::parse("caption", &self.caption).ok()
    }

    /// Hashtags and keywords that count (none unless the video counts).
    fn terms(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        match self.caption().filter(|_| self.counted()) {
            Some(c) => (
                c.hashtags().into_iter().collect(),
                c.keywords().into_iter().collect(),
            ),
            None => Default::default(),
        }
    }
}

/// What a batch changes, gathered before it is written.
#[derive(Default)]
struct Changes {
    keywords: BTreeMap<String, i64>,
    tags: BTreeMap<String, i64>,
    tag_rows_added: Vec<(String, Uuid, DateTime<Utc>)>,
    /// (tag, video, its publication): the row's key
    tag_rows_removed: Vec<(String, Uuid, DateTime<Utc>)>,
    /// (tag, day, user) → latest use
    uses: HashMap<(String, NaiveDate, Uuid), DateTime<Utc>>,
}

#[async_trait]
impl Projector for SearchProjector {
    fn name(&self) -> &'static str {
        "search"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Video::TYPE_NAME]
    }

    /// Search writes about 15 index entries per video: sharing a consumer,
    /// it would hold every other projection to its pace.
    fn own_consumer(&self) -> bool {
        true
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "search_videos",
            "search_keywords",
            "hashtags",
            "video_hashtags",
            "hashtag_uses",
            "hashtag_days",
            "search_terms",
            "search_lexicon",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, &[event]).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            let e: VideoEvent = decode(event)?;
            if matches!(
                e,
                VideoEvent::UploadCompleted { .. } | VideoEvent::GlitchedFrom { .. }
            ) {
                continue;
            }
            decoded.push((uuid_id(event)?, e));
        }
        if decoded.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = decoded
            .iter()
            .map(|(id, _)| *id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let rows: Vec<(Uuid, Uuid, String, bool, Option<DateTime<Utc>>, bool)> = sqlx::query_as(
            "SELECT video_id, owner_id, caption, public, published_at, live
               FROM search_videos WHERE video_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let before: HashMap<Uuid, VideoText> = rows
            .into_iter()
            .map(|(id, owner_id, caption, public, published_at, live)| {
                let text = VideoText {
                    owner_id,
                    caption,
                    public,
                    published_at,
                    live,
                };
                (id, text)
            })
            .collect();
        let mut after: HashMap<Uuid, VideoText> = before.clone();
        let mut changes = Changes::default();
        for (id, event) in decoded {
            fold(&mut after, &mut changes, id, event);
        }
        // counters and tag rows: the net change per video
        for (id, now) in &after {
            let (old_tags, old_words) = before.get(id).map(VideoText::terms).unwrap_or_default();
            let (new_tags, new_words) = now.terms();
            for w in new_words.difference(&old_words) {
                *changes.keywords.entry(w.clone()).or_default() += 1;
            }
            for w in old_words.difference(&new_words) {
                *changes.keywords.entry(w.clone()).or_default() -= 1;
            }
            let at = now.published_at.unwrap_or_default();
            for t in new_tags.difference(&old_tags) {
                *changes.tags.entry(t.clone()).or_default() += 1;
                changes.tag_rows_added.push((t.clone(), *id, at));
            }
            // a video had tags only while it counted: published, at a time
            // that never changes
            let was = before
                .get(id)
                .and_then(|t| t.published_at)
                .unwrap_or_default();
            for t in old_tags.difference(&new_tags) {
                *changes.tags.entry(t.clone()).or_default() -= 1;
                changes.tag_rows_removed.push((t.clone(), *id, was));
            }
        }
        write(conn, &before, &after, changes).await
    }
}

/// Applies one event to the batch's state; a counted video gaining a tag
/// is a use of it (at the event's time).
fn fold(state: &mut HashMap<Uuid, VideoText>, changes: &mut Changes, id: Uuid, event: VideoEvent) {
    let old_tags = state.get(&id).map(|t| t.terms().0).unwrap_or_default();
    let at = match event {
        VideoEvent::UploadRequested {
            owner_id,
            caption,
            requested_at,
            ..
        } => {
            state.insert(
                id,
                VideoText {
                    owner_id,
                    caption: caption.map(Caption::into_inner).unwrap_or_default(),
                    public: true,
                    published_at: None,
                    live: true,
                },
            );
            requested_at
        }
        VideoEvent::Published { published_at } => {
            if let Some(t) = state.get_mut(&id) {
                t.published_at.get_or_insert(published_at);
            }
            published_at
        }
        VideoEvent::MetadataUpdated {
            caption,
            visibility,
            updated_at,
        } => {
            if let Some(t) = state.get_mut(&id) {
                if let Some(c) = caption {
                    t.caption = c.map(Caption::into_inner).unwrap_or_default();
                }
                if let Some(v) = visibility {
                    t.public = v == Visibility::Public;
                }
            }
            updated_at
        }
        VideoEvent::Deleted { deleted_at: at } | VideoEvent::Removed { removed_at: at, .. } => {
            if let Some(t) = state.get_mut(&id) {
                t.live = false;
            }
            at
        }
        VideoEvent::UploadCompleted { .. } | VideoEvent::GlitchedFrom { .. } => return,
    };
    if let Some(t) = state.get(&id) {
        for tag in t.terms().0.difference(&old_tags) {
            let key = (tag.clone(), at.date_naive(), t.owner_id);
            let used = changes.uses.entry(key).or_insert(at);
            *used = (*used).max(at);
        }
    }
}

async fn write(
    conn: &mut PgConnection,
    before: &HashMap<Uuid, VideoText>,
    after: &HashMap<Uuid, VideoText>,
    changes: Changes,
) -> Result<(), ProjectionError> {
    let changed: Vec<(&Uuid, &VideoText)> = after
        .iter()
        .filter(|(id, t)| before.get(id) != Some(t))
        .collect();
    // postings follow what counts: a video's lexemes leave when it stops
    // counting or its text changes, and come (back) when it counts again
    fn posted(t: &VideoText) -> Option<(&str, Option<DateTime<Utc>>)> {
        t.counted().then_some((t.caption.as_str(), t.published_at))
    }
    let (mut unpost, mut post) = (Vec::new(), Vec::new());
    for (id, now) in &changed {
        let was = before.get(*id).and_then(posted);
        let is = posted(now);
        if was.is_some() && was != is {
            unpost.push(**id);
        }
        if is.is_some() && was != is {
            post.push(**id);
        }
    }
    unpost_terms(conn, &unpost).await?;
    if !changed.is_empty() {
        let ids: Vec<Uuid> = changed.iter().map(|(id, _)| **id).collect();
        let owners: Vec<Uuid> = changed.iter().map(|(_, t)| t.owner_id).collect();
        let captions: Vec<&str> = changed.iter().map(|(_, t)| t.caption.as_str()).collect();
        let public: Vec<bool> = changed.iter().map(|(_, t)| t.public).collect();
        let published: Vec<Option<DateTime<Utc>>> =
            changed.iter().map(|(_, t)| t.published_at).collect();
        let live: Vec<bool> = changed.iter().map(|(_, t)| t.live).collect();
        sqlx::query(
            "INSERT INTO search_videos (video_id, owner_id, caption, public, published_at, live)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bool[],
                                  $5::timestamptz[], $6::bool[])
             ON CONFLICT (video_id) DO UPDATE
                SET owner_id = EXCLUDED.owner_id, caption = EXCLUDED.caption,
                    public = EXCLUDED.public, published_at = EXCLUDED.published_at,
                    live = EXCLUDED.live",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&captions)
        .bind(&public)
        .bind(&published)
        .bind(&live)
        .execute(&mut *conn)
        .await?;
    }
    post_terms(conn, &post).await?;
    let (words, deltas): (Vec<String>, Vec<i64>) = changes
        .keywords
        .into_iter()
        .filter(|(_, d)| *d != 0)
        .unzip();
    if !words.is_empty() {
        sqlx::query(
            "INSERT INTO search_keywords (word, videos)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (word) DO UPDATE SET videos = search_keywords.videos + EXCLUDED.videos",
        )
        .bind(&words)
        .bind(&deltas)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM search_keywords WHERE word = ANY($1) AND videos <= 0")
            .bind(&words)
            .execute(&mut *conn)
            .await?;
    }
    let (tags, tag_deltas): (Vec<String>, Vec<i64>) =
        changes.tags.into_iter().filter(|(_, d)| *d != 0).unzip();
    if !tags.is_empty() {
        sqlx::query(
            "INSERT INTO hashtags (tag, videos)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (tag) DO UPDATE SET videos = hashtags.videos + EXCLUDED.videos",
        )
        .bind(&tags)
        .bind(&tag_deltas)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM hashtags WHERE tag = ANY($1) AND videos <= 0")
            .bind(&tags)
            .execute(&mut *conn)
            .await?;
    }
    if !changes.tag_rows_removed.is_empty() {
        let (mut tags, mut ids, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for (t, id, at) in changes.tag_rows_removed {
            tags.push(t);
            ids.push(id);
            times.push(at);
        }
        sqlx::query(
            "DELETE FROM video_hashtags h
              USING unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS r(tag, video_id, published_at)
              WHERE h.tag = r.tag AND h.published_at = r.published_at AND h.video_id = r.video_id",
        )
        .bind(&tags)
        .bind(&ids)
        .bind(&times)
        .execute(&mut *conn)
        .await?;
    }
    if !changes.tag_rows_added.is_empty() {
        let mut tags = Vec::new();
        let mut ids = Vec::new();
        let mut times = Vec::new();
        for (t, id, at) in changes.tag_rows_added {
            tags.push(t);
            ids.push(id);
            times.push(at);
        }
        sqlx::query(
            "INSERT INTO video_hashtags (tag, video_id, published_at)
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[])
             ON CONFLICT (tag, published_at, video_id) DO NOTHING",
        )
        .bind(&tags)
        .bind(&ids)
        .bind(&times)
        .execute(&mut *conn)
        .await?;
    }
    if !changes.uses.is_empty() {
        let mut tags = Vec::new();
        let mut days = Vec::new();
        let mut users = Vec::new();
        let mut times = Vec::new();
        for ((tag, day, user), at) in changes.uses {
            tags.push(tag);
            days.push(day);
            users.push(user);
            times.push(at);
        }
        // a person counts once per tag and day: only new (tag, day, person)
        // rows add to the day's accounts
        sqlx::query(
            "WITH used AS (
                INSERT INTO hashtag_uses (tag, day, user_id, used_at)
                SELECT * FROM unnest($1::text[], $2::date[], $3::uuid[], $4::timestamptz[])
                ON CONFLICT (day, tag, user_id) DO UPDATE
                   SET used_at = greatest(hashtag_uses.used_at, EXCLUDED.used_at)
                RETURNING tag, day, used_at, (xmax = 0) AS inserted)
             INSERT INTO hashtag_days (tag, day, accounts, last_used_at)
             SELECT tag, day, count(*) FILTER (WHERE inserted), max(used_at)
               FROM used GROUP BY tag, day
             ON CONFLICT (tag, day) DO UPDATE
                SET accounts = hashtag_days.accounts + EXCLUDED.accounts,
                    last_used_at = greatest(hashtag_days.last_used_at, EXCLUDED.last_used_at)",
        )
        .bind(&tags)
        .bind(&days)
        .bind(&users)
        .bind(&times)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes the postings of `ids` (as `search_videos` still has them) and
/// counts them off the lexicon; a lexeme no video uses any more goes.
async fn unpost_terms(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), ProjectionError> {
    if ids.is_empty() {
        return Ok(());
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "WITH removed AS (
            DELETE FROM search_terms t USING search_videos s, unnest(s.tsv) AS l
             WHERE s.video_id = ANY($1) AND t.term = l.lexeme
               AND t.published_at = s.published_at AND t.video_id = s.video_id
            RETURNING t.term)
         UPDATE search_lexicon x SET videos = x.videos - r.n
           FROM (SELECT term, count(*) AS n FROM removed GROUP BY term) r
          WHERE x.term = r.term
         RETURNING x.term, x.videos",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let emptied: Vec<String> = counts
        .into_iter()
        .filter(|(_, videos)| *videos <= 0)
        .map(|(term, _)| term)
        .collect();
    if !emptied.is_empty() {
        sqlx::query("DELETE FROM search_lexicon WHERE term = ANY($1)")
            .bind(&emptied)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Adds the postings of `ids` (counted videos, as `search_videos` now has
/// them) and counts them on the lexicon.
async fn post_terms(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), ProjectionError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH added AS (
            INSERT INTO search_terms (term, published_at, video_id)
            SELECT l.lexeme, s.published_at, s.video_id
              FROM search_videos s, unnest(s.tsv) AS l
             WHERE s.video_id = ANY($1)
            ON CONFLICT DO NOTHING
            RETURNING term)
         INSERT INTO search_lexicon (term, videos)
         SELECT term, count(*) FROM added GROUP BY term
         ON CONFLICT (term) DO UPDATE SET videos = search_lexicon.videos + EXCLUDED.videos",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
