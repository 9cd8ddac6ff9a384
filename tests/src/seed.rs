//! `lokiz-bench seed`: fills a database with realistic data — users, videos,
//! follows, likes, comments (with replies) and views — through the event
//! store.
//!
//! **Real events.** Every command runs through cqrs-es' aggregate store, by
//! `infra::event_store::decide_and_append` as `Commands` runs it, only
//! over an in-memory repository ([`MemRepository`]) instead of Postgres: the
//! aggregate's `handle` decides the events, cqrs-es serializes them (type and
//! version from `DomainEvent`, externally tagged payload, the same `actor`
//! metadata the API records, sequences 1..n) and hands the repository the
//! aggregate's new state with its commit count — exactly what
//! `LokizEventRepository::persist` would have written. A multi-command
//! aggregate (a video: `RequestUpload`, then `CompleteUpload`) is loaded back
//! from that snapshot between commands, as the API loads it. What the
//! repository collects is then bulk-loaded with `COPY`: the `events` rows (the
//! store fills `position`, `xid` and `recorded_at` as for any insert) and one
//! `snapshots` row per aggregate, so the API can go on commanding seeded
//! aggregates (delete a seeded video, like it, follow a seeded user…).
//!
//! **Identities.** Each user also gets the write-side `identities` row (one
//! argon2 hash of [`SEED_PASSWORD`], computed once, shared by all) and the
//! signup grant on their Wallet, as registration does.
//!
//! **Order.** One transaction per batch, several connections at once. Every
//! aggregate's whole history is inside one batch, and phases are separated by
//! a barrier — users → videos → follows, likes, top-level comments, views →
//! replies — so each transaction of a phase takes its xid after every
//! transaction of the previous phase committed. In the relay's
//! `(xid, position)` order an event therefore never precedes what it refers to
//! (a like is projected after its video's row exists, a reply after its
//! parent).
//!
//! **Determinism.** Everything (ids, names, times, captions, pairs) comes from
//! `--seed-rng` and `--until`: the same two give the same rows; only
//! `position`/`xid` depend on how batches interleave.
//!
//! **No media.** Seeded videos have file keys but no objects behind them
//! (a million placeholder files is not worth it): their `file_url` answers 404.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::Aggregate;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use lokiz_domain::comment::{Comment, CommentCommand};
use lokiz_domain::follow::{Follow, FollowCommand};
use lokiz_domain::like::{Like, LikeCommand};
use lokiz_domain::user::{User, UserCommand};
use lokiz_domain::values::{
    Caption, CommentBody, DisplayName, Email, FieldError, Password, Username, VideoDimensions,
};
use lokiz_domain::video::{Video, VideoCommand};
use lokiz_domain::video_view::{VideoView, VideoViewCommand, ViewerKey};
use lokiz_domain::wallet::{GrantReason, Wallet, WalletCommand, SIGNUP_CREDITS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The password of every seeded user (log in with their email, e.g. from
/// `SELECT email_key FROM identities`).
pub const SEED_PASSWORD: &str = "seedpassword";

/// Seeded emails are `<username>@<SEED_EMAIL_DOMAIN>`.
pub const SEED_EMAIL_DOMAIN: &str = "seed.lokiz.dev";

/// Activity (videos, likes, comments, views, follows) spreads over this many
/// days before `--until`; users registered in the week before that.
pub const WINDOW_DAYS: i64 = 30;

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Users (each: Registered, the signup CreditsGranted, an identity row).
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Videos (each: UploadRequested, UploadCompleted, Published).
    #[arg(long, default_value_t = 10_000)]
    pub videos: usize,
    /// Distinct (user, video) likes.
    #[arg(long, default_value_t = 50_000)]
    pub likes: usize,
    /// Distinct (follower, followee) follows, never of oneself.
    #[arg(long, default_value_t = 5_000)]
    pub follows: usize,
    /// Comments; about a quarter are replies to an earlier comment.
    #[arg(long, default_value_t = 20_000)]
    pub comments: usize,
    /// Distinct (viewer, video) counted views by signed-in users, never the owner.
    #[arg(long, default_value_t = 50_000)]
    pub views: usize,
    /// Aggregates per transaction (one COPY per table each).
    #[arg(long, default_value_t = 4_000)]
    pub batch: usize,
    /// Database connections writing at once.
    #[arg(long, default_value_t = 3)]
    pub connections: usize,
    /// Seed of the random generator: the same seed and --until give the same data.
    #[arg(long, default_value_t = 1)]
    pub seed_rng: u64,
    /// Newest timestamp of the data (RFC 3339, e.g. 2026-11-23T12:00:00Z); default now.
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for SeedArgs {
    fn default() -> Self {
        Self {
            users: 1_000,
            videos: 10_000,
            likes: 50_000,
            follows: 5_000,
            comments: 20_000,
            views: 50_000,
            batch: 4_000,
            connections: 3,
            seed_rng: 1,
            until: None,
            quiet: false,
        }
    }
}

/// What a seed run wrote.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub users: usize,
    pub videos: usize,
    pub follows: usize,
    pub likes: usize,
    /// Top-level comments and replies.
    pub comments: usize,
    pub replies: usize,
    pub views: usize,
    pub events: u64,
    pub aggregates: u64,
    pub elapsed: Duration,
}

impl SeedReport {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users, {} videos, {} follows, {} likes, {} comments ({} replies), {} views: \
             {} events, {} aggregates in {:.1} s ({:.0} events/s)",
            self.users,
            self.videos,
            self.follows,
            self.likes,
            self.comments,
            self.replies,
            self.views,
            self.events,
            self.aggregates,
            self.elapsed.as_secs_f64(),
            self.events_per_sec()
        )
    }
}

