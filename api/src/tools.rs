//! Operator commands: `lokiz projections …` and `lokiz events …`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use lokiz_domain::{
    ai_job, block, bookmark, comment, draft, follow, image, like, notification_inbox, payment,
    report, search_history, share, subscription, user, video, video_view, wallet,
};
use lokiz_infra::stored_event::STORED_EVENT_COLUMNS;
use lokiz_infra::StoredEvent;
use lokiz_projections::rebuild::{self, Progress};
use lokiz_projections::Projector;
use serde_json::Value;
use sqlx::PgPool;

use crate::cli::{EventsCommand, ProjectionsCommand, UsersCommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

pub async fn projections(pool: &PgPool, command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status { json } => status(pool, json).await,
        ProjectionsCommand::Rebuild { name, all } => {
            let projectors = select(name.as_deref(), all)?;
            let bar = bar("rebuild");
            let report = rebuild::rebuild(pool, &projectors, Some(progress(&bar))).await?;
            bar.finish_and_clear();
            println!(
                "rebuilt {}: {} events in {:.1} s ({:.0} events/s); checkpoint at position {}{}",
                report.projections.join(", "),
                report.events,
                report.elapsed.as_secs_f64(),
                report.events_per_sec(),
                report.position.position,
                if report.parked > 0 {
                    format!("; {} events parked", report.parked)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        ProjectionsCommand::Verify {
            name,
            all,
            rows,
            json,
        } => {
            let projectors = select(name.as_deref(), all || name.is_none())?;
            let bar = bar("verify");
            let report = rebuild::verify(pool, &projectors, rows, Some(progress(&bar))).await?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for d in &report.drift {
                    println!(
                        "{}.{}: {} rows only in the live table, {} only in the replay",
                        d.projection, d.table, d.only_live, d.only_replayed
                    );
                    for (side, row) in &d.sample {
                        println!("  {side:<8} {row}");
                    }
                }
                println!(
                    "verified {} over {} events in {:.1} s: {} differing rows",
                    report.projections.join(", "),
                    report.events,
                    report.elapsed.as_secs_f64(),
                    report.differing_rows()
                );
            }
            anyhow::ensure!(
                report.drift.is_empty(),
                "drift in {} table(s)",
                report.drift.len()
            );
            Ok(())
        }
        ProjectionsCommand::ResetParked { name } => {
            let projector = select(Some(&name), false)?
                .pop()
                .context("no such projection")?;
            let (applied, still) = rebuild::reset_parked(pool, &projector).await?;
            println!("{name}: {applied} parked events applied, {still} still parked");
            Ok(())
        }
    }
}

async fn status(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let list = lokiz_projections::status::status(pool, &lokiz_projections::all()).await?;
    let holder = lokiz_infra::db::horizon_holder(pool, std::time::Duration::from_secs(5)).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "projections": list,
                "relay_held_back_by": holder,
            }))?
        );
        return Ok(());
    }
    println!(
        "{:<16} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "projection", "position", "applied", "lag_ev", "lag_s", "parked"
    );
    for s in list {
        println!(
            "{:<16} {:>12} {:>12} {:>10} {:>10.3} {:>8}",
            s.name, s.last_position, s.applied, s.lag_events, s.lag_seconds, s.parked
        );
    }
    if let Some(h) = holder {
        println!(
            "the relay is held back by pid {} ({:?}, database {}, {}) open for {:.1} s: \
             it publishes nothing committed after that transaction began until it ends",
            h.pid,
            h.application_name,
            h.database.as_deref().unwrap_or("?"),
            h.state.as_deref().unwrap_or("?"),
            h.age_seconds
        );
    }
    Ok(())
}

fn select(name: Option<&str>, all: bool) -> anyhow::Result<Vec<Arc<dyn Projector>>> {
    if all {
        return Ok(lokiz_projections::all());
    }
    let name = name.context("name a projection or pass --all")?;
    match lokiz_projections::by_name(name) {
        Some(p) => Ok(vec![p]),
        None => {
            let known: Vec<&str> = lokiz_projections::all().iter().map(|p| p.name()).collect();
            anyhow::bail!("unknown projection {name:?} (known: {})", known.join(", "))
        }
    }
}

