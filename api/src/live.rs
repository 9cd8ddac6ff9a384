//! Live notifications: `GET /v1/notifications/ws`.
//!
//! **Where the news comes from.** The notifications projection publishes a
//! wake-up per recipient after each commit (core NATS,
//! `<stream>.wake.notifications.<user id>`), from whichever process runs it.
//! Every API process subscribes ([`run_wakeups`]) and pokes the sockets it
//! holds for that user; each socket then reads the read model for what
//! changed after the last notification it sent. The wake-up carries nothing,
//! so a lost or repeated one changes nothing but timing: every heartbeat also
//! looks, and a reconnect with `since` (the last notification's `cursor`)
//! gets what a closed socket missed.
//!
//! **Sign-in** is an `Authorization: Bearer` header on the upgrade request
//! or, for browsers (which cannot set it), a first message
//! `{"type":"auth","token":"…"}` within 10 seconds. A token in the URL is
//! refused: URLs end up in logs.
//!
//! **Bounds.** Sockets per process and per user are capped
//! (`LOKIZ_WS_MAX_SOCKETS`, `LOKIZ_WS_MAX_PER_USER`); each socket has a
//! queue of `LOKIZ_WS_SEND_QUEUE` messages, and a client that lets it fill
//! is disconnected rather than buffered for (it resumes with `since`). One
//! look sends at most 100 notifications; the rest follow on the next.
//!
//! Messages sent: `{"type":"notification","notification":{…}}` (the REST
//! list's shape; a coalesced like comes again, same id, when it grows),
//! `{"type":"unread_count","unread_count":n}` (when it changes) and
//! `{"type":"heartbeat"}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use lokiz_infra::config::LiveConfig;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{banned, MaybeAuthUser};
use crate::pagination::{decode_cursor, Params};
use crate::routes::notifications::{
    changed_since, count_unread, latest_cursor, NotificationCursor,
};
use crate::ApiContext;

/// The most notifications one look sends.
const BATCH: i64 = 100;
/// How long a socket without a header token waits for the auth message.
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// A user's sockets here: id and wake-up channel of each.
type UserSockets = Vec<(u64, mpsc::Sender<()>)>;

/// The sockets this process holds, by user: each with a wake-up channel.
pub struct LiveHub {
    sockets: Mutex<HashMap<Uuid, UserSockets>>,
    next_id: AtomicU64,
    config: LiveConfig,
    /// Cancelled when the server stops: every socket closes.
    closing: CancellationToken,
}

/// A socket's place in the hub; dropping it leaves.
struct Registration {
    hub: Arc<LiveHub>,
    user: Uuid,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut sockets) = self.hub.sockets.lock() {
            if let Some(list) = sockets.get_mut(&self.user) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    sockets.remove(&self.user);
                }
            }
        }
        metrics::gauge!("lokiz_live_sockets").decrement(1.0);
    }
}

impl LiveHub {
    pub fn new(config: LiveConfig) -> Arc<Self> {
        Arc::new(Self {
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            config,
            closing: CancellationToken::new(),
        })
    }

    /// Closes every socket (the server is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }

    fn register(
        self: &Arc<Self>,
        user: Uuid,
    ) -> Result<(Registration, mpsc::Receiver<()>), ApiError> {
        let refused = ApiError::TooManyRequests {
            code: "RATE_LIMIT_EXCEEDED",
            message: "Too many live sockets are open.",
            retry_after: 5,
        };
        let Ok(mut sockets) = self.sockets.lock() else {
            return Err(ApiError::Unavailable("live sockets"));
        };
        let total: usize = sockets.values().map(Vec::len).sum();
        let mine = sockets.get(&user).map_or(0, Vec::len);
        if total >= self.config.max_sockets || mine >= self.config.max_per_user {
            return Err(refused);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // one pending wake-up is enough: the socket reads all that changed
        let (tx, rx) = mpsc::channel(1);
        sockets.entry(user).or_default().push((id, tx));
        metrics::gauge!("lokiz_live_sockets").increment(1.0);
        let registration = Registration {
            hub: self.clone(),
            user,
            id,
        };
        Ok((registration, rx))
    }

    /// Pokes every socket `user` has here.
    pub fn wake(&self, user: Uuid) {
        if let Ok(sockets) = self.sockets.lock() {
            for (_, tx) in sockets.get(&user).into_iter().flatten() {
                let _ = tx.try_send(());
            }
        }
    }
}

/// Feeds the hub from the projection's wake-ups until `shutdown`
/// (reconnects and resubscriptions are the NATS client's).
pub async fn run_wakeups(
    hub: Arc<LiveHub>,
    nats: async_nats::Client,
    prefix: String,
    shutdown: CancellationToken,
) {
    let subject = format!("{prefix}.notifications.*");
    loop {
        let mut sub = match nats.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "live: cannot subscribe to wake-ups; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = sub.next() => m,
            };
            let Some(msg) = msg else { break };
            let user = msg
                .subject
                .rsplit('.')
                .next()
                .and_then(|id| Uuid::parse_str(id).ok());
            if let Some(user) = user {
                hub.wake(user);
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/notifications/ws", tag = "notifications", security(("bearer" = []), ()),
    params(("since" = Option<String>, Query, description = "Resume after this notification (its `cursor`): what changed since is sent first. Absent: only what happens from now on.")),
    responses((status = 101, description = "Switching to the WebSocket protocol (see the module's messages: `notification`, `unread_count`, `heartbeat`; sign in with the header or a first `{\"type\":\"auth\",\"token\":…}` message)"),
              (status = 400, description = "`WEBSOCKET_REQUIRED`: not a WebSocket upgrade request", body = crate::error::ErrorEnvelope),
              (status = 422, description = "a token in the URL, or a `since` this server did not issue", body = crate::error::ErrorEnvelope)))]
pub async fn socket(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    params: Params,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    for secret in ["token", "access_token"] {
        if params.get(secret).is_some() {
            errors.push(lokiz_domain::values::FieldError::new(
                "token",
                "in_url",
                "send the token in the Authorization header or the first message, never in the URL",
            ));
        }
    }
    let since = match params.get("since").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => {
            let decoded = decode_cursor::<NotificationCursor>(raw);
            if decoded.is_none() {
                errors.push(lokiz_domain::values::FieldError::new(
                    "since",
                    "format",
                    "is not a cursor this server issued",
                ));
            }
            decoded
        }
    };
    crate::pagination::check(errors)?;
    let upgrade = upgrade.map_err(|_| ApiError::BadRequest {
        code: "WEBSOCKET_REQUIRED",
        message: "This endpoint speaks WebSocket: send an upgrade request.".into(),
    })?;
    // a header-signed socket is counted before the upgrade (a full hub
    // answers 429); a browser's is counted once it signs in
    let registered = match user {
        Some(u) => Some((u.user_id, ctx.live.register(u.user_id)?)),
        None => None,
    };
    let limit = ctx.config.live.send_queue;
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |ws| async move {
            let (mut sink, mut stream) = ws.split();
            // the bounded queue between this socket's logic and its writer
            let (out, mut queue) = mpsc::channel::<Message>(limit);
            let writer = tokio::spawn(async move {
                while let Some(m) = queue.recv().await {
                    let close = matches!(m, Message::Close(_));
                    if sink.send(m).await.is_err() || close {
                        break;
                    }
                }
                let _ = sink.close().await;
            });
            let registered = match registered {
                Some(r) => Some(r),
                None => sign_in(&ctx, &mut stream, &out).await,
            };
            if let Some((user, (registration, wake))) = registered {
                serve(&ctx, user, since, &mut stream, &out, wake).await;
                drop(registration);
            }
            drop(out);
            let _ = writer.await;
        })
        .into_response())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// The first message of a socket without a header token: `{"type":"auth",
/// "token":…}`. Anything else, or nothing in time, closes the socket.
async fn sign_in(
    ctx: &ApiContext,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    out: &mpsc::Sender<Message>,
) -> Option<(Uuid, (Registration, mpsc::Receiver<()>))> {
    let first = tokio::select! {
        _ = ctx.live.closing.cancelled() => return None,
        f = tokio::time::timeout(AUTH_WAIT, stream.next()) => f,
    };
    let token = match first {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .filter(|v| v["type"] == "auth")
            .and_then(|v| v["token"].as_str().map(str::to_owned)),
        _ => None,
    };
    let user = token.and_then(|t| ctx.jwt.verify_access(&t).ok().map(|c| c.sub));
    let Some(user) = user else {
        let _ = out.try_send(close(
            1008,
            "sign in first: {\"type\":\"auth\",\"token\":…}",
        ));
        return None;
    };
    match banned(ctx, user).await {
        Ok(false) => {}
        _ => {
            let _ = out.try_send(close(1008, "this account cannot sign in"));
            return None;
        }
    }
    match ctx.live.register(user) {
        Ok(r) => Some((user, r)),
        Err(_) => {
            let _ = out.try_send(close(1013, "too many live sockets"));
            None
        }
    }
}