/// Seeds `pool`'s database (already migrated) as `args` asks.
pub async fn seed(pool: &PgPool, args: &SeedArgs) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    if args.videos > 0 && args.users == 0 {
        anyhow::bail!("--videos needs at least one user");
    }
    let until = args.until.unwrap_or_else(lokiz_api::now);
    let plan = Arc::new(Plan::new(args, until));

    // Seeding twice with the same generator seed would collide on names.
    let names: Vec<String> = plan.users.iter().map(|u| u.username_key()).collect();
    let taken: i64 =
        sqlx::query_scalar("SELECT count(*) FROM identities WHERE username_key = ANY($1)")
            .bind(&names)
            .fetch_one(pool)
            .await?;
    if taken > 0 {
        anyhow::bail!(
            "{taken} of the usernames this seed would create exist already \
             (seeded before with --seed-rng {}?); use another --seed-rng or a fresh database",
            args.seed_rng
        );
    }

    let password_hash = lokiz_api::auth::password::hash(
        Password::parse("password", SEED_PASSWORD).map_err(field_error)?,
    )
    .await?;
    let gen = Arc::new(Generator {
        plan: plan.clone(),
        seed: args.seed_rng,
        password_hash,
    });

    let total_events = (plan.users.len() * 2
        + plan.videos.len() * 3
        + plan.follows.len()
        + plan.likes.len()
        + plan.comments.len()
        + plan.views.len()) as u64;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_events)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:8} [{bar:30}] {human_pos}/{human_len} events, {per_sec}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    let batch = args.batch.max(1);
    let writers = args.connections.max(1);
    let generators = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let phases: [(&str, &[Kind]); 4] = [
        ("users", &[Kind::Users]),
        ("videos", &[Kind::Videos]),
        (
            "social",
            &[Kind::Follows, Kind::Likes, Kind::TopComments, Kind::Views],
        ),
        ("replies", &[Kind::Replies]),
    ];
    let mut report = SeedReport {
        users: plan.users.len(),
        videos: plan.videos.len(),
        follows: plan.follows.len(),
        likes: plan.likes.len(),
        comments: plan.comments.len(),
        replies: plan.replies.len(),
        views: plan.views.len(),
        ..Default::default()
    };
    for (name, kinds) in phases {
        bar.set_message(name);
        let mut jobs = Vec::new();
        for kind in kinds {
            let n = plan.count(*kind);
            let mut start = 0;
            while start < n {
                let end = (start + batch).min(n);
                jobs.push(Job {
                    kind: *kind,
                    start,
                    end,
                });
                start = end;
            }
        }
        let written = Arc::new(Mutex::new((0u64, 0u64)));
        futures::stream::iter(jobs)
            .map(|job| {
                let gen = gen.clone();
                async move {
                    tokio::task::spawn_blocking(move || gen.generate(job))
                        .await
                        .context("generator panicked")?
                }
            })
            .buffered(generators)
            .try_for_each_concurrent(writers, |b| {
                let (bar, written) = (bar.clone(), written.clone());
                async move {
                    let (events, aggregates) = (b.events_n, b.aggregates_n);
                    write_batch(pool, b).await?;
                    bar.inc(events);
                    let mut w = written.lock().expect("counter");
                    w.0 += events;
                    w.1 += aggregates;
                    Ok(())
                }
            })
            .await
            .with_context(|| format!("seeding {name}"))?;
        let (events, aggregates) = *written.lock().expect("counter");
        report.events += events;
        report.aggregates += aggregates;
        // wake a running relay now rather than at its next idle poll
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(lokiz_infra::relay::NOTIFY_CHANNEL)
            .execute(pool)
            .await?;
    }
    bar.finish_and_clear();
    // fresh statistics for the write side (autovacuum may be off)
    sqlx::query("ANALYZE events, snapshots, identities")
        .execute(pool)
        .await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn field_error(e: FieldError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.field, e.message)
}

