//! Extractors: JSON bodies read field by field (so a 422 lists every bad
//! field), bearer-token users, and the read-your-writes header.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use lokiz_domain::values::FieldError;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::jwt;
use crate::error::ApiError;
use crate::ApiContext;

/// A JSON object body. Syntax errors → 400, a non-JSON content type → 415,
/// JSON that is not an object → 422.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::BadRequest {
                code: "INVALID_BODY",
                message: "The request body could not be read.".into(),
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
            code: "INVALID_JSON",
            message: format!(
                "The body is not valid JSON (line {}, column {}).",
                e.line(),
                e.column()
            ),
        })?;
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::field(
                "body",
                "type",
                "the body must be a JSON object",
            )),
        }
    }
}

/// Reads fields out of a JSON object, collecting every problem.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Self {
        Self {
            obj,
            errors: Vec::new(),
        }
    }

    /// A required string.
    pub fn required_str(&mut self, name: &'static str) -> Option<&'a str> {
        match self.obj.get(name) {
            None | Some(Value::Null) => {
                self.errors
                    .push(FieldError::new(name, "required", "is required"));
                None
            }
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be a string"));
                None
            }
        }
    }

    /// An optional string; `null` counts as absent.
    pub fn optional_str(&mut self, name: &'static str) -> Option<&'a str> {
        match self.obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be a string"));
                None
            }
        }
    }

    /// A string that may be set (`Some(Some)`), cleared with `null`
    /// (`Some(None)`) or left out (`None`).
    pub fn nullable_str(&mut self, name: &'static str) -> Option<Option<&'a str>> {
        match self.obj.get(name) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.as_str())),
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be a string or null"));
                None
            }
        }
    }

    /// A required list of at most `max` UUIDs (duplicates collapse). Every
    /// malformed entry is named in the error.
    pub fn uuid_list(&mut self, name: &'static str, max: usize) -> Option<Vec<Uuid>> {
        let list = match self.obj.get(name) {
            None | Some(Value::Null) => {
                self.errors
                    .push(FieldError::new(name, "required", "is required"));
                return None;
            }
            Some(Value::Array(list)) => list,
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be an array of ids"));
                return None;
            }
        };
        if list.len() > max {
            self.errors.push(FieldError::new(
                name,
                "too_many",
                format!("at most {max} ids per request ({} sent)", list.len()),
            ));
            return None;
        }
        let mut ids = Vec::with_capacity(list.len());
        let mut bad = Vec::new();
        for (i, v) in list.iter().enumerate() {
            match v.as_str().and_then(parse_id) {
                Some(id) => {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                None => bad.push(format!("[{i}] {v}")),
            }
        }
        if !bad.is_empty() {
            self.errors.push(FieldError::new(
                name,
                "format",
                format!("not valid ids: {}", bad.join(", ")),
            ));
            return None;
        }
        Some(ids)
    }

    /// A required UUID.
    pub fn required_uuid(&mut self, name: &'static str) -> Option<Uuid> {
        let raw = self.required_str(name)?;
        match parse_id(raw).ok_or(()) {
            Ok(id) => Some(id),
            Err(_) => {
                self.errors
                    .push(FieldError::new(name, "format", "must be an id (UUID)"));
                None
            }
        }
    }

    /// An optional boolean (absent: `None`; anything but true or false,
    /// null included, is refused).
    pub fn optional_bool(&mut self, name: &'static str) -> Option<bool> {
        match self.obj.get(name) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be true or false"));
                None
            }
        }
    }

    /// An optional finite number; `null` counts as absent.
    pub fn optional_f64(&mut self, name: &'static str) -> Option<f64> {
        match self.obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64().filter(|v| v.is_finite()) {
                Some(v) => Some(v),
                None => {
                    self.errors
                        .push(FieldError::new(name, "type", "must be a number"));
                    None
                }
            },
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be a number"));
                None
            }
        }
    }

    /// A required finite number.
    pub fn required_f64(&mut self, name: &'static str) -> Option<f64> {
        if matches!(self.obj.get(name), None | Some(Value::Null)) {
            self.errors
                .push(FieldError::new(name, "required", "is required"));
            return None;
        }
        self.optional_f64(name)
    }

    /// A required list of 1..=`max` finite numbers.
    pub fn f64_list(&mut self, name: &'static str, max: usize) -> Option<Vec<f64>> {
        let list = match self.obj.get(name) {
            None | Some(Value::Null) => {
                self.errors
                    .push(FieldError::new(name, "required", "is required"));
                return None;
            }
            Some(Value::Array(list)) => list,
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "type", "must be an array of numbers"));
                return None;
            }
        };
        if list.is_empty() || list.len() > max {
            self.errors.push(FieldError::new(
                name,
                "length",
                format!("must have 1 to {max} entries ({} sent)", list.len()),
            ));
            return None;
        }
        let values: Option<Vec<f64>> = list
            .iter()
            .map(|v| v.as_f64().filter(|f| f.is_finite()))
            .collect();
        if values.is_none() {
            self.errors
                .push(FieldError::new(name, "type", "must be an array of numbers"));
        }
        values
    }

    /// Records a problem found by the caller.
    pub fn reject(&mut self, name: &'static str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, code, message));
    }

    /// An optional UUID.
    pub fn optional_uuid(&mut self, name: &'static str) -> Option<Uuid> {
        let raw = self.optional_str(name)?;
        match parse_id(raw).ok_or(()) {
            Ok(id) => Some(id),
            Err(_) => {
                self.errors
                    .push(FieldError::new(name, "format", "must be an id (UUID)"));
                None
            }
        }
    }

    /// Refuses a field that must not be sent.
    pub fn forbid(&mut self, name: &'static str, message: &'static str) {
        if self.obj.contains_key(name) {
            self.errors
                .push(FieldError::new(name, "read_only", message));
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.obj.contains_key(name)
    }

    /// Parses a value with a newtype's `parse`, recording its error.
    pub fn parse<T>(
        &mut self,
        name: &'static str,
        raw: Option<&str>,
        parse: impl FnOnce(&'static str, &str) -> Result<T, FieldError>,
    ) -> Option<T> {
        let raw = raw?;
        match parse(name, raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    /// `Err(422)` listing every problem, if there were any.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// The user a valid access token names.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: Uuid,
}

/// An optional bearer token: absent → `None`; present but bad → 401.
#[derive(Debug, Clone, Copy)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl FromRequestParts<ApiContext> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        match MaybeAuthUser::from_request_parts(parts, ctx).await? {
            MaybeAuthUser(Some(u)) => Ok(u),
            MaybeAuthUser(None) => Err(ApiError::Unauthorized {
                code: "UNAUTHENTICATED",
                message: "Sign in: send Authorization: Bearer <access_token>.",
            }),
        }
    }
}

