use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SearchHistoryCommand, SearchHistoryEvent};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchEntry {
    pub entry_id: Uuid,
    pub query: String,
}

/// The kept entries, newest first (at most [`SearchHistory::KEEP`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchHistory {
    entries: Vec<SearchEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchHistoryError {
    #[error("this search is not in the history")]
    EntryNotFound,
}

impl SearchHistory {
    pub const TYPE_NAME: &'static str = "SearchHistory";
    /// How many entries a history keeps.
    pub const KEEP: usize = 50;

    pub fn entries(&self) -> &[SearchEntry] {
        &self.entries
    }
}

impl Aggregate for SearchHistory {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = SearchHistoryCommand;
    type Event = SearchHistoryEvent;
    type Error = SearchHistoryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            SearchHistoryCommand::RecordSearch {
                user_id,
                entry_id,
                query,
                at,
            } => {
                // the same text again: its entry moves up (already newest: nothing)
                let existing = self.entries.iter().position(|e| e.query == query.as_str());
                if existing == Some(0) {
                    return Ok(());
                }
                let entry_id = existing.map_or(entry_id, |i| self.entries[i].entry_id);
                let recorded = SearchHistoryEvent::SearchRecorded {
                    user_id,
                    entry_id,
                    query,
                    searched_at: at,
                };
                sink.write(recorded, self).await;
                while self.entries.len() > Self::KEEP {
                    if let Some(oldest) = self.entries.last() {
                        let entry_id = oldest.entry_id;
                        sink.write(SearchHistoryEvent::SearchForgotten { entry_id }, self)
                            .await;
                    }
                }
            }
            SearchHistoryCommand::DeleteSearch { entry_id, at } => {
                if !self.entries.iter().any(|e| e.entry_id == entry_id) {
                    return Err(SearchHistoryError::EntryNotFound);
                }
                let event = SearchHistoryEvent::SearchDeleted {
                    entry_id,
                    deleted_at: at,
                };
                sink.write(event, self).await;
            }
            SearchHistoryCommand::ClearHistory { at } => {
                if !self.entries.is_empty() {
                    sink.write(SearchHistoryEvent::HistoryCleared { cleared_at: at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SearchHistoryEvent::SearchRecorded {
                entry_id, query, ..
            } => {
                self.entries.retain(|e| e.entry_id != entry_id);
                self.entries.insert(
                    0,
                    SearchEntry {
                        entry_id,
                        query: query.into_inner(),
                    },
                );
            }
            SearchHistoryEvent::SearchDeleted { entry_id, .. }
            | SearchHistoryEvent::SearchForgotten { entry_id } => {
                self.entries.retain(|e| e.entry_id != entry_id);
            }
            SearchHistoryEvent::HistoryCleared { .. } => self.entries.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::SearchQuery;
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
    }
    const U: Uuid = Uuid::from_u128(1);

    fn q(text: &str) -> SearchQuery {
        SearchQuery::parse("q", text).unwrap()
    }
    fn record(id: u128, text: &str) -> SearchHistoryCommand {
        SearchHistoryCommand::RecordSearch {
            user_id: U,
            entry_id: Uuid::from_u128(id),
            query: q(text),
            at: at(),
        }
    }
    fn recorded(id: u128, text: &str) -> SearchHistoryEvent {
        SearchHistoryEvent::SearchRecorded {
            user_id: U,
            entry_id: Uuid::from_u128(id),
            query: q(text),
            searched_at: at(),
        }
    }

    #[test]
    fn a_new_search_is_recorded() {
        TestFramework::<SearchHistory>::with(())
            .given_no_previous_events()
            .when(record(10, "cat"))
            .then_expect_events(vec![recorded(10, "cat")]);
    }

    #[test]
    fn the_newest_search_again_records_nothing() {
        TestFramework::<SearchHistory>::with(())
            .given(vec![recorded(10, "cat")])
            .when(record(11, "cat"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_older_search_again_moves_up_under_its_own_id() {
        TestFramework::<SearchHistory>::with(())
            .given(vec![recorded(10, "cat"), recorded(11, "dog")])
            .when(record(12, "cat"))
            .then_expect_events(vec![recorded(10, "cat")]);
    }

    #[test]
    fn the_oldest_is_forgotten_past_the_limit() {
        let given: Vec<_> = (0..SearchHistory::KEEP as u128)
            .map(|i| recorded(i, &format!("q{i}")))
            .collect();
        TestFramework::<SearchHistory>::with(())
            .given(given)
            .when(record(999, "new"))
            .then_expect_events(vec![
                recorded(999, "new"),
                SearchHistoryEvent::SearchForgotten {
                    entry_id: Uuid::from_u128(0),
                },
            ]);
    }

    #[test]
    fn deleting_an_entry() {
        TestFramework::<SearchHistory>::with(())
            .given(vec![recorded(10, "cat")])
            .when(SearchHistoryCommand::DeleteSearch {
                entry_id: Uuid::from_u128(10),
                at: at(),
            })
            .then_expect_events(vec![SearchHistoryEvent::SearchDeleted {
                entry_id: Uuid::from_u128(10),
                deleted_at: at(),
            }]);
    }

    #[test]
    fn deleting_an_unknown_or_deleted_entry_is_refused() {
        TestFramework::<SearchHistory>::with(())
            .given(vec![
                recorded(10, "cat"),
                SearchHistoryEvent::SearchDeleted {
                    entry_id: Uuid::from_u128(10),
                    deleted_at: at(),
                },
            ])
            .when(SearchHistoryCommand::DeleteSearch {
                entry_id: Uuid::from_u128(10),
                at: at(),
            })
            .then_expect_error(SearchHistoryError::EntryNotFound);
    }

    #[test]
    fn clearing() {
        TestFramework::<SearchHistory>::with(())
            .given(vec![recorded(10, "cat")])
            .when(SearchHistoryCommand::ClearHistory { at: at() })
            .then_expect_events(vec![SearchHistoryEvent::HistoryCleared {
                cleared_at: at(),
            }]);
        TestFramework::<SearchHistory>::with(())
            .given(vec![
                recorded(10, "cat"),
                SearchHistoryEvent::HistoryCleared { cleared_at: at() },
            ])
            .when(SearchHistoryCommand::ClearHistory { at: at() })
            .then_expect_events(vec![]);
    }
}
