//! The AI provider seam: one trait, the worker calls it for every job.
//!
//! [`LocalProvider`] (the default) makes every output on this machine with
//! ffmpeg ([`super::media`]), using the bundled presets
//! ([`super::presets`]); progress is ffmpeg's own.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use lokiz_domain::ai_job::JobParams;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::media::{self, MediaError, MediaInfo, Render};
use super::presets;

/// What a provider is asked to do.
pub struct JobInput<'a> {
    pub job_id: Uuid,
    pub params: &'a JobParams,
    /// The source video, as a local file.
    pub source: &'a Path,
    /// The same video's URL in the blob store (for remote providers).
    pub source_url: &'a str,
    /// A directory of the job's own for outputs and scratch files.
    pub work_dir: &'a Path,
}

/// A finished output: a local file for the worker to store.
#[derive(Debug)]
pub struct JobOutput {
    pub path: PathBuf,
    pub content_type: &'static str,
    pub info: MediaInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("canceled")]
    Canceled,
    /// The request cannot be done with this source (bad range, unknown
    /// preset, unreadable video): failing again would not help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("provider failed: {0}")]
    Failed(String),
}

impl From<MediaError> for ProviderError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Canceled => ProviderError::Canceled,
            MediaError::InvalidRange { .. }
            | MediaError::WrongPresetKind { .. }
            | MediaError::Probe(_) => ProviderError::InvalidInput(e.to_string()),
            other => ProviderError::Failed(other.to_string()),
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;

    /// Runs the job to its output, reporting progress (0–100) as it goes.
    /// When `cancel` fires it stops promptly, leaves no process behind and
    /// returns [`ProviderError::Canceled`].
    async fn run(
        &self,
        input: JobInput<'_>,
        progress: &mut (dyn FnMut(u8) + Send),
        cancel: &CancellationToken,
    ) -> Result<JobOutput, ProviderError>;
}

/// ffmpeg on this machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalProvider;

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn run(
        &self,
        input: JobInput<'_>,
        progress: &mut (dyn FnMut(u8) + Send),
        cancel: &CancellationToken,
    ) -> Result<JobOutput, ProviderError> {
        let presets = presets::bundled();
        let glitch = |id: &str| {
            presets
                .glitch(id)
                .ok_or_else(|| ProviderError::InvalidInput(format!("unknown glitch preset {id:?}")))
        };
        let (render, file, content_type) = match input.params {
            JobParams::CaptureFrame { at_secs } => (
                Render::CaptureFrame { at_secs: *at_secs },
                "frame.jpg",
                "image/jpeg",
            ),
            JobParams::Template {
                at_secs,
                duration_secs,
                ..
            } => (
                Render::Template {
                    at_secs: *at_secs,
                    duration_secs: *duration_secs,
                },
                "result.mp4",
                "video/mp4",
            ),
            JobParams::GlitchAnimate {
                start_secs,
                end_secs,
                preset,
            } => (
                Render::GlitchAnimate {
                    start_secs: *start_secs,
                    end_secs: *end_secs,
                    preset: glitch(preset)?,
                },
                "result.mp4",
                "video/mp4",
            ),
            JobParams::GlitchReplace {
                start_secs,
                end_secs,
                preset,
            } => (
                Render::GlitchReplace {
                    start_secs: *start_secs,
                    end_secs: *end_secs,
                    preset: glitch(preset)?,
                },
                "result.mp4",
                "video/mp4",
            ),
            JobParams::Music {
                start_secs,
                end_secs,
                preset,
            } => (
                Render::Music {
                    start_secs: *start_secs,
                    end_secs: *end_secs,
                    preset: presets.music(preset).ok_or_else(|| {
                        ProviderError::InvalidInput(format!("unknown music preset {preset:?}"))
                    })?,
                },
                "result.mp4",
                "video/mp4",
            ),
        };
        let output = input.work_dir.join(file);
        media::render(input.source, &output, &render, progress, cancel).await?;
        let info = media::probe(&output).await?;
        Ok(JobOutput {
            path: output,
            content_type,
            info,
        })
    }
}