fn bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} events ({per_sec}, ETA {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

fn progress(bar: &ProgressBar) -> Progress {
    let bar = bar.clone();
    Arc::new(move |done, total| {
        bar.set_length(total.max(done));
        bar.set_position(done);
    })
}

pub async fn events(pool: &PgPool, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Show {
            aggregate_type,
            aggregate_id,
            as_of,
            format,
        } => {
            let history = history(pool, &aggregate_type, &aggregate_id, as_of).await?;
            match format {
                ShowFormat::Json => println!("{}", serde_json::to_string_pretty(&history)?),
                ShowFormat::Table => print_history(&history),
            }
            Ok(())
        }
        EventsCommand::Export {
            from,
            to,
            types,
            format,
            out,
        } => {
            let mut sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = export(pool, from, to, &types, format, &mut sink, true).await?;
            sink.flush()?;
            eprintln!("exported {n} events");
            Ok(())
        }
    }
}

pub async fn users(pool: &PgPool, command: UsersCommand) -> anyhow::Result<()> {
    let (username, role) = match command {
        UsersCommand::GrantAdmin { username } => (username, user::Role::Admin),
        UsersCommand::RevokeAdmin { username } => (username, user::Role::Member),
    };
    let changed = change_role(pool, &username, role).await?;
    println!(
        "{username} is {} ({})",
        role.as_str(),
        if changed.appended {
            format!("RoleChanged at position {}", changed.position.unwrap_or(0))
        } else {
            "unchanged".to_owned()
        }
    );
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeRoleError {
    #[error("no user named {0:?}")]
    UnknownUser(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the User aggregate refused: {0}")]
    Command(String),
}

/// Sets a user's role through the User aggregate (`ChangeRole` →
/// `RoleChanged`, nothing when the role is already that). Usernames match
/// case-insensitively, as at sign-in.
pub async fn change_role(
    pool: &PgPool,
    username: &str,
    role: user::Role,
) -> Result<lokiz_infra::event_store::Written, ChangeRoleError> {
    let user_id: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT user_id FROM identities WHERE username_key = lower($1)")
            .bind(username.trim())
            .fetch_optional(pool)
            .await?;
    let user_id = user_id.ok_or_else(|| ChangeRoleError::UnknownUser(username.to_owned()))?;
    let commands: lokiz_infra::event_store::Commands<user::User> =
        lokiz_infra::event_store::Commands::new(
            pool.clone(),
            lokiz_infra::wake::AppendSignal::spawn(pool.clone()),
        );
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("actor".to_owned(), "cli:users".to_owned());
    commands
        .execute(
            &user_id.to_string(),
            user::UserCommand::ChangeRole {
                role,
                at: Utc::now(),
            },
            metadata,
        )
        .await
        .map_err(|e| ChangeRoleError::Command(e.to_string()))
}

/// An aggregate's events and its state after them.
#[derive(Debug, serde::Serialize)]
pub struct History {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub as_of: Option<DateTime<Utc>>,
    pub events: Vec<StoredEvent>,
    /// The aggregate folded from those events (`null` when it has none).
    pub state: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("unknown aggregate type {0:?}")]
    UnknownType(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event {sequence} does not decode: {source}")]
    Decode {
        sequence: i64,
        source: serde_json::Error,
    },
}

/// Reads an aggregate's history (up to `as_of`) and folds its state with the
/// aggregate's own `apply`.
pub async fn history(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    as_of: Option<DateTime<Utc>>,
) -> Result<History, HistoryError> {
    if !lokiz_domain::AGGREGATE_TYPES.contains(&aggregate_type) {
        return Err(HistoryError::UnknownType(aggregate_type.to_owned()));
    }
    let events: Vec<StoredEvent> = sqlx::query_as(&format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2
            AND ($3::timestamptz IS NULL OR recorded_at <= $3)
          ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    let state = if events.is_empty() {
        Value::Null
    } else {
        match aggregate_type {
            t if t == user::User::TYPE_NAME => fold::<user::User>(&events)?,
            t if t == wallet::Wallet::TYPE_NAME => fold::<wallet::Wallet>(&events)?,
            t if t == video::Video::TYPE_NAME => fold::<video::Video>(&events)?,
            t if t == video_view::VideoView::TYPE_NAME => fold::<video_view::VideoView>(&events)?,
            t if t == like::Like::TYPE_NAME => fold::<like::Like>(&events)?,
            t if t == follow::Follow::TYPE_NAME => fold::<follow::Follow>(&events)?,
            t if t == comment::Comment::TYPE_NAME => fold::<comment::Comment>(&events)?,
            t if t == ai_job::AiJob::TYPE_NAME => fold::<ai_job::AiJob>(&events)?,
            t if t == payment::Payment::TYPE_NAME => fold::<payment::Payment>(&events)?,
            t if t == bookmark::Bookmark::TYPE_NAME => fold::<bookmark::Bookmark>(&events)?,
            t if t == report::Report::TYPE_NAME => fold::<report::Report>(&events)?,
            t if t == block::Block::TYPE_NAME => fold::<block::Block>(&events)?,
            t if t == share::Share::TYPE_NAME => fold::<share::Share>(&events)?,
            t if t == search_history::SearchHistory::TYPE_NAME => {
                fold::<search_history::SearchHistory>(&events)?
            }
            t if t == subscription::Subscription::TYPE_NAME => {
                fold::<subscription::Subscription>(&events)?
            }
            t if t == draft::Draft::TYPE_NAME => fold::<draft::Draft>(&events)?,
            t if t == image::Image::TYPE_NAME => fold::<image::Image>(&events)?,
            t if t == notification_inbox::NotificationInbox::TYPE_NAME => {
                fold::<notification_inbox::NotificationInbox>(&events)?
            }
            other => return Err(HistoryError::UnknownType(other.to_owned())),
        }
    };
    Ok(History {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        as_of,
        events,
        state,
    })
}

fn fold<A: Aggregate>(events: &[StoredEvent]) -> Result<Value, HistoryError> {
    let mut aggregate = A::default();
    for e in events {
        let event: A::Event = e.decode().map_err(|source| HistoryError::Decode {
            sequence: e.sequence,
            source,
        })?;
        aggregate.apply(event);
    }
    serde_json::to_value(&aggregate).map_err(|source| HistoryError::Decode {
        sequence: events.last().map_or(0, |e| e.sequence),
        source,
    })
}

fn print_history(h: &History) {
    println!(
        "{} {}{}",
        h.aggregate_type,
        h.aggregate_id,
        h.as_of
            .map(|t| format!(" as of {}", t.to_rfc3339()))
            .unwrap_or_default()
    );
    println!(
        "{:>4} {:>10} {:<32} {:<20} {:>4}  payload",
        "seq", "position", "recorded_at", "event", "ver"
    );
    for e in &h.events {
        println!(
            "{:>4} {:>10} {:<32} {:<20} {:>4}  {}",
            e.sequence,
            e.position,
            e.recorded_at.to_rfc3339(),
            e.event_type,
            e.event_version,
            e.payload
        );
    }
    println!("state: {}", h.state);
}

/// Streams every matching event in commit order to `sink`; returns how many.
/// Memory stays constant: rows are written as they arrive.
pub async fn export(
    pool: &PgPool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    types: &[String],
    format: ExportFormat,
    sink: &mut dyn Write,
    show_progress: bool,
) -> anyhow::Result<u64> {
    let filter = "($1::timestamptz IS NULL OR recorded_at >= $1)
              AND ($2::timestamptz IS NULL OR recorded_at < $2)
              AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3) OR event_type = ANY($3))";
    let bar = if show_progress {
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM events WHERE {filter}"))
            .bind(from)
            .bind(to)
            .bind(types)
            .fetch_one(pool)
            .await?;
        let bar = bar("export");
        bar.set_length(total as u64);
        Some(bar)
    } else {
        None
    };
    if format == ExportFormat::Csv {
        writeln!(
            sink,
            "position,xid,recorded_at,aggregate_type,aggregate_id,sequence,event_type,event_version,payload,metadata"
        )?;
    }
    let query = format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events WHERE {filter}
          ORDER BY events.xid, events.position"
    );
    let mut rows = sqlx::query_as::<_, StoredEvent>(&query)
        .bind(from)
        .bind(to)
        .bind(types)
        .fetch(pool);
    let mut n = 0u64;
    let mut last_tick = Instant::now();
    while let Some(e) = rows.try_next().await? {
        match format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *sink, &e)?;
                sink.write_all(b"\n")?;
            }
            ExportFormat::Csv => {
                let fields = [
                    e.position.to_string(),
                    e.xid.to_string(),
                    e.recorded_at.to_rfc3339(),
                    e.aggregate_type.clone(),
                    e.aggregate_id.clone(),
                    e.sequence.to_string(),
                    e.event_type.clone(),
                    e.event_version.clone(),
                    e.payload.get().to_owned(),
                    e.metadata.get().to_owned(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(sink, "{}", line.join(","))?;
            }
        }
        n += 1;
        if let Some(bar) = &bar {
            if last_tick.elapsed() > Duration::from_millis(200) {
                bar.set_position(n);
                last_tick = Instant::now();
            }
        }
    }
    if let Some(bar) = bar {
        bar.set_position(n);
        bar.finish_and_clear();
    }
    Ok(n)
}

/// RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("Video"), "Video");
        assert_eq!(
            csv_field(r#"{"a":1,"b":"x"}"#),
            r#""{""a"":1,""b"":""x""}""#
        );
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