// ------------------------------------------------------------------ the plan

const SECOND_US: i64 = 1_000_000;
const DAY_US: i64 = 86_400 * SECOND_US;

const ADJECTIVES: &[&str] = &[
    "neon", "glitch", "pixel", "turbo", "cosmic", "lofi", "hyper", "retro", "velvet", "static",
    "lunar", "chrome", "fuzzy", "mellow", "rogue", "sonic", "crimson", "hazy", "prism", "quantum",
    "silent", "wild", "astro", "electric", "midnight", "vapor", "golden", "tiny", "loud", "sleepy",
];
const NOUNS: &[&str] = &[
    "fox",
    "raven",
    "loki",
    "trickster",
    "otter",
    "comet",
    "panda",
    "moth",
    "tiger",
    "synth",
    "ghost",
    "koi",
    "falcon",
    "jackal",
    "wolf",
    "lynx",
    "gecko",
    "badger",
    "heron",
    "coyote",
    "sprite",
    "golem",
    "kraken",
    "phoenix",
    "yeti",
    "mantis",
    "orca",
    "bison",
    "wren",
    "cat",
];
const PHRASES: &[&str] = &[
    "late night glitch session",
    "remixed my morning coffee",
    "trickster mode: on",
    "this loop never ends",
    "pixels went rogue again",
    "wait for the beat drop",
    "made this in five minutes",
    "datamosh experiment",
    "the city at 3am",
    "my cat vs the algorithm",
    "first try, no edits",
    "sunset but make it vaporwave",
    "skating through the static",
    "what if colors had feelings",
    "AI dreamed this one",
    "dance break",
    "grandma reacts to LOKIZ",
    "tried the new glitch filter",
    "one take wonder",
    "rain sounds + synths",
    "고양이가 춤을 춘다",
    "오늘의 글리치 챌린지",
];
const HASHTAGS: &[&str] = &[
    "#glitch",
    "#remix",
    "#lokiz",
    "#trickster",
    "#ai",
    "#vaporwave",
    "#datamosh",
    "#loop",
    "#neon",
    "#dance",
    "#fyp",
    "#chaos",
    "#pixelsort",
    "#synth",
    "#retro",
    "#cat",
    "#skate",
    "#music",
    "#art",
    "#night",
    "#댄스",
    "#글리치",
];
const COMMENTS: &[&str] = &[
    "this is unreal 🔥",
    "how did you make this?",
    "the glitch at 0:03 😮",
    "loop it forever",
    "teach me please",
    "okay this is art",
    "LOKIZ never misses",
    "remix incoming",
    "I can't stop watching",
    "the colors!!",
    "underrated",
    "what app is this",
    "my brain melted",
    "saving this one",
    "10/10 would glitch again",
    "the sound design though",
];
const REPLIES: &[&str] = &[
    "right?!",
    "agreed",
    "same here",
    "haha yes",
    "it's the new filter I think",
    "came here to say this",
    "100%",
    "no way",
];
/// (width, height) of typical phone and desktop clips.
const SIZES: &[(i64, i64)] = &[
    (1080, 1920),
    (720, 1280),
    (1920, 1080),
    (1080, 1080),
    (2160, 3840),
];
const TYPES: &[(&str, &str)] = &[
    ("video/mp4", "mp4"),
    ("video/mp4", "mp4"),
    ("video/mp4", "mp4"),
    ("video/quicktime", "mov"),
    ("video/webm", "webm"),
];

struct UserPlan {
    id: Uuid,
    username: String,
    display_name: String,
    registered: i64,
}

impl UserPlan {
    fn username_key(&self) -> String {
        self.username.to_ascii_lowercase()
    }
    fn email(&self) -> String {
        format!("{}@{SEED_EMAIL_DOMAIN}", self.username_key())
    }
}

