//! `lokiz-bench`: the benchmark harness and the data seeder, developer
//! tools that drive LOKIZ from outside (README.md, "Benchmarks").
//!
//! - `lokiz-bench run [...]` measures every scenario of PERFORMANCE.md
//!   beside its raw ceiling, against a `lokiz all` child process
//!   ([`lokiz_tests::bench`]);
//! - `lokiz-bench seed [...]` fills `DATABASE_URL`'s database with realistic
//!   users, videos, likes, follows, comments and views: real events through
//!   the aggregates, bulk-loaded ([`lokiz_tests::seed`]).
//!
//! Both write made-up users and events, so both are refused when
//! `LOKIZ_ENV=production`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lokiz_infra::config::Environment;
use lokiz_infra::Config;
use lokiz_tests::{bench, seed};

#[derive(Debug, Parser)]
#[command(
    name = "lokiz-bench",
    version,
    about = "LOKIZ developer tools: the benchmark harness and the data seeder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure throughput, latency, lag and memory against the raw Postgres ceiling.
    Run(bench::BenchArgs),
    /// Fill the database with realistic users, videos, likes, follows, comments and views
    /// (real events through the aggregates, bulk-loaded). Seeded users' password: `seedpassword`.
    Seed {
        /// Seed the database as it is, without migrating it first (it was
        /// migrated by the `lokiz` build that will serve it, maybe an older one).
        #[arg(long)]
        no_migrate: bool,
        #[command(flatten)]
        args: seed::SeedArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    lokiz_api::telemetry::init_tracing();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lokiz-bench: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if config.env == Environment::Production {
        eprintln!(
            "lokiz-bench: seed and bench write made-up users and events: refused when \
             LOKIZ_ENV=production"
        );
        return ExitCode::from(2);
    }
    let outcome = match cli.command {
        Command::Run(args) => bench::run(config, args).await,
        Command::Seed { no_migrate, args } => seed_database(&config, !no_migrate, &args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lokiz-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn seed_database(
    config: &Config,
    migrate: bool,
    args: &seed::SeedArgs,
) -> anyhow::Result<()> {
    let pool = lokiz_infra::db::connect(config).await?;
    if migrate {
        lokiz_infra::db::migrate(&pool).await?;
    }
    let report = seed::seed(&pool, args).await?;
    println!("seeded {}: {report}", config.database_name());
    Ok(())
}
