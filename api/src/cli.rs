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
    /// API, relay and projections in one process (the local default).
    All,
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Inspect projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Measure throughput and lag against the raw Postgres ceiling.
    Bench(crate::bench::BenchArgs),
    /// Fill the database with realistic users, videos, likes, follows, comments and views
    /// (real events through the aggregates, bulk-loaded). Seeded users' password: `seedpassword`.
    Seed(crate::seed::SeedArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's checkpoint, lag and parked events.
    Status {
        #[arg(long)]
        json: bool,
    },
}
