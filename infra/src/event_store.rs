//! The command side: cqrs-es frameworks over the postgres-es event store, and
//! the global position each command's events landed at (for read-your-writes).

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventUpcaster, PersistedEventStore, SerializedEvent};
use cqrs_es::EventStore as _;
use cqrs_es::{Aggregate, AggregateError};
use lokiz_domain::ai_job::AiJob;
use lokiz_domain::block::Block;
use lokiz_domain::bookmark::Bookmark;
use lokiz_domain::comment::Comment;
use lokiz_domain::draft::Draft;
use lokiz_domain::follow::Follow;
use lokiz_domain::image::Image;
use lokiz_domain::like::Like;
use lokiz_domain::notification_inbox::NotificationInbox;
use lokiz_domain::payment::Payment;
use lokiz_domain::report::Report;
use lokiz_domain::search_history::SearchHistory;
use lokiz_domain::share::Share;
use lokiz_domain::subscription::Subscription;
use lokiz_domain::upcast::{needs_upcast, upcast, EventRef};
use lokiz_domain::user::User;
use lokiz_domain::video::Video;
use lokiz_domain::video_view::VideoView;
use lokiz_domain::wallet::Wallet;

use crate::repository::{LokizEventRepository, LAST_POSITION};
use sqlx::PgPool;

use crate::stored_event::{StoredEvent, STORED_EVENT_COLUMNS};
use crate::wake::AppendSignal;

/// How often a command is re-run when another writer appended to the same
/// aggregate between our load and our insert.
const CONFLICT_RETRIES: usize = 5;

/// cqrs-es' hook for [`lokiz_domain::upcast`]: events replayed into an
/// aggregate (when it has no usable snapshot) are read at today's version.
struct DomainUpcaster {
    aggregate_type: &'static str,
}

impl DomainUpcaster {
    fn event_ref<'a>(&'a self, event_type: &'a str, event_version: &'a str) -> EventRef<'a> {
        EventRef {
            aggregate_type: self.aggregate_type,
            event_type,
            event_version,
        }
    }
}

impl EventUpcaster for DomainUpcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        needs_upcast(self.event_ref(event_type, event_version))
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        let payload = std::mem::take(&mut event.payload);
        let (version, payload) = upcast(
            self.event_ref(&event.event_type, &event.event_version),
            payload,
        );
        event.event_version = version;
        event.payload = payload;
        event
    }
}

/// Commands on one aggregate run one at a time within a process: a hot
/// aggregate (a wallet hit by 20 job requests at once) then costs a short wait
/// per command instead of rounds of optimistic-lock conflicts and retries.
/// Commands are striped over a fixed set of locks by aggregate id; processes
/// still race, and that race is settled by the optimistic lock.
const STRIPES: usize = 256;

struct Stripes(Vec<tokio::sync::Mutex<()>>);

