//! LOKIZ domain: aggregates, their commands and events, and the value types
//! commands are built from.
//!
//! Invariant: this crate performs no I/O. It depends on no sqlx, axum or NATS
//! crate; time and identifiers arrive inside commands.

pub mod ai_job;
pub mod block;
pub mod bookmark;
pub mod comment;
pub mod draft;
pub mod follow;
pub mod image;
pub mod like;
pub mod notification_inbox;
pub mod payment;
pub mod report;
pub mod search_history;
pub mod share;
pub mod subscription;
pub mod upcast;
pub mod user;
pub mod values;
pub mod video;
pub mod video_view;
pub mod wallet;

/// Every aggregate type name as stored in the event store's `aggregate_type`
/// column and used in NATS subjects.
pub const AGGREGATE_TYPES: &[&str] = &[
    user::User::TYPE_NAME,
    wallet::Wallet::TYPE_NAME,
    video::Video::TYPE_NAME,
    video_view::VideoView::TYPE_NAME,
    like::Like::TYPE_NAME,
    follow::Follow::TYPE_NAME,
    comment::Comment::TYPE_NAME,
    ai_job::AiJob::TYPE_NAME,
    payment::Payment::TYPE_NAME,
    bookmark::Bookmark::TYPE_NAME,
    report::Report::TYPE_NAME,
    block::Block::TYPE_NAME,
    notification_inbox::NotificationInbox::TYPE_NAME,
    share::Share::TYPE_NAME,
    search_history::SearchHistory::TYPE_NAME,
    subscription::Subscription::TYPE_NAME,
    draft::Draft::TYPE_NAME,
    image::Image::TYPE_NAME,
];