struct VideoPlan {
    id: Uuid,
    owner: u32,
    requested: i64,
    published: i64,
}

struct CommentPlan {
    id: Uuid,
    video: u32,
    author: u32,
    parent: Option<u32>,
    at: i64,
}

/// A (user, target, time) pair: follower/followee, liker/video, viewer/video.
type Pair = (u32, u32, i64);

/// Everything that relates entities to each other (who owns, likes, follows,
/// replies to what, and when), drawn up front from one generator so pairs are
/// distinct; per-entity details (captions, sizes, bodies) are drawn later,
/// in parallel, from a generator per entity.
struct Plan {
    users: Vec<UserPlan>,
    videos: Vec<VideoPlan>,
    follows: Vec<Pair>,
    likes: Vec<Pair>,
    comments: Vec<CommentPlan>,
    /// Indices into `comments`.
    top: Vec<u32>,
    replies: Vec<u32>,
    views: Vec<Pair>,
}

/// Index in `0..n`, low indices much likelier (popular creators and videos).
fn skewed(rng: &mut StdRng, n: usize, power: i32) -> usize {
    ((n as f64 * rng.gen::<f64>().powi(power)) as usize).min(n - 1)
}

/// A time in `[lo, hi]`.
fn between(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        return lo;
    }
    lo + (rng.gen::<f64>() * (hi - lo) as f64) as i64
}

/// A version-7 id for time `at` (µs), random bits from `rng`: ids sort like
/// the API's `Uuid::now_v7()`.
fn v7(rng: &mut StdRng, at: i64) -> Uuid {
    let bytes: [u8; 10] = rng.gen();
    uuid::Builder::from_unix_timestamp_millis((at / 1000) as u64, &bytes).into_uuid()
}

/// Draws up to `n` distinct pairs; gives up after many repeats (a dataset
/// asking for more pairs than exist).
fn distinct_pairs(
    rng: &mut StdRng,
    n: usize,
    mut draw: impl FnMut(&mut StdRng) -> Option<Pair>,
) -> Vec<Pair> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n && attempts < n * 20 + 1000 {
        attempts += 1;
        if let Some((a, b, at)) = draw(rng) {
            if seen.insert(((a as u64) << 32) | b as u64) {
                out.push((a, b, at));
            }
        }
    }
    out
}

