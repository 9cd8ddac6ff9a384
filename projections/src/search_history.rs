//! `search_history`: each user's kept searches, newest first. The
//! SearchHistory aggregate decides what is kept (the newest 50) and records
//! what it forgets, so this is a plain copy.

use async_trait::async_trait;
use lokiz_domain::search_history::{SearchHistory, SearchHistoryEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct SearchHistoryProjector;

#[async_trait]
impl Projector for SearchHistoryProjector {
    fn name(&self) -> &'static str {
        "search_history"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[SearchHistory::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["search_history"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<SearchHistoryEvent>(event)? {
            SearchHistoryEvent::SearchRecorded {
                user_id,
                entry_id,
                query,
                searched_at,
            } => {
                // the aggregate's sequence orders entries (a repeated search
                // moves its entry up)
                sqlx::query(
                    "INSERT INTO search_history (id, user_id, query, searched_at, seq)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE
                        SET searched_at = EXCLUDED.searched_at, seq = EXCLUDED.seq",
                )
                .bind(entry_id)
                .bind(user_id)
                .bind(query.as_str())
                .bind(searched_at)
                .bind(event.sequence)
                .execute(conn)
                .await?;
            }
            SearchHistoryEvent::SearchDeleted { entry_id, .. }
            | SearchHistoryEvent::SearchForgotten { entry_id } => {
                sqlx::query("DELETE FROM search_history WHERE id = $1")
                    .bind(entry_id)
                    .execute(conn)
                    .await?;
            }
            SearchHistoryEvent::HistoryCleared { .. } => {
                sqlx::query("DELETE FROM search_history WHERE user_id = $1")
                    .bind(uuid_id(event)?)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
