//! The SearchHistory aggregate (id = the user's id): what a user searched
//! for, newest first, private to them. Searching for the same text again
//! moves it to the top instead of adding a copy; only the newest
//! [`SearchHistory::KEEP`] entries are kept (older ones are forgotten,
//! recorded as `SearchForgotten`, so the read model and a rebuild agree).

mod aggregate;
mod commands;
mod events;

pub use aggregate::{SearchEntry, SearchHistory, SearchHistoryError};
pub use commands::SearchHistoryCommand;
pub use events::SearchHistoryEvent;