impl Plan {
    fn new(args: &SeedArgs, until: DateTime<Utc>) -> Plan {
        let mut rng = StdRng::seed_from_u64(args.seed_rng);
        let until = until.timestamp_micros();
        let window_start = until - WINDOW_DAYS * DAY_US;

        let users: Vec<UserPlan> = (0..args.users)
            .map(|i| {
                let registered = window_start - between(&mut rng, SECOND_US, 7 * DAY_US);
                let adj = ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())];
                let noun = NOUNS[rng.gen_range(0..NOUNS.len())];
                let mut display = String::new();
                for word in [adj, noun] {
                    let mut c = word.chars();
                    if let Some(first) = c.next() {
                        display.extend(first.to_uppercase());
                        display.push_str(c.as_str());
                    }
                    display.push(' ');
                }
                UserPlan {
                    id: v7(&mut rng, registered),
                    username: format!("{adj}_{noun}{i}"),
                    display_name: display.trim_end().to_owned(),
                    registered,
                }
            })
            .collect();
        let nu = users.len();

        let videos: Vec<VideoPlan> = (0..args.videos)
            .map(|_| {
                let owner = skewed(&mut rng, nu, 2) as u32;
                let published = between(&mut rng, window_start, until);
                let requested = published - between(&mut rng, 5 * SECOND_US, 600 * SECOND_US);
                VideoPlan {
                    id: v7(&mut rng, requested),
                    owner,
                    requested,
                    published,
                }
            })
            .collect();
        let nv = videos.len();

        let follows = if nu < 2 {
            Vec::new()
        } else {
            distinct_pairs(&mut rng, args.follows, |rng| {
                let follower = rng.gen_range(0..nu);
                let followee = skewed(rng, nu, 2);
                if follower == followee {
                    return None;
                }
                let from = users[follower].registered.max(users[followee].registered);
                let at = between(rng, from.max(window_start), until);
                Some((follower as u32, followee as u32, at))
            })
        };
        let likes = if nv == 0 {
            Vec::new()
        } else {
            distinct_pairs(&mut rng, args.likes, |rng| {
                let user = rng.gen_range(0..nu);
                let video = skewed(rng, nv, 3);
                let at = between(rng, videos[video].published, until);
                Some((user as u32, video as u32, at))
            })
        };

        let mut comments: Vec<CommentPlan> = Vec::with_capacity(args.comments);
        let (mut top, mut replies) = (Vec::new(), Vec::new());
        let mut by_video: HashMap<u32, Vec<u32>> = HashMap::new();
        if nv > 0 {
            for k in 0..args.comments as u32 {
                let video = skewed(&mut rng, nv, 3) as u32;
                let author = rng.gen_range(0..nu) as u32;
                let earlier = by_video.get(&video).filter(|l| !l.is_empty());
                let parent = match earlier {
                    Some(list) if rng.gen_bool(0.25) => Some(list[rng.gen_range(0..list.len())]),
                    _ => None,
                };
                let at = match parent {
                    Some(p) => between(&mut rng, comments[p as usize].at, until),
                    None => between(&mut rng, videos[video as usize].published, until),
                };
                let id = v7(&mut rng, at);
                comments.push(CommentPlan {
                    id,
                    video,
                    author,
                    parent,
                    at,
                });
                match parent {
                    Some(_) => replies.push(k),
                    None => {
                        top.push(k);
                        by_video.entry(video).or_default().push(k);
                    }
                }
            }
        }

        let views = if nv == 0 || nu < 2 {
            Vec::new()
        } else {
            distinct_pairs(&mut rng, args.views, |rng| {
                let viewer = rng.gen_range(0..nu);
                let video = skewed(rng, nv, 3);
                if videos[video].owner as usize == viewer {
                    return None;
                }
                let at = between(rng, videos[video].published, until);
                Some((viewer as u32, video as u32, at))
            })
        };

        Plan {
            users,
            videos,
            follows,
            likes,
            comments,
            top,
            replies,
            views,
        }
    }

    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Users => self.users.len(),
            Kind::Videos => self.videos.len(),
            Kind::Follows => self.follows.len(),
            Kind::Likes => self.likes.len(),
            Kind::TopComments => self.top.len(),
            Kind::Replies => self.replies.len(),
            Kind::Views => self.views.len(),
        }
    }
}

// ------------------------------------------------------- in-memory event store

#[derive(Default)]
struct MemState {
    events: Vec<SerializedEvent>,
    /// aggregate id → (state, last sequence, commit count)
    snapshots: HashMap<String, (Value, usize, usize)>,
}

/// A `PersistedEventRepository` that keeps what cqrs-es persists in memory,
/// to be bulk-loaded afterwards. Its snapshot doubles as the aggregate store
/// cqrs-es loads from between two commands on one aggregate.
#[derive(Clone, Default)]
struct MemRepository(Arc<Mutex<MemState>>);

impl MemRepository {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        // a panic elsewhere fails the whole seed anyway
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PersistedEventRepository for MemRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .state()
            .events
            .iter()
            .filter(|e| e.aggregate_id == aggregate_id)
            .cloned()
            .collect())
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .state()
            .events
            .iter()
            .filter(|e| e.aggregate_id == aggregate_id && e.sequence > last_sequence)
            .cloned()
            .collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(self.state().snapshots.get(aggregate_id).map(
            |(aggregate, current_sequence, current_snapshot)| SerializedSnapshot {
                aggregate_id: aggregate_id.to_owned(),
                aggregate: aggregate.clone(),
                current_sequence: *current_sequence,
                current_snapshot: *current_snapshot,
            },
        ))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let mut state = self.state();
        if let Some((aggregate_id, aggregate, current_snapshot)) = snapshot_update {
            // the guard of LokizEventRepository's upsert
            let previous = state.snapshots.get(&aggregate_id).map_or(0, |s| s.2);
            if previous + 1 != current_snapshot {
                return Err(PersistenceError::OptimisticLockError);
            }
            let last_sequence = events.last().map_or(0, |e| e.sequence);
            state
                .snapshots
                .insert(aggregate_id, (aggregate, last_sequence, current_snapshot));
        }
        state.events.extend_from_slice(events);
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError(
            "the seed store does not replay".into(),
        ))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError(
            "the seed store does not replay".into(),
        ))
    }
}