/// Why a socket stops.
enum Stop {
    /// The client left, or the connection broke.
    Gone,
    /// The client does not keep up with its queue.
    TooSlow,
    /// The database failed; the client should reconnect with `since`.
    Failed,
    /// The server is stopping.
    Closing,
}

/// Queues `m`, or says the client is too slow.
fn push(out: &mpsc::Sender<Message>, m: serde_json::Value) -> Result<(), Stop> {
    match out.try_send(Message::Text(m.to_string().into())) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(Stop::TooSlow),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Gone),
    }
}

async fn serve(
    ctx: &ApiContext,
    user: Uuid,
    since: Option<NotificationCursor>,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    out: &mpsc::Sender<Message>,
    mut wake: mpsc::Receiver<()>,
) {
    let mut heartbeat = tokio::time::interval(ctx.config.live.heartbeat);
    heartbeat.reset();
    let mut state = Sent {
        cursor: since,
        unread: None,
    };
    let mut look = true;
    let stop = loop {
        if look {
            match state.send_news(ctx, user, out).await {
                Ok(more) => look = more,
                Err(stop) => break stop,
            }
        }
        tokio::select! {
            m = stream.next() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break Stop::Gone,
                // pings are answered by the library; other messages mean nothing
                Some(Ok(_)) => {}
            },
            w = wake.recv() => match w {
                Some(()) => look = true,
                None => break Stop::Gone,
            },
            _ = ctx.live.closing.cancelled() => break Stop::Closing,
            _ = heartbeat.tick() => {
                if let Err(stop) = push(out, json!({"type": "heartbeat"})) {
                    break stop;
                }
                look = true;
            }
        }
    };
    match stop {
        Stop::Gone => {}
        Stop::TooSlow => {
            metrics::counter!("lokiz_live_dropped_total", "reason" => "slow").increment(1);
            // the queue is full: the close frame goes when the writer gets to it,
            // or never, if the client never reads
            let _ = out.try_send(close(1008, "too slow: reconnect with since"));
        }
        Stop::Closing => {
            let _ = out.try_send(close(1001, "server stopping: reconnect with since"));
        }
        Stop::Failed => {
            metrics::counter!("lokiz_live_dropped_total", "reason" => "error").increment(1);
            let _ = out.try_send(close(1011, "try again: reconnect with since"));
        }
    }
}

/// What a socket has sent so far.
struct Sent {
    /// The last notification change sent (`None`: nothing yet; the first
    /// look starts from the newest one, sending only the count).
    cursor: Option<NotificationCursor>,
    unread: Option<i64>,
}

impl Sent {
    /// Sends what changed since the last look; `Ok(true)` when there is more.
    async fn send_news(
        &mut self,
        ctx: &ApiContext,
        user: Uuid,
        out: &mpsc::Sender<Message>,
    ) -> Result<bool, Stop> {
        let cursor = match self.cursor {
            Some(c) => c,
            None => latest_cursor(ctx, user).await.map_err(|_| Stop::Failed)?,
        };
        let rows = changed_since(ctx, user, cursor, BATCH)
            .await
            .map_err(|_| Stop::Failed)?;
        let more = rows.len() as i64 == BATCH;
        let mut cursor = cursor;
        for row in rows {
            cursor = row.cursor();
            let view = row.into_view();
            push(out, json!({"type": "notification", "notification": view}))?;
        }
        self.cursor = Some(cursor);
        let unread = count_unread(ctx, user).await.map_err(|_| Stop::Failed)?;
        if self.unread != Some(unread) {
            push(out, json!({"type": "unread_count", "unread_count": unread}))?;
            self.unread = Some(unread);
        }
        Ok(more)
    }
}
