//! AI jobs outside the domain: media processing with ffmpeg (`media`), the
//! bundled presets (`presets`), the provider seam (`provider`: local ffmpeg,
//! `replicate` for a Replicate-compatible API), and the two process managers
//! that act on AiJob events: the worker (`worker`) and the credits saga
//! (`credits`).

pub mod credits;
pub mod media;
pub mod presets;
pub mod provider;
pub mod replicate;
pub mod worker;
