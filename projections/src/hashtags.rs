//! `hashtags`: what the hashtag pages, trending and `#` autocomplete read.
//!
//! - `hashtag_videos`: each video's caption and whether it counts (public,
//!   published, not deleted or removed): this projection's own copy of the
//!   state `search` keeps in `search_videos` (`video_text.rs`).
//! - `hashtags`, `video_hashtags`: tags of counted videos with their video
//!   counts, and which videos carry each (newest first, for
//!   `GET /v1/hashtags/{tag}/videos`).
//! - `hashtag_uses`, `hashtag_days`: who used a tag on which UTC day and how
//!   many distinct people that is (trending), recorded when a counted video
//!   gains the tag (published, made public again, or a caption edit).
//!
//! Split from `search` so that the two apply in parallel, each on its own
//! connection (the process's projections share one consumer): together they
//! were the catch-up's last projection by about 15 s at 1M events, one
//! Postgres backend doing both in turn.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use lokiz_domain::video::Video;
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{ProjectionError, Projector};
use crate::video_text::{self, VideoText};

pub struct HashtagsProjector;

const STATE: &str = "hashtag_videos";

/// A `video_hashtags` row's key: (tag, video, its publication).
type TagRow = (String, Uuid, DateTime<Utc>);

/// What a batch changes, gathered before it is written.
#[derive(Default)]
struct Changes {
    tags: BTreeMap<String, i64>,
    tag_rows_added: Vec<TagRow>,
    tag_rows_removed: Vec<TagRow>,
    /// (tag, day, user) → latest use
    uses: HashMap<(String, NaiveDate, Uuid), DateTime<Utc>>,
}

#[async_trait]
impl Projector for HashtagsProjector {
    fn name(&self) -> &'static str {
        "hashtags"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Video::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "hashtag_videos",
            "hashtags",
            "video_hashtags",
            "hashtag_uses",
            "hashtag_days",
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
        let decoded = video_text::decode_batch(events)?;
        if decoded.is_empty() {
            return Ok(());
        }
        let before = video_text::load(conn, STATE, &decoded).await?;
        let mut after = before.clone();
        let mut changes = Changes::default();
        // each video's tags before the batch and as it goes: a caption is
        // parsed once per event, not again for the net change
        let mut tags_before: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
        let mut tags_now: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
        for (id, event) in decoded {
            let old = match tags_now.remove(&id) {
                Some(t) => t,
                None => {
                    let t = before.get(&id).map(VideoText::hashtags).unwrap_or_default();
                    tags_before.insert(id, t.clone());
                    t
                }
            };
            let Some(at) = video_text::fold(&mut after, id, event) else {
                // nothing changed here: the tags are as they were
                tags_now.insert(id, old);
                continue;
            };
            let new = after.get(&id).map(VideoText::hashtags).unwrap_or_default();
            // a counted video gaining a tag is a use of it, at the event's time
            if let Some(t) = after.get(&id) {
                for tag in new.difference(&old) {
                    let key = (tag.clone(), at.date_naive(), t.owner_id);
                    let used = changes.uses.entry(key).or_insert(at);
                    *used = (*used).max(at);
                }
            }
            tags_now.insert(id, new);
        }
        // counters and tag rows: the net change per video
        let none = BTreeSet::new();
        for (id, new) in &tags_now {
            let old = tags_before.get(id).unwrap_or(&none);
            let (at, was) = (
                after
                    .get(id)
                    .and_then(|t| t.published_at)
                    .unwrap_or_default(),
                // a video had tags only while it counted: published, at a
                // time that never changes
                before
                    .get(id)
                    .and_then(|t| t.published_at)
                    .unwrap_or_default(),
            );
            for t in new.difference(old) {
                *changes.tags.entry(t.clone()).or_default() += 1;
                changes.tag_rows_added.push((t.clone(), *id, at));
            }
            for t in old.difference(new) {
                *changes.tags.entry(t.clone()).or_default() -= 1;
                changes.tag_rows_removed.push((t.clone(), *id, was));
            }
        }
        video_text::store(conn, STATE, &video_text::changed(&before, &after)).await?;
        write(conn, changes).await
    }
}

async fn write(conn: &mut PgConnection, changes: Changes) -> Result<(), ProjectionError> {
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
        let (tags, ids, times) = columns(changes.tag_rows_removed);
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
        let (tags, ids, times) = columns(changes.tag_rows_added);
        // a plain insert: a row is added only for a tag the stored state
        // lacked, so a duplicate is a bug that must fail the batch (see
        // `search::post_terms`)
        sqlx::query(
            "INSERT INTO video_hashtags (tag, video_id, published_at)
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[])",
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

/// Tag rows as the three arrays a statement binds.
fn columns(rows: Vec<TagRow>) -> (Vec<String>, Vec<Uuid>, Vec<DateTime<Utc>>) {
    let mut out = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (tag, id, at) in rows {
        out.0.push(tag);
        out.1.push(id);
        out.2.push(at);
    }
    out
}
