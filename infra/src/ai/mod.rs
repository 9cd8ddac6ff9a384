//! AI jobs outside the domain: media processing with ffmpeg (`media`), the
//! bundled presets (`presets`), the provider seam (`provider`: local ffmpeg;
//! `remote`: a Replicate-compatible API through the `replicate` client), and the two process managers
//! that act on AiJob events: the worker (`worker`) and the credits saga
//! (`credits`); and the reservation sweeper (`sweeper`), which releases what
//! a job request reserved when the job was never recorded.

pub mod credits;
pub mod media;
pub mod outbound;
pub mod presets;
pub mod provider;
pub mod remote;
pub mod replicate;
pub mod sweeper;
pub mod worker;
