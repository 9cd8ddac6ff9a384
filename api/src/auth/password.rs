//! argon2id password hashing, off the async runtime.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use lokiz_domain::values::Password;
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// A PHC-format hash of a password that never ran, so an unknown email costs
/// the same time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$U2iA1nEbUBKJ8Ye6WlmJQY6LPRyjwG+nQ+HkP5R9WlY";

/// Each argon2 run holds a 19 MiB working set and a core: more runs at once
/// than cores only adds memory, so they queue here.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

pub async fn hash(password: Password) -> anyhow::Result<String> {
    let _permit = permits().acquire().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))
    })
    .await?
}

/// True when `password` matches `stored`; with `stored = None` it still does
/// the work and answers false.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    let _permit = permits().acquire().await?;
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("argon2 parse: {e}"))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && ok)
    })
    .await?
}