impl FromRequestParts<ApiContext> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let verdict = parts
            .extensions
            .get::<Bearer>()
            .copied()
            .unwrap_or_else(|| bearer(ctx, &parts.headers));
        match verdict {
            Bearer::Absent => Ok(MaybeAuthUser(None)),
            Bearer::User(user_id) => {
                // a banned account's tokens stop working at once: the ban
                // answers only once the users read model has it
                if parts.extensions.get::<NotBanned>().is_none() {
                    if recently_banned(ctx, user_id).await? {
                        return Err(ApiError::Forbidden {
                            code: "USER_BANNED",
                            message: "This account is banned.",
                        });
                    }
                    parts.extensions.insert(NotBanned);
                }
                Ok(MaybeAuthUser(Some(AuthUser { user_id })))
            }
            Bearer::Invalid => Err(ApiError::Unauthorized {
                code: "INVALID_TOKEN",
                message: "The access token is invalid or expired.",
            }),
        }
    }
}

/// Marks a request whose user was found not banned (checked once).
#[derive(Debug, Clone, Copy)]
struct NotBanned;

/// How long a process trusts that a user was not banned before it asks the
/// `users` read model again. A ban answers only this long after the read
/// model has it (`routes/moderation.rs`), so by then no process trusts an
/// older "not banned" any more: the user's next request is refused
/// everywhere, and a user's burst of requests asks once.
pub const NOT_BANNED_FOR: Duration = Duration::from_secs(1);

/// Users a process found not banned, and when it asked (before the query,
/// so the answer is never trusted past [`NOT_BANNED_FOR`] after a ban the
/// query could have missed).
#[derive(Debug, Default)]
pub struct NotBannedCache(Mutex<HashMap<Uuid, Instant>>);

/// Users [`NotBannedCache`] holds at most: past this, expired ones are
/// dropped, and if none has expired, all of them.
const NOT_BANNED_KEPT: usize = 100_000;

impl NotBannedCache {
    fn trusts(&self, user_id: Uuid) -> bool {
        self.0.lock().is_ok_and(|known| {
            known
                .get(&user_id)
                .is_some_and(|asked| asked.elapsed() < NOT_BANNED_FOR)
        })
    }