/// One aggregate type's command bus over a [`MemRepository`]: cqrs-es with
/// the aggregate store, run by `decide_and_append` as the API's `Commands<A>`.
struct Runner<A: Aggregate<Services = ()>> {
    repo: MemRepository,
    store: PersistedEventStore<MemRepository, A>,
}

impl<A: Aggregate<Services = ()> + Clone> Runner<A> {
    fn new() -> Self {
        let repo = MemRepository::default();
        Self {
            store: PersistedEventStore::new_aggregate_store(repo.clone()),
            repo,
        }
    }

    async fn execute(
        &self,
        id: &str,
        command: A::Command,
        actor: Option<Uuid>,
    ) -> anyhow::Result<()> {
        let metadata = match actor {
            Some(a) => HashMap::from([("actor".to_owned(), a.to_string())]),
            None => HashMap::new(),
        };
        lokiz_infra::event_store::decide_and_append(&self.store, id, command, metadata)
            .await
            .map_err(|e| anyhow::anyhow!("{} {id}: {e}", A::TYPE))
    }

    /// Moves what was persisted into `batch` as COPY rows.
    fn drain_into(&self, batch: &mut Batch) -> anyhow::Result<()> {
        let state = std::mem::take(&mut *self.repo.state());
        for e in &state.events {
            let line = &mut batch.events;
            copy_field(line, &e.aggregate_type);
            line.push(b'\t');
            copy_field(line, &e.aggregate_id);
            line.push(b'\t');
            line.extend_from_slice(e.sequence.to_string().as_bytes());
            line.push(b'\t');
            copy_field(line, &e.event_type);
            line.push(b'\t');
            copy_field(line, &e.event_version);
            line.push(b'\t');
            copy_field(line, &serde_json::to_string(&e.payload)?);
            line.push(b'\t');
            copy_field(line, &serde_json::to_string(&e.metadata)?);
            line.push(b'\n');
        }
        batch.events_n += state.events.len() as u64;
        batch.aggregates_n += state.snapshots.len() as u64;
        for (id, (payload, last_sequence, current_snapshot)) in &state.snapshots {
            let line = &mut batch.snapshots;
            copy_field(line, A::TYPE);
            line.push(b'\t');
            copy_field(line, id);
            line.extend_from_slice(format!("\t{last_sequence}\t{current_snapshot}\t").as_bytes());
            copy_field(line, &serde_json::to_string(payload)?);
            line.push(b'\n');
        }
        Ok(())
    }
}

/// Appends `s` escaped for COPY's text format.
fn copy_field(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

// ------------------------------------------------------------- generation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Users,
    Videos,
    Follows,
    Likes,
    TopComments,
    Replies,
    Views,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    kind: Kind,
    start: usize,
    end: usize,
}

/// COPY text for one transaction.
#[derive(Default)]
struct Batch {
    identities: Vec<u8>,
    events: Vec<u8>,
    snapshots: Vec<u8>,
    events_n: u64,
    aggregates_n: u64,
}

