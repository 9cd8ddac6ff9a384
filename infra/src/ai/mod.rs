//! AI jobs outside the domain: media processing with ffmpeg (`media`), the
//! bundled presets (`presets`) and a client for a Replicate-compatible API
//! (`replicate`).

pub mod media;
pub mod presets;
pub mod replicate;
