//! Authentication: access JWTs, argon2id passwords, rotating refresh tokens.

pub mod jwt;
pub mod password;
pub mod refresh;