    fn remember(&self, user_id: Uuid, asked: Instant) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= NOT_BANNED_KEPT {
                known.retain(|_, at| at.elapsed() < NOT_BANNED_FOR);
                if known.len() >= NOT_BANNED_KEPT {
                    known.clear();
                }
            }
            known.insert(user_id, asked);
        }
    }
}

/// Whether `user_id` is banned, as far as a request needs to know: the
/// read model, unless this process found them not banned within
/// [`NOT_BANNED_FOR`].
async fn recently_banned(ctx: &ApiContext, user_id: Uuid) -> Result<bool, ApiError> {
    if ctx.not_banned.trusts(user_id) {
        return Ok(false);
    }
    let asked = Instant::now();
    let is_banned = banned(ctx, user_id).await?;
    if !is_banned {
        ctx.not_banned.remember(user_id, asked);
    }
    Ok(is_banned)
}

/// Whether an admin banned `user_id` (the `users` read model).
pub async fn banned(ctx: &ApiContext, user_id: Uuid) -> Result<bool, ApiError> {
    let banned: Option<bool> = sqlx::query_scalar("SELECT banned FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&ctx.pool)
        .await?;
    Ok(banned.unwrap_or(false))
}

/// What a request's `Authorization` header says, decided once per request
/// (the rate-limit middleware stores it in the request's extensions; the
/// idempotency middleware and the extractors read it from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    Absent,
    /// A header that is not a valid access token of ours.
    Invalid,
    User(Uuid),
}

/// Verifies the `Authorization: Bearer <token>` header.
pub fn bearer(ctx: &ApiContext, headers: &axum::http::HeaderMap) -> Bearer {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Bearer::Absent;
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match token.map(|t| ctx.jwt.verify_access(t)) {
        Some(Ok(claims)) => Bearer::User(claims.sub),
        _ => Bearer::Invalid,
    }
}

/// A signed-in user whose role (in the `users` read model) is admin:
/// no token → 401, any other role → 403. Honours `X-Lokiz-Min-Position`
/// for the role (e.g. the position `lokiz users grant-admin` prints); a
/// route that reads other read models waits for them with `min`.
#[derive(Debug, Clone, Copy)]
pub struct AdminUser {
    pub user_id: Uuid,
    /// The request's `X-Lokiz-Min-Position`.
    pub min: Option<i64>,
}

impl FromRequestParts<ApiContext> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, ctx).await?;
        let MinPosition(min) = MinPosition::from_request_parts(parts, ctx).await?;
        ctx.wait_for(min, &["users"]).await?;
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(user.user_id)
            .fetch_optional(&ctx.pool)
            .await?;
        if role.as_deref() == Some(lokiz_domain::user::Role::Admin.as_str()) {
            Ok(AdminUser {
                user_id: user.user_id,
                min,
            })
        } else {
            Err(ApiError::Forbidden {
                code: "FORBIDDEN",
                message: "This needs the admin role.",
            })
        }
    }
}

pub const MIN_POSITION_HEADER: &str = "x-lokiz-min-position";
pub const POSITION_HEADER: &str = "x-lokiz-position";

/// `X-Lokiz-Min-Position`: the read waits until its read models reach it.
#[derive(Debug, Clone, Copy)]
pub struct MinPosition(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(MIN_POSITION_HEADER) {
            None => Ok(MinPosition(None)),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .map(|p| MinPosition(Some(p)))
                .ok_or(ApiError::BadRequest {
                    code: "INVALID_MIN_POSITION",
                    message: "X-Lokiz-Min-Position must be a non-negative integer.".into(),
                }),
        }
    }
}

/// Documents the header on the operations that honour it (`params(MinPosition)`).
impl utoipa::IntoParams for MinPosition {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::Required;
        vec![ParameterBuilder::new()
            .name("X-Lokiz-Min-Position")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Read your writes: wait (up to the consistency timeout, then 503 \
                 `CONSISTENCY_TIMEOUT`) until the read models reach this position, \
                 the `X-Lokiz-Position` a command answered with.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            ))
            .build()]
    }
}

/// Parses a path id, answering 404 for anything that is not a UUID (no
/// resource can have such an id).
pub fn path_uuid(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    parse_id(raw).ok_or(ApiError::NotFound { what })
}

pub use jwt::AccessClaims;

/// An id as the API writes and documents it: a hyphenated UUID (36
/// characters), not the other forms `Uuid::parse_str` also reads.
pub fn parse_id(raw: &str) -> Option<Uuid> {
    if raw.len() != 36 {
        return None;
    }
    Uuid::try_parse(raw).ok()
}
