//! A video's caption and whether it counts, as `search` and `hashtags` each
//! keep it (in `search_videos` and `hashtag_videos`): the state both fold
//! Video events into before writing what they derive from it. Each keeps
//! its own copy, so the two apply at their own pace, on their own
//! connections, and a rebuild of one never touches the other.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use lokiz_domain::values::{Caption, Visibility};
use lokiz_domain::video::VideoEvent;
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, uuid_id, ProjectionError};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VideoText {
    pub owner_id: Uuid,
    pub caption: String,
    pub public: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub live: bool,
}

impl VideoText {
    /// In search, keywords and hashtags: public, published, not deleted or
    /// removed.
    pub fn counted(&self) -> bool {
        self.live && self.public && self.published_at.is_some()
    }

    /// The caption, when the video counts.
    fn counted_caption(&self) -> Option<Caption> {
        if !self.counted() {
            return None;
        }
        Caption::parse("caption", &self.caption).ok()
    }

    /// Hashtags that count (none unless the video counts).
    pub fn hashtags(&self) -> BTreeSet<String> {
        self.counted_caption()
            .map(|c| c.hashtags().into_iter().collect())
            .unwrap_or_default()
    }

    /// Caption words that count (none unless the video counts).
    pub fn keywords(&self) -> BTreeSet<String> {
        self.counted_caption()
            .map(|c| c.keywords().into_iter().collect())
            .unwrap_or_default()
    }
}

/// The batch's Video events that change a caption or whether it counts,
/// with their videos, in order.
pub(crate) fn decode_batch(
    events: &[&StoredEvent],
) -> Result<Vec<(Uuid, VideoEvent)>, ProjectionError> {
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
    Ok(decoded)
}

/// (video, owner, caption, public, published at, live), as stored.
type StateRow = (Uuid, Uuid, String, bool, Option<DateTime<Utc>>, bool);

/// The stored state of the batch's videos, read once, from `table`
/// (`search_videos` or `hashtag_videos`).
pub(crate) async fn load(
    conn: &mut PgConnection,
    table: &'static str,
    decoded: &[(Uuid, VideoEvent)],
) -> Result<HashMap<Uuid, VideoText>, ProjectionError> {
    let ids: Vec<Uuid> = decoded
        .iter()
        .map(|(id, _)| *id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<StateRow> = sqlx::query_as(&format!(
        "SELECT video_id, owner_id, caption, public, published_at, live
               FROM {table} WHERE video_id = ANY($1)"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
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
        .collect())
}

/// Applies one event to the batch's state; returns when it happened (`None`
/// for an event that changes nothing here).
pub(crate) fn fold(
    state: &mut HashMap<Uuid, VideoText>,
    id: Uuid,
    event: VideoEvent,
) -> Option<DateTime<Utc>> {
    match event {
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
            Some(requested_at)
        }
        VideoEvent::Published { published_at } => {
            if let Some(t) = state.get_mut(&id) {
                t.published_at.get_or_insert(published_at);
            }
            Some(published_at)
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
            Some(updated_at)
        }
        VideoEvent::Deleted { deleted_at: at } | VideoEvent::Removed { removed_at: at, .. } => {
            if let Some(t) = state.get_mut(&id) {
                t.live = false;
            }
            Some(at)
        }
        VideoEvent::UploadCompleted { .. } | VideoEvent::GlitchedFrom { .. } => None,
    }
}

/// The videos whose state the batch changed.
pub(crate) fn changed<'a>(
    before: &HashMap<Uuid, VideoText>,
    after: &'a HashMap<Uuid, VideoText>,
) -> Vec<(&'a Uuid, &'a VideoText)> {
    after
        .iter()
        .filter(|(id, t)| before.get(id) != Some(t))
        .collect()
}

/// Writes the changed videos' state to `table`.
pub(crate) async fn store(
    conn: &mut PgConnection,
    table: &'static str,
    changed: &[(&Uuid, &VideoText)],
) -> Result<(), ProjectionError> {
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changed.iter().map(|(id, _)| **id).collect();
    let owners: Vec<Uuid> = changed.iter().map(|(_, t)| t.owner_id).collect();
    let captions: Vec<&str> = changed.iter().map(|(_, t)| t.caption.as_str()).collect();
    let public: Vec<bool> = changed.iter().map(|(_, t)| t.public).collect();
    let published: Vec<Option<DateTime<Utc>>> =
        changed.iter().map(|(_, t)| t.published_at).collect();
    let live: Vec<bool> = changed.iter().map(|(_, t)| t.live).collect();
    sqlx::query(&format!(
        "INSERT INTO {table} (video_id, owner_id, caption, public, published_at, live)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bool[],
                              $5::timestamptz[], $6::bool[])
         ON CONFLICT (video_id) DO UPDATE
            SET owner_id = EXCLUDED.owner_id, caption = EXCLUDED.caption,
                public = EXCLUDED.public, published_at = EXCLUDED.published_at,
                live = EXCLUDED.live"
    ))
    .bind(&ids)
    .bind(&owners)
    .bind(&captions)
    .bind(&public)
    .bind(&published)
    .bind(&live)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