struct Generator {
    plan: Arc<Plan>,
    seed: u64,
    password_hash: String,
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl Generator {
    /// A generator for entity `i` of `kind`, independent of batching.
    fn rng(&self, kind: Kind, i: usize) -> StdRng {
        let mut x = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((kind as u64) << 40)
            .wrapping_add(i as u64);
        // splitmix64 finalizer
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        StdRng::seed_from_u64(x ^ (x >> 31))
    }

    fn generate(&self, job: Job) -> anyhow::Result<Batch> {
        futures::executor::block_on(self.generate_async(job))
    }

    async fn generate_async(&self, job: Job) -> anyhow::Result<Batch> {
        let plan = &self.plan;
        let mut batch = Batch::default();
        let range = job.start..job.end;
        match job.kind {
            Kind::Users => {
                let (users, wallets) = (Runner::<User>::new(), Runner::<Wallet>::new());
                for u in &plan.users[range] {
                    let username = Username::parse("username", &u.username).map_err(field_error)?;
                    let email = Email::parse("email", &u.email()).map_err(field_error)?;
                    let display_name =
                        DisplayName::parse("display_name", &u.display_name).map_err(field_error)?;
                    let at = time(u.registered);
                    let line = &mut batch.identities;
                    copy_field(line, &u.id.to_string());
                    line.push(b'\t');
                    copy_field(line, &username.normalized());
                    line.push(b'\t');
                    copy_field(line, email.as_str());
                    line.push(b'\t');
                    copy_field(line, &self.password_hash);
                    line.push(b'\t');
                    copy_field(line, &at.to_rfc3339());
                    line.push(b'\n');
                    let id = u.id.to_string();
                    let command = UserCommand::RegisterUser {
                        user_id: u.id,
                        username,
                        email,
                        display_name,
                        at,
                    };
                    users.execute(&id, command, Some(u.id)).await?;
                    let grant = WalletCommand::GrantCredits {
                        amount: SIGNUP_CREDITS,
                        reason: GrantReason::Signup,
                        reference: "signup".into(),
                        at,
                    };
                    wallets.execute(&id, grant, Some(u.id)).await?;
                }
                users.drain_into(&mut batch)?;
                wallets.drain_into(&mut batch)?;
            }
            Kind::Videos => {
                let videos = Runner::<Video>::new();
                for i in range {
                    let v = &plan.videos[i];
                    let mut rng = self.rng(Kind::Videos, i);
                    let owner = plan.users[v.owner as usize].id;
                    let (content_type, ext) = TYPES[rng.gen_range(0..TYPES.len())];
                    let caption = if rng.gen_bool(0.9) {
                        let mut text = PHRASES[rng.gen_range(0..PHRASES.len())].to_owned();
                        let mut tags: Vec<&str> = Vec::new();
                        for _ in 0..rng.gen_range(1..=3) {
                            let tag = HASHTAGS[rng.gen_range(0..HASHTAGS.len())];
                            if !tags.contains(&tag) {
                                tags.push(tag);
                            }
                        }
                        for tag in tags {
                            text.push(' ');
                            text.push_str(tag);
                        }
                        Some(Caption::parse("caption", &text).map_err(field_error)?)
                    } else {
                        None
                    };
                    let file_size = rng.gen_range(200_000..60_000_000u64);
                    let (width, height) = SIZES[rng.gen_range(0..SIZES.len())];
                    let duration = (rng.gen_range(2.0..60.0f64) * 100.0).round() / 100.0;
                    let dimensions = VideoDimensions::parse(width, height, duration)
                        .map_err(|e| anyhow::anyhow!("dimensions: {e:?}"))?;
                    let id = v.id.to_string();
                    let request = VideoCommand::RequestUpload {
                        video_id: v.id,
                        owner_id: owner,
                        file_key: format!("videos/{}.{ext}", v.id),
                        content_type: content_type.to_owned(),
                        file_size,
                        caption,
                        draft_id: None,
                        at: time(v.requested),
                    };
                    videos.execute(&id, request, Some(owner)).await?;
                    let complete = VideoCommand::CompleteUpload {
                        actor: owner,
                        dimensions,
                        stored_size: Some(file_size),
                        at: time(v.published),
                    };
                    videos.execute(&id, complete, Some(owner)).await?;
                }
                videos.drain_into(&mut batch)?;
            }
            Kind::Follows => {
                let follows = Runner::<Follow>::new();
                for &(a, b, at) in &plan.follows[range] {
                    let (follower_id, followee_id) =
                        (plan.users[a as usize].id, plan.users[b as usize].id);
                    let command = FollowCommand::FollowUser {
                        follower_id,
                        followee_id,
                        at: time(at),
                    };
                    follows
                        .execute(
                            &Follow::id(follower_id, followee_id),
                            command,
                            Some(follower_id),
                        )
                        .await?;
                }
                follows.drain_into(&mut batch)?;
            }
            Kind::Likes => {
                let likes = Runner::<Like>::new();
                for &(u, v, at) in &plan.likes[range] {
                    let (user_id, video_id) =
                        (plan.users[u as usize].id, plan.videos[v as usize].id);
                    let command = LikeCommand::LikeVideo {
                        user_id,
                        video_id,
                        at: time(at),
                    };
                    likes
                        .execute(&Like::id(user_id, video_id), command, Some(user_id))
                        .await?;
                }
                likes.drain_into(&mut batch)?;
            }
            Kind::TopComments | Kind::Replies => {
                let comments = Runner::<Comment>::new();
                let list = if job.kind == Kind::Replies {
                    &plan.replies
                } else {
                    &plan.top
                };
                for &k in &list[range] {
                    let c = &plan.comments[k as usize];
                    let mut rng = self.rng(job.kind, k as usize);
                    let texts = if c.parent.is_some() {
                        REPLIES
                    } else {
                        COMMENTS
                    };
                    let body = CommentBody::parse("body", texts[rng.gen_range(0..texts.len())])
                        .map_err(field_error)?;
                    let author_id = plan.users[c.author as usize].id;
                    let command = CommentCommand::PostComment {
                        comment_id: c.id,
                        video_id: plan.videos[c.video as usize].id,
                        author_id,
                        parent_id: c.parent.map(|p| plan.comments[p as usize].id),
                        body,
                        at: time(c.at),
                    };
                    comments
                        .execute(&c.id.to_string(), command, Some(author_id))
                        .await?;
                }
                comments.drain_into(&mut batch)?;
            }
            Kind::Views => {
                let views = Runner::<VideoView>::new();
                for &(u, v, at) in &plan.views[range] {
                    let video = &plan.videos[v as usize];
                    let viewer_id = plan.users[u as usize].id;
                    let viewer = ViewerKey::user(viewer_id);
                    let id = VideoView::id(video.id, &viewer);
                    let command = VideoViewCommand::CountView {
                        video_id: video.id,
                        viewer,
                        viewer_is_owner: video.owner == u,
                        at: time(at),
                    };
                    // the API records views without metadata
                    views.execute(&id, command, None).await?;
                }
                views.drain_into(&mut batch)?;
            }
        }
        Ok(batch)
    }
}

// ------------------------------------------------------------------ writing

async fn copy_in(conn: &mut PgConnection, statement: &str, data: Vec<u8>) -> anyhow::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// One transaction: identities, events, snapshots.
async fn write_batch(pool: &PgPool, batch: Batch) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    copy_in(
        &mut tx,
        "COPY identities (user_id, username_key, email_key, password_hash, created_at) FROM STDIN",
        batch.identities,
    )
    .await?;
    copy_in(
        &mut tx,
        "COPY events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) FROM STDIN",
        batch.events,
    )
    .await?;
    copy_in(
        &mut tx,
        "COPY snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) FROM STDIN",
        batch.snapshots,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SeedArgs {
        SeedArgs {
            users: 50,
            videos: 200,
            likes: 500,
            follows: 100,
            comments: 300,
            views: 400,
            until: Some(DateTime::from_timestamp(1_790_000_000, 0).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn plans_are_deterministic_and_distinct() {
        let (a, b) = (
            Plan::new(&small(), small().until.unwrap()),
            Plan::new(&small(), small().until.unwrap()),
        );
        assert_eq!(a.videos.len(), 200);
        assert!(a
            .users
            .iter()
            .zip(&b.users)
            .all(|(x, y)| x.id == y.id && x.username == y.username));
        assert!(a.videos.iter().zip(&b.videos).all(|(x, y)| x.id == y.id));
        let likes: HashSet<(u32, u32)> = a.likes.iter().map(|l| (l.0, l.1)).collect();
        assert_eq!(likes.len(), a.likes.len());
        assert!(a.follows.iter().all(|f| f.0 != f.1));
        assert!(a.views.iter().all(|v| a.videos[v.1 as usize].owner != v.0));
        for &r in &a.replies {
            let c = &a.comments[r as usize];
            let p = &a.comments[c.parent.unwrap() as usize];
            assert!(p.parent.is_none() && p.video == c.video && p.at <= c.at);
        }
        assert_eq!(a.top.len() + a.replies.len(), a.comments.len());
    }

    #[test]
    fn copy_escaping() {
        let mut out = Vec::new();
        copy_field(&mut out, "a\\b\tc\nd");
        assert_eq!(out, b"a\\\\b\\tc\\nd");
    }

    #[test]
    fn videos_through_the_framework() {
        let gen = Generator {
            plan: Arc::new(Plan::new(&small(), small().until.unwrap())),
            seed: 1,
            password_hash: "x".into(),
        };
        let b = gen
            .generate(Job {
                kind: Kind::Videos,
                start: 0,
                end: 3,
            })
            .unwrap();
        assert_eq!((b.events_n, b.aggregates_n), (9, 3));
        let text = String::from_utf8(b.events).unwrap();
        let types: Vec<&str> = text
            .lines()
            .map(|l| l.split('\t').nth(3).unwrap())
            .collect();
        assert_eq!(
            &types[..3],
            &["UploadRequested", "UploadCompleted", "Published"]
        );
        // snapshot: last sequence 3 after two commits
        let snaps = String::from_utf8(b.snapshots).unwrap();
        for line in snaps.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!((cols[0], cols[2], cols[3]), ("Video", "3", "2"));
            assert!(cols[4].contains("\"status\":\"completed\""), "{line}");
        }
    }
}
