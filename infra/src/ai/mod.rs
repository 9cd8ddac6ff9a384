//! Local AI effects for the job worker: FFmpeg-based rendering of frame
//! captures, animated templates, glitch effects and generated music, driven by
//! the bundled presets.

pub mod media;
pub mod presets;