impl Stripes {
    fn new() -> Self {
        Self((0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    fn of(&self, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        &self.0[(h.finish() as usize) % self.0.len()]
    }
}

/// One aggregate's command bus.
pub struct Commands<A: Aggregate> {
    stripes: Stripes,
    signal: AppendSignal,
    store: PersistedEventStore<LokizEventRepository, A>,
    pool: PgPool,
}

/// What a successful command reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The command recorded at least one event.
    pub appended: bool,
    /// Global position of the aggregate's latest event after the command (the
    /// command's own last event when it recorded any). `None` only for an
    /// aggregate that still has no events.
    pub position: Option<i64>,
}

impl<A> Commands<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone,
{
    pub fn new(pool: PgPool, signal: AppendSignal) -> Self {
        Self {
            stripes: Stripes::new(),
            signal,
            // Aggregate store: each append also writes the aggregate's state,
            // so a load is one snapshot read (events are replayed when there
            // is no snapshot or it no longer deserializes).
            store: PersistedEventStore::new_aggregate_store(LokizEventRepository::new(
                pool.clone(),
            ))
            .with_upcasters(vec![Box::new(DomainUpcaster {
                aggregate_type: A::TYPE,
            })]),
            pool,
        }
    }

    /// Runs `command` against aggregate `id`. Optimistic-lock conflicts are
    /// retried (the aggregate is reloaded and the command decided again).
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<Written, AggregateError<A::Error>> {
        let _turn = self.stripes.of(id).lock().await;
        let mut attempt = 0;
        let appended = loop {
            let run = decide_and_append(&self.store, id, command.clone(), metadata.clone());
            let (result, appended) = LAST_POSITION
                .scope(std::cell::Cell::new(None), async {
                    let r = run.await;
                    (r, LAST_POSITION.with(|c| c.get()))
                })
                .await;
            match result {
                Ok(()) => break appended,
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e),
            }
        };
        if appended.is_some() {
            self.signal.appended();
            return Ok(Written {
                appended: true,
                position: appended,
            });
        }
        // The command recorded nothing: report the aggregate's newest event.
        let position: Option<i64> = sqlx::query_scalar(
            // newest first along the primary key: one index probe however long the history
            "SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| AggregateError::DatabaseConnectionError(Box::new(e)))?;
        Ok(Written {
            appended: false,
            position,
        })
    }
}

/// Load, decide, append — cqrs-es' `CqrsFramework::execute` with two
/// corrections. (1) cqrs-es 0.5 applies each new event twice to the state it
/// snapshots (once through `EventSink::write` during `handle`, again while
/// building the snapshot); harmless for flags, wrong for counters such as a
/// wallet's balance. Here `handle` runs on a copy, so the snapshot applies
/// each event once. (2) With no snapshot, the aggregate store would start
/// from the default state; here the events are replayed (upcast) instead.
/// The seeder runs its commands through this too.
pub async fn decide_and_append<R, A>(
    store: &PersistedEventStore<R, A>,
    id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
) -> Result<(), AggregateError<A::Error>>
where
    R: cqrs_es::persist::PersistedEventRepository,
    A: Aggregate<Services = ()> + Clone,
{
    let mut context = store.load_aggregate(id).await?;
    if context.current_snapshot.is_none() && context.current_sequence == 0 {
        for envelope in store.load_events(id).await? {
            context.current_sequence = envelope.sequence;
            context.aggregate.apply(envelope.payload);
        }
    }
    let mut working = context.aggregate.clone();
    let sink = EventSink::default();
    working
        .handle(command, &(), &sink)
        .await
        .map_err(AggregateError::UserError)?;
    let events = sink.collect().await;
    if events.is_empty() {
        return Ok(());
    }
    store.commit(events, context, metadata).await?;
    Ok(())
}

/// Every aggregate's command bus, built once per process.
pub struct EventStore {
    pub pool: PgPool,
    pub users: Commands<User>,
    pub wallets: Commands<Wallet>,
    pub videos: Commands<Video>,
    pub views: Commands<VideoView>,
    pub likes: Commands<Like>,
    pub follows: Commands<Follow>,
    pub comments: Commands<Comment>,
    pub ai_jobs: Commands<AiJob>,
    pub payments: Commands<Payment>,
    pub bookmarks: Commands<Bookmark>,
    pub reports: Commands<Report>,
    pub blocks: Commands<Block>,
    pub inboxes: Commands<NotificationInbox>,
    pub shares: Commands<Share>,
    pub searches: Commands<SearchHistory>,
    pub subscriptions: Commands<Subscription>,
    pub drafts: Commands<Draft>,
    pub images: Commands<Image>,
}

impl EventStore {
    /// Must be called inside a Tokio runtime (it starts the relay notifier).
    pub fn new(pool: PgPool) -> Self {
        let signal = AppendSignal::spawn(pool.clone());
        Self {
            users: Commands::new(pool.clone(), signal.clone()),
            wallets: Commands::new(pool.clone(), signal.clone()),
            videos: Commands::new(pool.clone(), signal.clone()),
            views: Commands::new(pool.clone(), signal.clone()),
            likes: Commands::new(pool.clone(), signal.clone()),
            follows: Commands::new(pool.clone(), signal.clone()),
            comments: Commands::new(pool.clone(), signal.clone()),
            ai_jobs: Commands::new(pool.clone(), signal.clone()),
            payments: Commands::new(pool.clone(), signal.clone()),
            bookmarks: Commands::new(pool.clone(), signal.clone()),
            reports: Commands::new(pool.clone(), signal.clone()),
            blocks: Commands::new(pool.clone(), signal.clone()),
            inboxes: Commands::new(pool.clone(), signal.clone()),
            shares: Commands::new(pool.clone(), signal.clone()),
            searches: Commands::new(pool.clone(), signal.clone()),
            subscriptions: Commands::new(pool.clone(), signal.clone()),
            drafts: Commands::new(pool.clone(), signal.clone()),
            images: Commands::new(pool.clone(), signal),
            pool,
        }
    }

    /// The highest position in the store (0 when empty).
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        head(&self.pool).await
    }
}

pub async fn head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(pool)
        .await
}

/// One aggregate's full history, in sequence order.
pub async fn history(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(pool)
    .await
}
