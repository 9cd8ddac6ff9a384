//! The `lokiz` command line.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lokiz",
    version,
    about = "LOKIZ backend: API, relay, projections, tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP API only.
    Serve,
    /// The relay only: publishes stored events to JetStream.
    Relay,
    /// All projections only: keep the read models current.
    Project,
    /// The AI worker (runs jobs with the local ffmpeg provider) and the credits saga.
    Worker,
    /// API, relay, projections, AI worker and credits saga in one process (the local default).
    All,
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Inspect projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Inspect the event store.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage users' roles (emits RoleChanged through the User aggregate).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's checkpoint, lag and parked events.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Replay projections from the event store into fresh tables, then swap them in.
    Rebuild {
        /// The projection (see `status`); or --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every projection, swapped together.
        #[arg(long)]
        all: bool,
    },
    /// Replay into a shadow schema and compare with the live read models;
    /// exits non-zero on any difference.
    Verify {
        /// The projection; every one when omitted (or with --all).
        #[arg(conflicts_with = "all")]
        name: Option<String>,
        #[arg(long)]
        all: bool,
        /// Differing rows shown per table.
        #[arg(long, default_value_t = 20)]
        rows: i64,
        #[arg(long)]
        json: bool,
    },
    /// Apply a projection's parked events again (after a fix).
    ResetParked { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Make a user an admin (admin routes such as /v1/admin/audit).
    GrantAdmin { username: String },
    /// Make an admin a member again.
    RevokeAdmin { username: String },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// An aggregate's full history and its state (now, or as of a time).
    Show {
        /// Aggregate type: User, Wallet, Video, VideoView, Like, Follow, Comment.
        aggregate_type: String,
        aggregate_id: String,
        /// Only events recorded at or before this RFC 3339 time.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value_t = crate::tools::ShowFormat::Table)]
        format: crate::tools::ShowFormat,
    },
    /// Every event in commit order, for analytics (constant memory; progress on stderr).
    Export {
        /// Recorded at or after (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Recorded before (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this aggregate type or event type (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long, value_enum)]
        format: crate::tools::ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}
