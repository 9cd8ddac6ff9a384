//! [`ReplicateProvider`]: AI jobs on a Replicate-compatible HTTP API.
//!
//! A job becomes a prediction (the model version configured for its kind,
//! the source video's URL and the job's parameters as input, our callback URL
//! as webhook). The provider then polls the prediction — at once whenever a
//! verified webhook for it arrives (`POST /v1/ai/callbacks/replicate`
//! publishes a wake-up on NATS), otherwise every few seconds — reporting the
//! progress the model logs, and downloads the output when it succeeds. A
//! cancel cancels the prediction. Frame captures need no model: they run
//! locally with ffmpeg.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lokiz_domain::ai_job::{JobKind, JobParams};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::media;
use super::outbound::OutputPolicy;
use super::presets;
use super::provider::{JobInput, JobOutput, LocalProvider, Provider, ProviderError};
use super::replicate::{CreatePrediction, PredictionStatus, ReplicateClient, ReplicateError};

/// Largest output downloaded.
const MAX_OUTPUT_BYTES: u64 = 512 * 1024 * 1024;

pub struct ReplicateProvider {
    client: ReplicateClient,
    versions: BTreeMap<String, String>,
    /// `{public}/v1/ai/callbacks/replicate`; none: poll only.
    webhook_url: Option<String>,
    nats: async_nats::Client,
    /// `{subject prefix}.callbacks.replicate`
    wake_subject: String,
    poll_every: Duration,
    /// Downloads outputs, under `outputs`' rules.
    http: reqwest::Client,
    outputs: OutputPolicy,
}

impl ReplicateProvider {
    pub fn new(
        client: ReplicateClient,
        versions: BTreeMap<String, String>,
        webhook_url: Option<String>,
        nats: async_nats::Client,
        stream: &str,
        poll_every: Duration,
        outputs: OutputPolicy,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            client,
            versions,
            webhook_url,
            nats,
            wake_subject: wake_subject(stream),
            poll_every,
            http: outputs
                .client(Duration::from_secs(300))
                .map_err(|e| ProviderError::Failed(e.to_string()))?,
            outputs,
        })
    }

    /// The prediction's input for a job.
    fn input(params: &JobParams, source_url: &str) -> serde_json::Value {
        let bundled = presets::bundled();
        match params {
            JobParams::CaptureFrame { at_secs } => json!({"video": source_url, "time": at_secs}),
            JobParams::Template {
                at_secs,
                duration_secs,
                prompt,
            } => json!({"video": source_url, "frame_time": at_secs,
                        "duration": duration_secs, "prompt": prompt}),
            JobParams::GlitchAnimate {
                start_secs,
                end_secs,
                preset,
            }
            | JobParams::GlitchReplace {
                start_secs,
                end_secs,
                preset,
            } => json!({"video": source_url, "start": start_secs, "end": end_secs,
                        "preset": preset,
                        "prompt": bundled.glitch(preset).map(|p| p.description.clone())}),
            JobParams::Music {
                start_secs,
                end_secs,
                preset,
            } => {
                let p = bundled.music(preset);
                json!({"video": source_url, "start": start_secs, "end": end_secs,
                       "prompt": p.map(|p| p.description.clone()), "bpm": p.map(|p| p.bpm)})
            }
        }
    }

    async fn download(&self, url: &str, dest: &std::path::Path) -> Result<(), ProviderError> {
        let parsed = url::Url::parse(url)
            .map_err(|_| ProviderError::Failed("the output URL does not parse".into()))?;
        self.outputs
            .check(&parsed)
            .map_err(|why| ProviderError::Failed(format!("output URL refused: {why}")))?;
        let failed = |e: reqwest::Error| {
            ProviderError::Failed(format!("output download: {}", e.without_url()))
        };
        let mut resp = self
            .http
            .get(parsed)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(failed)?;
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| ProviderError::Failed(e.to_string()))?;
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            size += chunk.len() as u64;
            if size > MAX_OUTPUT_BYTES {
                return Err(ProviderError::Failed("output too large".into()));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ProviderError::Failed(e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| ProviderError::Failed(e.to_string()))
    }
}

/// The NATS subject verified webhooks are announced on (`.<prediction id>`).
/// Core-NATS subject of prediction wake-ups. Outside `<stream>.events.>`:
/// the events stream must hold only what the relay publishes (it checks the
/// stream's last sequence on every publish).
pub fn wake_subject(stream: &str) -> String {
    format!("{stream}.wake.replicate")
}

fn remote_error(e: ReplicateError) -> ProviderError {
    ProviderError::Failed(format!("replicate: {e}"))
}

#[async_trait]
impl Provider for ReplicateProvider {
    fn name(&self) -> &'static str {
        "replicate"
    }

    async fn run(
        &self,
        input: JobInput<'_>,
        progress: &mut (dyn FnMut(u8) + Send),
        cancel: &CancellationToken,
    ) -> Result<JobOutput, ProviderError> {
        let kind = input.params.kind();
        if kind == JobKind::CaptureFrame {
            return LocalProvider.run(input, progress, cancel).await;
        }
        let version = self.versions.get(kind.as_str()).ok_or_else(|| {
            ProviderError::Failed(format!("no model version configured for {}", kind.as_str()))
        })?;
        let prediction = self
            .client
            .create_prediction(&CreatePrediction {
                version: version.clone(),
                input: Self::input(input.params, input.source_url),
                webhook: self
                    .webhook_url
                    .as_ref()
                    .map(|u| format!("{u}?job_id={}", input.job_id)),
                webhook_events_filter: vec![
                    "start".into(),
                    "output".into(),
                    "logs".into(),
                    "completed".into(),
                ],
            })
            .await
            .map_err(remote_error)?;
        let id = prediction.id.clone();
        tracing::info!(job_id = %input.job_id, prediction = %id, "replicate prediction created");
        let mut wakes = self
            .nats
            .subscribe(format!("{}.{id}", self.wake_subject))
            .await
            .map_err(|e| ProviderError::Failed(format!("nats: {e}")))?;
        let mut current = prediction;
        loop {
            if let Some(p) = current.progress_percent() {
                progress(p.min(99));
            }
            match current.status {
                PredictionStatus::Succeeded => break,
                PredictionStatus::Failed | PredictionStatus::Aborted => {
                    return Err(ProviderError::Failed(
                        current
                            .error_message()
                            .unwrap_or_else(|| "the prediction failed".into()),
                    ))
                }
                PredictionStatus::Canceled => return Err(ProviderError::Canceled),
                PredictionStatus::Starting | PredictionStatus::Processing => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    if let Err(e) = self.client.cancel_prediction(&id).await {
                        tracing::warn!(prediction = %id, error = %e, "prediction not canceled");
                    }
                    return Err(ProviderError::Canceled);
                }
                _ = wakes.next() => {}
                _ = tokio::time::sleep(self.poll_every) => {}
            }
            current = self
                .client
                .get_prediction(&id)
                .await
                .map_err(remote_error)?;
        }
        let url = match &current.output {
            Some(serde_json::Value::String(u)) => u.clone(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .find_map(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| ProviderError::Failed("the prediction has no output URL".into()))?,
            _ => {
                return Err(ProviderError::Failed(
                    "the prediction has no output URL".into(),
                ))
            }
        };
        let path = input.work_dir.join("result.mp4");
        self.download(&url, &path).await?;
        let info = media::probe(&path)
            .await
            .map_err(|e| ProviderError::Failed(format!("the output is not a video: {e}")))?;
        progress(100);
        Ok(JobOutput {
            path,
            content_type: "video/mp4",
            info,
        })
    }
}
