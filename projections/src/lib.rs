//! Read models. Each projector turns events into SQL on its own tables; the
//! runtime feeds it from a durable JetStream consumer and advances its
//! checkpoint in the same transaction as the writes.
//!
//! Invariant: projections never issue commands and never read the event store
//! during normal consumption (only `consistency` and `status` look at it).

pub mod activity;
pub mod ai_jobs;
pub mod blocks;
pub mod bookmarks;
pub mod comments;
pub mod consistency;
pub mod drafts;
pub mod follows;
pub mod hashtags;
pub mod images;
pub mod likes;
pub mod notifications;
pub mod pairs;
pub mod people;
pub mod projector;
pub mod rebuild;
pub mod reports;
pub mod runtime;
pub mod search;
pub mod search_history;
pub mod shares;
pub mod status;
pub mod subscriptions;
pub mod users;
pub mod video_stats;
mod video_text;
pub mod videos;
pub mod wallets;

use std::sync::Arc;

pub use projector::{ProjectionError, Projector};

/// Every projection this build knows, in a stable order.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(users::UsersProjector),
        Arc::new(wallets::WalletsProjector),
        Arc::new(videos::VideosProjector),
        Arc::new(likes::LikesProjector),
        Arc::new(follows::FollowsProjector),
        Arc::new(comments::CommentsProjector),
        Arc::new(ai_jobs::AiJobsProjector),
        Arc::new(bookmarks::BookmarksProjector),
        Arc::new(reports::ReportsProjector),
        Arc::new(blocks::BlocksProjector),
        Arc::new(notifications::NotificationsProjector::default()),
        Arc::new(activity::ActivityProjector),
        Arc::new(shares::SharesProjector),
        Arc::new(search::SearchProjector),
        Arc::new(people::PeopleProjector),
        Arc::new(hashtags::HashtagsProjector),
        Arc::new(search_history::SearchHistoryProjector),
        Arc::new(subscriptions::SubscriptionsProjector),
        Arc::new(video_stats::VideoStatsProjector),
        Arc::new(drafts::DraftsProjector),
        Arc::new(images::ImagesProjector),
    ]
}

/// Looks a projection up by name.
pub fn by_name(name: &str) -> Option<Arc<dyn Projector>> {
    all().into_iter().find(|p| p.name() == name)
}
