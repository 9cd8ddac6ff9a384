//! FFmpeg-backed media operations: probe, render (frame capture, animated
//! template, glitch, music), thumbnails and previews.
//!
//! Every operation runs `ffmpeg`/`ffprobe` as a child process with its
//! arguments passed directly (no shell). Renders report real progress from
//! `-progress pipe:1`, can be canceled (the child is killed and the partial
//! output removed) and never leave a process behind when their future is
//! dropped (`kill_on_drop`), nor when the worker process itself dies, even
//! by SIGKILL (the children ask the kernel for a parent-death signal).
//!
//! Inputs are untrusted uploads: they are opened through the `file:` protocol
//! only and with a whitelist of container demuxers, so a playlist or concat
//! file cannot make FFmpeg read other files or the network.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::presets::{GlitchKind, GlitchPreset, MusicPreset};

/// How far past the probed duration a range may end (container rounding).
const RANGE_TOLERANCE_SECS: f64 = 0.1;
/// Longest glitch segment.
const MAX_GLITCH_SECS: f64 = 10.0;
/// Shortest and longest animated template.
const TEMPLATE_SECS: (f64, f64) = (1.0, 10.0);
/// Frame captures near the end seek at most this close to it, so a frame
/// is still there to decode.
const LAST_FRAME_MARGIN_SECS: f64 = 0.25;
/// Outputs are scaled down (never up) so their longer side fits this.
const MAX_LONG_SIDE: u32 = 1920;
/// Frame rate of generated video (templates, replace backgrounds).
const GENERATED_FPS: u32 = 25;
/// How much of FFmpeg's stderr is kept for error reports.
const STDERR_TAIL_BYTES: usize = 4096;
/// Threads for decoding, filtering and encoding (the workers have 2 cores).
const THREADS: &str = "2";
/// Demuxers allowed for inputs: common upload containers and still images.
const INPUT_FORMATS: &str = "mov,matroska,avi,flv,mpegts,mpeg,ogg,wav,mp3,aac,flac,\
                             image2,jpeg_pipe,png_pipe,webp_pipe,gif";

/// What [`probe`] found. Sizes are display sizes: rotation and non-square
/// pixels are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaInfo {
    pub duration_secs: f64,
    pub width: u32,
    pub height: u32,
    pub has_video: bool,
    pub has_audio: bool,
}

/// A render job. Times are seconds into the input.
#[derive(Debug, Clone)]
pub enum Render<'a> {
    /// One frame as a JPEG at the source size.
    CaptureFrame { at_secs: f64 },
    /// The frame at `at_secs` as an mp4 of `duration_secs` (1..=10) with a
    /// slow zoom and pan.
    Template { at_secs: f64, duration_secs: f64 },
    /// The segment (≤ 10 s) through an `animate` preset's filter chain, mp4.
    GlitchAnimate {
        start_secs: f64,
        end_secs: f64,
        preset: &'a GlitchPreset,
    },
    /// The segment (≤ 10 s) with a `replace` preset's keyed background, mp4.
    GlitchReplace {
        start_secs: f64,
        end_secs: f64,
        preset: &'a GlitchPreset,
    },
    /// The segment with its audio replaced by the preset's generated track, mp4.
    Music {
        start_secs: f64,
        end_secs: f64,
        preset: &'a MusicPreset,
    },
}

#[derive(thiserror::Error, Debug)]
pub enum MediaError {
    #[error("canceled")]
    Canceled,
    /// A time range or size argument is out of bounds; nothing was rendered.
    #[error("invalid range: {reason}")]
    InvalidRange { reason: String },
    /// A glitch preset was given to the render variant of the other kind.
    #[error("preset {preset} is not a {expected:?} preset")]
    WrongPresetKind {
        preset: String,
        expected: GlitchKind,
    },
    #[error("ffmpeg failed (exit status {status:?}): {stderr_tail}")]
    Failed {
        status: Option<i32>,
        stderr_tail: String,
    },
    #[error("cannot probe the input: {0}")]
    Probe(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Makes the child receive SIGKILL when this process dies, however it dies
/// (`PR_SET_PDEATHSIG`): a worker killed mid-render leaves no ffmpeg running
/// (and writing) behind it. The signal follows the thread that spawned the
/// child; children are spawned from the runtime's worker threads, which live
/// as long as the process.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made (prctl, getppid), no allocation.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // the parent may have died before prctl took effect
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("the parent exited"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Probes `path` with `ffprobe`.
pub async fn probe(path: &Path) -> Result<MediaInfo, MediaError> {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]);
    cmd.args(input_guard_args()).arg("-i").arg(file_url(path));
    die_with_parent(&mut cmd);
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output().await?;
    if !out.status.success() {
        return Err(MediaError::Probe(tail_string(&out.stderr)));
    }
    parse_probe(&out.stdout)
}

/// What [`probe_image`] found in a still image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// ffprobe's codec of the (only) stream: `png`, `mjpeg`, `webp`…
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub streams: usize,
}

/// Probes `path` as a still image (PNG, JPEG or WebP, found by content, not
/// by name). `Err(MediaError::Probe)` when ffprobe cannot read it as one.
pub async fn probe_image(path: &Path) -> Result<ImageInfo, MediaError> {
    #[derive(Deserialize)]
    struct Out {
        #[serde(default)]
        streams: Vec<Stream>,
    }
    #[derive(Deserialize)]
    struct Stream {
        codec_type: Option<String>,
        codec_name: Option<String>,
        width: Option<u32>,
        height: Option<u32>,
    }
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_streams",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        "image2,png_pipe,jpeg_pipe,webp_pipe",
    ]);
    cmd.arg("-i").arg(file_url(path));
    die_with_parent(&mut cmd);
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output().await?;
    if !out.status.success() {
        return Err(MediaError::Probe(tail_string(&out.stderr)));
    }
    let probed: Out = serde_json::from_slice(&out.stdout)
        .map_err(|e| MediaError::Probe(format!("unreadable ffprobe output: {e}")))?;
    let video = probed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video"))
        .ok_or_else(|| MediaError::Probe("no image stream".into()))?;
    Ok(ImageInfo {
        codec: video.codec_name.clone().unwrap_or_default(),
        width: video.width.unwrap_or(0),
        height: video.height.unwrap_or(0),
        streams: probed.streams.len(),
    })
}

/// Renders `job` from `input` to `output`, calling `on_progress` with each
/// new integer percent (0..=99 while running, 100 once on success).
pub async fn render(
    input: &Path,
    output: &Path,
    job: &Render<'_>,
    on_progress: &mut (dyn FnMut(u8) + Send),
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    check_job(job)?;
    if cancel.is_cancelled() {
        return Err(MediaError::Canceled);
    }
    let info = probe(input).await?;
    require_video(&info)?;
    let (args, expected_secs) = plan(input, output, job, &info)?;
    run_ffmpeg(args, Some(output), expected_secs, on_progress, cancel).await
}

/// Writes up to `max` JPEGs `thumb-0000.jpg`, `thumb-0001.jpg`… into `out_dir`,
/// taken at 0, `every_secs`, 2×`every_secs`…, `width` pixels wide (at most
/// the source width). Returns their paths in order.
pub async fn thumbnails(
    input: &Path,
    out_dir: &Path,
    every_secs: f64,
    max: usize,
    width: u32,
) -> Result<Vec<PathBuf>, MediaError> {
    if !(every_secs.is_finite() && every_secs > 0.0) {
        return Err(invalid(format!("thumbnail interval {every_secs} s")));
    }
    if max == 0 || width < 2 {
        return Err(invalid(format!("{max} thumbnails {width} px wide")));
    }
    let info = probe(input).await?;
    require_video(&info)?;
    let (w, h) = fit_width(&info, width);

    tokio::fs::create_dir_all(out_dir).await?;
    let mut stale = tokio::fs::read_dir(out_dir).await?;
    while let Some(entry) = stale.next_entry().await? {
        if is_thumbnail_name(&entry.file_name().to_string_lossy()) {
            tokio::fs::remove_file(entry.path()).await?;
        }
    }

    let mut args = input_args(input, None, None);
    args.extend(os(&[
        "-map",
        "0:v:0",
        "-vf",
        &format!("select='gte(t,selected_n*{every_secs})',{}", scale_to(w, h)),
        "-fps_mode",
        "vfr",
        "-frames:v",
        &max.to_string(),
        "-q:v",
        "4",
        "-f",
        "image2",
        "-start_number",
        "0",
    ]));
    args.push(file_url(&out_dir.join("thumb-%04d.jpg")));
    let expected = info.duration_secs.min(every_secs * max as f64);
    run_ffmpeg(args, None, expected, &mut |_| {}, &CancellationToken::new()).await?;

    Ok((0..max)
        .map(|i| out_dir.join(format!("thumb-{i:04}.jpg")))
        .take_while(|p| p.is_file())
        .collect())
}

/// Writes a quick low-resolution mp4 of `start_secs..end_secs`, `width`
/// pixels wide (at most the source width), keeping the source audio.
pub async fn preview(
    input: &Path,
    output: &Path,
    start_secs: f64,
    end_secs: f64,
    width: u32,
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    check_range(start_secs, end_secs, None)?;
    if width < 2 {
        return Err(invalid(format!("preview {width} px wide")));
    }
    if cancel.is_cancelled() {
        return Err(MediaError::Canceled);
    }
    let info = probe(input).await?;
    require_video(&info)?;
    let len = effective_len(start_secs, end_secs, &info)?;
    let (w, h) = fit_width(&info, width);

    let mut args = input_args(input, Some(start_secs), Some(len));
    args.extend(os(&[
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-vf",
        &format!("{},format=yuv420p", scale_to(w, h)),
    ]));
    args.extend(h264_args("30"));
    args.extend(os(&["-c:a", "aac", "-b:a", "64k", "-ac", "2"]));
    args.extend(mp4_output_args(output, len));
    run_ffmpeg(args, Some(output), len, &mut |_| {}, cancel).await
}

/// Pids of running `ffmpeg`/`ffprobe` processes whose command line mentions
/// `path` (scans `/proc`; empty elsewhere).
pub fn ffmpeg_processes_for(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mut args = cmdline.split(|b| *b == 0);
            let program = String::from_utf8_lossy(args.next()?).into_owned();
            let name = program.rsplit('/').next()?;
            if name != "ffmpeg" && name != "ffprobe" {
                return None;
            }
            args.any(|a| String::from_utf8_lossy(a).contains(&needle))
                .then_some(pid)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Planning

/// Checks what can be checked without probing the input.
fn check_job(job: &Render<'_>) -> Result<(), MediaError> {
    match *job {
        Render::CaptureFrame { at_secs } => check_at(at_secs),
        Render::Template {
            at_secs,
            duration_secs,
        } => {
            check_at(at_secs)?;
            let (min, max) = TEMPLATE_SECS;
            if !(duration_secs.is_finite() && (min..=max).contains(&duration_secs)) {
                return Err(invalid(format!(
                    "template duration {duration_secs} s is not within {min}..={max} s"
                )));
            }
            Ok(())
        }
        Render::GlitchAnimate {
            start_secs,
            end_secs,
            preset,
        } => {
            check_kind(preset, GlitchKind::Animate)?;
            check_range(start_secs, end_secs, Some(MAX_GLITCH_SECS))
        }
        Render::GlitchReplace {
            start_secs,
            end_secs,
            preset,
        } => {
            check_kind(preset, GlitchKind::Replace)?;
            check_range(start_secs, end_secs, Some(MAX_GLITCH_SECS))
        }
        Render::Music {
            start_secs,
            end_secs,
            ..
        } => check_range(start_secs, end_secs, None),
    }
}

fn check_at(at_secs: f64) -> Result<(), MediaError> {
    if at_secs.is_finite() && at_secs >= 0.0 {
        Ok(())
    } else {
        Err(invalid(format!("time {at_secs} s")))
    }
}

fn check_range(start: f64, end: f64, max_len: Option<f64>) -> Result<(), MediaError> {
    if !(start.is_finite() && end.is_finite() && start >= 0.0 && end > start) {
        return Err(invalid(format!("{start}..{end} s")));
    }
    if let Some(max) = max_len {
        if end - start > max {
            return Err(invalid(format!("{start}..{end} s is longer than {max} s")));
        }
    }
    Ok(())
}

fn check_kind(preset: &GlitchPreset, expected: GlitchKind) -> Result<(), MediaError> {
    if preset.kind == expected {
        Ok(())
    } else {
        Err(MediaError::WrongPresetKind {
            preset: preset.id.clone(),
            expected,
        })
    }
}

/// The part of `start..end` inside the input; errors when `end` is past
/// its end (beyond the tolerance) or nothing is left.
fn effective_len(start: f64, end: f64, info: &MediaInfo) -> Result<f64, MediaError> {
    let duration = info.duration_secs;
    if end > duration + RANGE_TOLERANCE_SECS || start >= duration {
        return Err(invalid(format!(
            "{start}..{end} s is not within the input's {duration:.3} s"
        )));
    }
    Ok(end.min(duration) - start)
}

/// Where to seek for a single frame at `at`.
fn frame_seek(at: f64, info: &MediaInfo) -> Result<f64, MediaError> {
    let duration = info.duration_secs;
    if at > duration + RANGE_TOLERANCE_SECS {
        return Err(invalid(format!(
            "{at} s is past the input's {duration:.3} s"
        )));
    }
    Ok(at.min((duration - LAST_FRAME_MARGIN_SECS).max(0.0)))
}

fn require_video(info: &MediaInfo) -> Result<(), MediaError> {
    if info.has_video && info.width > 0 && info.height > 0 {
        Ok(())
    } else {
        Err(MediaError::Probe("the input has no video stream".into()))
    }
}

/// FFmpeg arguments (after the global ones) and expected output duration.
fn plan(
    input: &Path,
    output: &Path,
    job: &Render<'_>,
    info: &MediaInfo,
) -> Result<(Vec<OsString>, f64), MediaError> {
    let (w, h) = output_size(info);
    let normalize = scale_to(w, h);
    let mut args;
    let expected;
    match *job {
        Render::CaptureFrame { at_secs } => {
            let at = frame_seek(at_secs, info)?;
            args = input_args(input, Some(at), None);
            args.extend(os(&[
                "-map",
                "0:v:0",
                "-frames:v",
                "1",
                "-vf",
                &normalize,
                "-c:v",
                "mjpeg",
                "-q:v",
                "3",
                "-f",
                "image2",
                "-update",
                "1",
            ]));
            args.push(file_url(output));
            expected = 1.0 / f64::from(GENERATED_FPS);
        }
        Render::Template {
            at_secs,
            duration_secs,
        } => {
            let at = frame_seek(at_secs, info)?;
            let frames = (duration_secs * f64::from(GENERATED_FPS)).round() as u32;
            args = input_args(input, Some(at), None);
            args.extend(os(&[
                "-filter_complex",
                &template_graph(w, h, frames),
                "-map",
                "[v]",
                "-frames:v",
                &frames.to_string(),
            ]));
            args.extend(h264_args("23"));
            args.extend(mp4_output_args(output, duration_secs));
            expected = duration_secs;
        }
        Render::GlitchAnimate {
            start_secs,
            end_secs,
            preset,
        }
        | Render::GlitchReplace {
            start_secs,
            end_secs,
            preset,
        } => {
            let len = effective_len(start_secs, end_secs, info)?;
            let filter = preset
                .filter
                .replace("{w}", &w.to_string())
                .replace("{h}", &h.to_string())
                .replace("{d}", &format!("{len:.3}"));
            let finish = format!("{normalize},format=yuv420p");
            let graph = match preset.kind {
                GlitchKind::Animate => format!("[0:v:0]{normalize},{filter},{finish}[v]"),
                GlitchKind::Replace => {
                    format!("[0:v:0]{normalize}[src];{filter};[out]{finish}[v]")
                }
            };
            args = input_args(input, Some(start_secs), Some(len));
            args.extend(os(&[
                "-filter_complex",
                &graph,
                "-map",
                "[v]",
                "-map",
                "0:a:0?",
            ]));
            args.extend(h264_args("23"));
            args.extend(os(&["-c:a", "aac", "-b:a", "128k"]));
            args.extend(mp4_output_args(output, len));
            expected = len;
        }
        Render::Music {
            start_secs,
            end_secs,
            preset,
        } => {
            let len = effective_len(start_secs, end_secs, info)?;
            let fade = len.min(0.3);
            let graph = format!(
                "[0:v:0]{normalize},format=yuv420p[v];\
                 aevalsrc=exprs='{expr}':s=44100:d={len:.3},\
                 afade=t=in:d={fade_in:.3},afade=t=out:st={fade_at:.3}:d={fade:.3},\
                 aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=stereo[a]",
                expr = preset.resolved_expression(),
                fade_in = len.min(0.05),
                fade_at = len - fade,
            );
            args = input_args(input, Some(start_secs), Some(len));
            args.extend(os(&[
                "-filter_complex",
                &graph,
                "-map",
                "[v]",
                "-map",
                "[a]",
            ]));
            args.extend(h264_args("23"));
            args.extend(os(&["-c:a", "aac", "-b:a", "160k"]));
            args.extend(mp4_output_args(output, len));
            expected = len;
        }
    }
    Ok((args, expected))
}

/// One frame, upscaled 2× so the pan moves in half-pixel steps, zoomed from
/// 1.0 to 1.3 while panning left to right.
fn template_graph(w: u32, h: u32, frames: u32) -> String {
    let last = frames.saturating_sub(1).max(1);
    format!(
        "[0:v:0]trim=end_frame=1,scale={w2}:{h2}:flags=bicubic,setsar=1,\
         zoompan=z='1+0.3*on/{last}':x='(iw-iw/zoom)*(0.2+0.6*on/{last})':\
         y='(ih-ih/zoom)*(0.6-0.2*on/{last})':d={frames}:s={w}x{h}:fps={GENERATED_FPS},\
         setsar=1,format=yuv420p[v]",
        w2 = w * 2,
        h2 = h * 2,
    )
}

/// Output size for renders: the display size, scaled down to fit
/// [`MAX_LONG_SIDE`], with even sides.
fn output_size(info: &MediaInfo) -> (u32, u32) {
    let (w, h) = (f64::from(info.width.max(1)), f64::from(info.height.max(1)));
    let scale = (f64::from(MAX_LONG_SIDE) / w.max(h)).min(1.0);
    (even(w * scale), even(h * scale))
}

/// `width` (at most the source width) and the height that keeps the aspect
/// ratio, both even.
fn fit_width(info: &MediaInfo, width: u32) -> (u32, u32) {
    let (w, h) = (f64::from(info.width.max(1)), f64::from(info.height.max(1)));
    let target = f64::from(width).min(w);
    (even(target), even(h * target / w))
}

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

fn scale_to(w: u32, h: u32) -> String {
    format!("scale={w}:{h}:flags=bicubic,setsar=1")
}

fn invalid(reason: String) -> MediaError {
    MediaError::InvalidRange { reason }
}

// ---------------------------------------------------------------------------
// Arguments

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `file:` + path, so FFmpeg never reads a path as a protocol or an option.
fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

fn input_guard_args() -> Vec<OsString> {
    os(&[
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        INPUT_FORMATS,
    ])
}

/// Decoder options, seek, length and the guarded input.
fn input_args(input: &Path, seek: Option<f64>, len: Option<f64>) -> Vec<OsString> {
    let mut args = os(&["-threads", THREADS]);
    args.extend(input_guard_args());
    if let Some(seek) = seek {
        args.extend(os(&["-ss", &format!("{seek:.3}")]));
    }
    if let Some(len) = len {
        args.extend(os(&["-t", &format!("{len:.3}")]));
    }
    args.push("-i".into());
    args.push(file_url(input));
    args
}

fn h264_args(crf: &str) -> Vec<OsString> {
    os(&[
        "-c:v", "libx264", "-preset", "veryfast", "-crf", crf, "-pix_fmt", "yuv420p", "-threads",
        THREADS,
    ])
}

fn mp4_output_args(output: &Path, len: f64) -> Vec<OsString> {
    let mut args = os(&[
        "-t",
        &format!("{len:.3}"),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
    ]);
    args.push(file_url(output));
    args
}

// ---------------------------------------------------------------------------
// Running FFmpeg

/// Runs `ffmpeg` with `args`, reporting progress against `expected_secs`.
/// On failure or cancellation, `output` (if any) is removed.
async fn run_ffmpeg(
    args: Vec<OsString>,
    output: Option<&Path>,
    expected_secs: f64,
    on_progress: &mut (dyn FnMut(u8) + Send),
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    if cancel.is_cancelled() {
        return Err(MediaError::Canceled);
    }
    tracing::debug!(?args, "running ffmpeg");
    let mut cmd = Command::new("ffmpeg");
    die_with_parent(&mut cmd);
    let mut child = cmd
        .args([
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "error",
            "-progress",
            "pipe:1",
            "-stats_period",
            "0.25",
            "-filter_threads",
            THREADS,
            "-filter_complex_threads",
            THREADS,
            "-y",
        ])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill(&mut child).await;
        return Err(io::Error::other("ffmpeg started without its pipes").into());
    };

    let outcome: Option<io::Result<(ExitStatus, String)>> = {
        let work = async {
            let (progress, tail, status) = tokio::join!(
                track_progress(stdout, expected_secs, on_progress),
                read_tail(stderr),
                child.wait(),
            );
            progress?;
            Ok((status?, tail?))
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            done = work => Some(done),
        }
    };

    let result = match outcome {
        None => {
            kill(&mut child).await;
            Err(MediaError::Canceled)
        }
        Some(Err(e)) => {
            kill(&mut child).await;
            Err(MediaError::Io(e))
        }
        Some(Ok((status, stderr_tail))) if !status.success() => Err(MediaError::Failed {
            status: status.code(),
            stderr_tail,
        }),
        Some(Ok((_, stderr_tail))) => match output {
            Some(out) if !is_nonempty_file(out).await => Err(MediaError::Failed {
                status: Some(0),
                stderr_tail: format!("no output written. {stderr_tail}"),
            }),
            _ => {
                on_progress(100);
                return Ok(());
            }
        },
    };
    if let Some(out) = output {
        remove_if_exists(out).await;
    }
    result
}

/// SIGKILLs the child (if still running) and reaps it.
async fn kill(child: &mut Child) {
    if let Err(e) = child.kill().await {
        tracing::warn!(error = %e, "cannot kill ffmpeg");
    }
}

async fn remove_if_exists(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot remove partial output")
        }
    }
}

async fn is_nonempty_file(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// Reads `-progress` lines until EOF, forwarding new percents.
async fn track_progress(
    stdout: impl AsyncRead + Unpin,
    expected_secs: f64,
    on_progress: &mut (dyn FnMut(u8) + Send),
) -> io::Result<()> {
    let mut reader = BufReader::new(stdout);
    let mut tracker = ProgressTracker::new(expected_secs);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if let Some(percent) = tracker.feed(&String::from_utf8_lossy(&line)) {
            on_progress(percent);
        }
    }
}

/// Turns `-progress` key=value lines into increasing percents (0..=99).
struct ProgressTracker {
    expected_us: f64,
    last: Option<u8>,
    saw_us: bool,
}

impl ProgressTracker {
    fn new(expected_secs: f64) -> Self {
        Self {
            expected_us: (expected_secs * 1e6).max(1.0),
            last: None,
            saw_us: false,
        }
    }

    /// The new percent, if this line raised it.
    fn feed(&mut self, line: &str) -> Option<u8> {
        let (key, value) = line.trim().split_once('=')?;
        let out_time_us: i64 = match key {
            "out_time_us" => {
                self.saw_us = true;
                value.parse().ok()?
            }
            // Microseconds too, despite its name (FFmpeg ≤ 5).
            "out_time_ms" if !self.saw_us => value.parse().ok()?,
            _ => return None,
        };
        let percent = (out_time_us.max(0) as f64 / self.expected_us * 100.0)
            .floor()
            .clamp(0.0, 99.0) as u8;
        if self.last.is_some_and(|last| percent <= last) {
            return None;
        }
        self.last = Some(percent);
        Some(percent)
    }
}

/// Reads to EOF, keeping the last [`STDERR_TAIL_BYTES`].
async fn read_tail(mut r: impl AsyncRead + Unpin) -> io::Result<String> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(tail_string(&tail));
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
    }
}

fn tail_string(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

fn is_thumbnail_name(name: &str) -> bool {
    name.strip_prefix("thumb-")
        .and_then(|rest| rest.strip_suffix(".jpg"))
        .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------
// ffprobe output

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    sample_aspect_ratio: Option<String>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
}

impl ProbeStream {
    fn is(&self, kind: &str) -> bool {
        self.codec_type.as_deref() == Some(kind)
    }

    /// Clockwise display rotation in degrees (0, 90, 180, 270).
    fn rotation(&self) -> i64 {
        let from_side_data = self
            .side_data_list
            .iter()
            .find_map(|d| d.get("rotation").and_then(serde_json::Value::as_i64));
        let from_tag = || self.tags.get("rotate").and_then(|r| r.parse().ok());
        from_side_data
            .or_else(from_tag)
            .unwrap_or(0)
            .rem_euclid(360)
    }

    /// `num/den` of the sample aspect ratio, if not square.
    fn pixel_aspect(&self) -> Option<f64> {
        let (num, den) = self.sample_aspect_ratio.as_deref()?.split_once(':')?;
        let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
        (num > 0.0 && den > 0.0 && num != den).then(|| num / den)
    }
}

fn parse_probe(json: &[u8]) -> Result<MediaInfo, MediaError> {
    let probed: ProbeOutput = serde_json::from_slice(json)
        .map_err(|e| MediaError::Probe(format!("unreadable ffprobe output: {e}")))?;
    let seconds = |s: &Option<String>| s.as_deref().and_then(|d| d.parse::<f64>().ok());
    let duration_secs = probed
        .format
        .as_ref()
        .and_then(|f| seconds(&f.duration))
        .or_else(|| {
            probed
                .streams
                .iter()
                .filter_map(|s| seconds(&s.duration))
                .reduce(f64::max)
        })
        .filter(|d| d.is_finite() && *d >= 0.0)
        .unwrap_or(0.0);
    let video = probed
        .streams
        .iter()
        .find(|s| s.is("video") && s.disposition.get("attached_pic") != Some(&1));
    let (mut width, mut height) = video
        .map(|v| (v.width.unwrap_or(0), v.height.unwrap_or(0)))
        .unwrap_or((0, 0));
    if let Some(v) = video {
        if let Some(aspect) = v.pixel_aspect() {
            width = (f64::from(width) * aspect).round() as u32;
        }
        if v.rotation() % 180 == 90 {
            std::mem::swap(&mut width, &mut height);
        }
    }
    Ok(MediaInfo {
        duration_secs,
        width,
        height,
        has_video: video.is_some(),
        has_audio: probed.streams.iter().any(|s| s.is("audio")),
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command as StdCommand;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::ai::presets::bundled;

    /// A unique directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("lokiz-media-{tag}-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs ffmpeg synchronously; returns its stderr, panicking on failure.
    fn ffmpeg(args: &[&str]) -> String {
        let out = StdCommand::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-nostats", "-y"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ffmpeg {args:?} failed: {stderr}");
        stderr
    }

    /// The 4 s, 360x640, 25 fps test source (with a 440 Hz tone if `audio`).
    fn source(dir: &TempDir, audio: bool) -> PathBuf {
        let path = dir.join(if audio { "src.mp4" } else { "src-silent.mp4" });
        let p = path.to_str().unwrap();
        let mut args = vec![
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=360x640:rate=25",
        ];
        if audio {
            args.extend(["-f", "lavfi", "-i", "sine=frequency=440"]);
        }
        args.extend([
            "-t", "4", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ]);
        if audio {
            args.extend(["-c:a", "aac"]);
        }
        args.push(p);
        ffmpeg(&args);
        path
    }

    /// A 30 s source, for renders that must still be running when canceled.
    fn long_source(dir: &TempDir) -> PathBuf {
        let path = dir.join("long.mp4");
        ffmpeg(&[
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=30",
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            path.to_str().unwrap(),
        ]);
        path
    }

    /// Average PSNR (dB) between `secs` of `a` from `a_at` and of `b` from `b_at`.
    fn psnr(a: &Path, a_at: f64, b: &Path, b_at: f64, secs: f64) -> f64 {
        let (a_at, b_at, secs) = (a_at.to_string(), b_at.to_string(), secs.to_string());
        let stderr = ffmpeg(&[
            "-ss",
            &a_at,
            "-t",
            &secs,
            "-i",
            a.to_str().unwrap(),
            "-ss",
            &b_at,
            "-t",
            &secs,
            "-i",
            b.to_str().unwrap(),
            "-lavfi",
            "[0:v][1:v]psnr",
            "-f",
            "null",
            "-",
        ]);
        let average = stderr
            .split("average:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no PSNR in: {stderr}"));
        average.parse().unwrap()
    }

    /// Mean volume (dBFS) of the audio in `path`.
    fn mean_volume(path: &Path) -> f64 {
        let stderr = ffmpeg(&[
            "-i",
            path.to_str().unwrap(),
            "-map",
            "0:a",
            "-af",
            "volumedetect",
            "-f",
            "null",
            "-",
        ]);
        let db = stderr
            .split("mean_volume:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no volume in: {stderr}"));
        db.parse().unwrap()
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: {actual} is not {expected} ± {tolerance}"
        );
    }

    async fn render_ok(input: &Path, output: &Path, job: &Render<'_>) -> Vec<u8> {
        let mut seen = Vec::new();
        render(
            input,
            output,
            job,
            &mut |p| seen.push(p),
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{job:?}: {e}"));
        seen
    }

    #[tokio::test]
    async fn probe_reports_duration_size_and_streams() {
        let dir = TempDir::new("probe");
        let info = probe(&source(&dir, true)).await.unwrap();
        assert_close(info.duration_secs, 4.0, 0.1, "duration");
        assert_eq!((info.width, info.height), (360, 640));
        assert!(info.has_video && info.has_audio, "{info:?}");

        let silent = probe(&source(&dir, false)).await.unwrap();
        assert!(silent.has_video && !silent.has_audio, "{silent:?}");

        let missing = probe(&dir.join("missing.mp4")).await;
        assert!(matches!(missing, Err(MediaError::Probe(_))), "{missing:?}");
    }

    #[tokio::test]
    async fn inputs_that_point_elsewhere_are_refused() {
        let dir = TempDir::new("guard");
        let src = source(&dir, false);
        let playlist = dir.join("upload.mp4");
        std::fs::write(
            &playlist,
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n{}\n#EXT-X-ENDLIST\n",
                src.display()
            ),
        )
        .unwrap();
        let concat = dir.join("upload2.mp4");
        std::fs::write(
            &concat,
            format!("ffconcat version 1.0\nfile '{}'\n", src.display()),
        )
        .unwrap();

        for input in [&playlist, &concat] {
            let probed = probe(input).await;
            assert!(matches!(probed, Err(MediaError::Probe(_))), "{probed:?}");
            let out = dir.join("out.jpg");
            let job = Render::CaptureFrame { at_secs: 0.0 };
            let rendered = render(input, &out, &job, &mut |_| {}, &CancellationToken::new()).await;
            assert!(
                matches!(rendered, Err(MediaError::Probe(_))),
                "{rendered:?}"
            );
            assert!(!out.exists());
        }
    }

    #[tokio::test]
    async fn capture_frame_writes_a_jpeg_at_the_source_size() {
        let dir = TempDir::new("capture");
        let src = source(&dir, true);
        for (name, at) in [("mid.jpg", 1.5), ("end.jpg", 4.0)] {
            let out = dir.join(name);
            let seen = render_ok(&src, &out, &Render::CaptureFrame { at_secs: at }).await;
            assert_eq!(seen.last(), Some(&100));
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "{name} is not a JPEG");
            let info = probe(&out).await.unwrap();
            assert_eq!((info.width, info.height), (360, 640), "{name}");
            assert!(info.has_video && !info.has_audio);
        }
    }

    #[tokio::test]
    async fn template_is_the_requested_length_and_moves() {
        let dir = TempDir::new("template");
        let src = source(&dir, true);
        let out = dir.join("template.mp4");
        let job = Render::Template {
            at_secs: 1.0,
            duration_secs: 3.0,
        };
        render_ok(&src, &out, &job).await;
        let info = probe(&out).await.unwrap();
        assert_close(info.duration_secs, 3.0, 0.3, "template duration");
        assert_eq!((info.width, info.height), (360, 640));
        let first_vs_last = psnr(&out, 0.0, &out, 2.9, 0.04);
        assert!(
            first_vs_last < 30.0,
            "no visible motion: first vs last frame PSNR {first_vs_last} dB"
        );
    }

    #[tokio::test]
    async fn every_glitch_preset_changes_the_pixels() {
        let dir = TempDir::new("glitch");
        let src = source(&dir, true);
        let unchanged = psnr(&src, 1.0, &src, 1.0, 2.0);
        assert!(unchanged > 30.0, "control PSNR {unchanged} dB");

        for preset in &bundled().glitch {
            let out = dir.join(&format!("{}.mp4", preset.id));
            let (start_secs, end_secs) = (1.0, 3.0);
            let job = match preset.kind {
                GlitchKind::Animate => Render::GlitchAnimate {
                    start_secs,
                    end_secs,
                    preset,
                },
                GlitchKind::Replace => Render::GlitchReplace {
                    start_secs,
                    end_secs,
                    preset,
                },
            };
            let started = Instant::now();
            render_ok(&src, &out, &job).await;
            let info = probe(&out).await.unwrap();
            assert_close(info.duration_secs, 2.0, 0.3, &preset.id);
            assert_eq!((info.width, info.height), (360, 640), "{}", preset.id);
            assert!(info.has_video && info.has_audio, "{}: {info:?}", preset.id);
            let db = psnr(&out, 0.0, &src, start_secs, 2.0);
            assert!(
                db < 30.0,
                "{}: PSNR {db} dB against the source, too similar",
                preset.id
            );
            eprintln!(
                "{}: PSNR {db:.1} dB, rendered in {:?}",
                preset.id,
                started.elapsed()
            );
        }
    }

    #[tokio::test]
    async fn music_replaces_the_audio_with_an_audible_track_of_the_segment_length() {
        let dir = TempDir::new("music");
        let src = source(&dir, false);
        for preset in &bundled().music {
            let out = dir.join(&format!("{}.mp4", preset.id));
            let job = Render::Music {
                start_secs: 0.5,
                end_secs: 3.0,
                preset,
            };
            render_ok(&src, &out, &job).await;
            let info = probe(&out).await.unwrap();
            assert!(info.has_video && info.has_audio, "{}: {info:?}", preset.id);
            assert_close(info.duration_secs, 2.5, 0.3, &preset.id);
            let volume = mean_volume(&out);
            assert!(volume > -35.0, "{}: mean volume {volume} dB", preset.id);
        }
    }

    #[tokio::test]
    async fn music_may_end_slightly_past_the_probed_duration() {
        let dir = TempDir::new("music-end");
        let src = source(&dir, true);
        let out = dir.join("end.mp4");
        let preset = &bundled().music[0];
        let job = Render::Music {
            start_secs: 2.0,
            end_secs: 4.05,
            preset,
        };
        render_ok(&src, &out, &job).await;
        let info = probe(&out).await.unwrap();
        assert_close(info.duration_secs, 2.0, 0.3, "clamped music");
    }

    #[tokio::test]
    async fn progress_is_strictly_increasing_and_ends_at_100() {
        let dir = TempDir::new("progress");
        let src = source(&dir, true);
        let out = dir.join("out.mp4");
        let preset = bundled().glitch("scanlines").unwrap();
        let job = Render::GlitchAnimate {
            start_secs: 0.0,
            end_secs: 4.0,
            preset,
        };
        let seen = render_ok(&src, &out, &job).await;
        assert!(seen.len() >= 3, "too few progress reports: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&100), "{seen:?}");
        assert!(seen[..seen.len() - 1].iter().all(|p| *p <= 99), "{seen:?}");
    }

    #[tokio::test]
    async fn invalid_ranges_are_rejected_before_anything_runs() {
        let dir = TempDir::new("invalid");
        let glitch = bundled().glitch("rgb-split").unwrap();
        let replace = bundled().glitch("fractal-sky").unwrap();
        let music = bundled().music("arcade").unwrap();
        let out = dir.join("out.mp4");
        let mut calls = 0;

        // Rejected without even probing: the input does not exist.
        let missing = dir.join("missing.mp4");
        let static_cases = [
            Render::CaptureFrame { at_secs: -1.0 },
            Render::CaptureFrame { at_secs: f64::NAN },
            Render::Template {
                at_secs: 0.0,
                duration_secs: 0.5,
            },
            Render::Template {
                at_secs: 0.0,
                duration_secs: 10.5,
            },
            Render::GlitchAnimate {
                start_secs: -0.5,
                end_secs: 1.0,
                preset: glitch,
            },
            Render::GlitchAnimate {
                start_secs: 2.0,
                end_secs: 2.0,
                preset: glitch,
            },
            Render::GlitchReplace {
                start_secs: 0.0,
                end_secs: 10.5,
                preset: replace,
            },
            Render::Music {
                start_secs: 3.0,
                end_secs: 1.0,
                preset: music,
            },
            Render::Music {
                start_secs: 0.0,
                end_secs: f64::INFINITY,
                preset: music,
            },
        ];
        for job in &static_cases {
            let r = render(
                &missing,
                &out,
                job,
                &mut |_| calls += 1,
                &CancellationToken::new(),
            )
            .await;
            assert!(
                matches!(r, Err(MediaError::InvalidRange { .. })),
                "{job:?}: {r:?}"
            );
        }
        let r = preview(&missing, &out, 1.0, 0.5, 160, &CancellationToken::new()).await;
        assert!(matches!(r, Err(MediaError::InvalidRange { .. })), "{r:?}");
        let r = thumbnails(&missing, &dir.join("thumbs"), 0.0, 4, 90).await;
        assert!(matches!(r, Err(MediaError::InvalidRange { .. })), "{r:?}");

        let kind = Render::GlitchAnimate {
            start_secs: 0.0,
            end_secs: 1.0,
            preset: replace,
        };
        let r = render(
            &missing,
            &out,
            &kind,
            &mut |_| calls += 1,
            &CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(r, Err(MediaError::WrongPresetKind { .. })),
            "{r:?}"
        );

        // Rejected against the probed 4 s.
        let src = source(&dir, true);
        let probed_cases = [
            Render::CaptureFrame { at_secs: 4.5 },
            Render::Template {
                at_secs: 9.0,
                duration_secs: 2.0,
            },
            Render::GlitchAnimate {
                start_secs: 3.0,
                end_secs: 5.0,
                preset: glitch,
            },
            Render::GlitchReplace {
                start_secs: 4.0,
                end_secs: 4.05,
                preset: replace,
            },
            Render::Music {
                start_secs: 0.0,
                end_secs: 4.5,
                preset: music,
            },
        ];
        for job in &probed_cases {
            let r = render(
                &src,
                &out,
                job,
                &mut |_| calls += 1,
                &CancellationToken::new(),
            )
            .await;
            assert!(
                matches!(r, Err(MediaError::InvalidRange { .. })),
                "{job:?}: {r:?}"
            );
        }
        let r = preview(&src, &out, 3.0, 6.0, 160, &CancellationToken::new()).await;
        assert!(matches!(r, Err(MediaError::InvalidRange { .. })), "{r:?}");

        assert_eq!(calls, 0, "progress reported for a rejected job");
        assert!(!out.exists());
    }

    #[tokio::test]
    async fn cancel_kills_ffmpeg_and_removes_the_output() {
        let dir = TempDir::new("cancel");
        let src = long_source(&dir);
        let out = dir.join("canceled.mp4");
        let preset = bundled().music("pulse").unwrap();
        let job = Render::Music {
            start_secs: 0.0,
            end_secs: 30.0,
            preset,
        };
        let cancel = CancellationToken::new();
        let canceled_at = Arc::new(Mutex::new(None::<Instant>));
        let mut on_progress = {
            let (cancel, canceled_at) = (cancel.clone(), canceled_at.clone());
            move |_| {
                canceled_at.lock().unwrap().get_or_insert_with(Instant::now);
                cancel.cancel();
            }
        };

        let result = render(&src, &out, &job, &mut on_progress, &cancel).await;
        let canceled_at = canceled_at
            .lock()
            .unwrap()
            .expect("no progress before the render ended");
        assert!(matches!(result, Err(MediaError::Canceled)), "{result:?}");
        assert!(
            canceled_at.elapsed() < Duration::from_secs(2),
            "took {:?}",
            canceled_at.elapsed()
        );
        assert!(!out.exists(), "partial output left behind");
        assert_eq!(ffmpeg_processes_for(&out), Vec::<u32>::new());
    }

    #[tokio::test]
    async fn a_dropped_render_leaves_no_ffmpeg_behind() {
        let dir = TempDir::new("drop");
        let src = long_source(&dir);
        let out = dir.join("dropped.mp4");
        let preset = bundled().music("dream").unwrap();
        let job = Render::Music {
            start_secs: 0.0,
            end_secs: 30.0,
            preset,
        };
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let mut started_tx = Some(started_tx);
        let mut on_progress = move |_| {
            if let Some(tx) = started_tx.take() {
                let _ = tx.send(());
            }
        };
        let cancel = CancellationToken::new();
        let mut rendering = Box::pin(render(&src, &out, &job, &mut on_progress, &cancel));
        tokio::select! {
            r = &mut rendering => panic!("render finished before it was dropped: {r:?}"),
            _ = started_rx => {}
        }
        assert!(
            !ffmpeg_processes_for(&out).is_empty(),
            "ffmpeg is not running"
        );
        drop(rendering);

        let deadline = Instant::now() + Duration::from_secs(2);
        while !ffmpeg_processes_for(&out).is_empty() {
            assert!(
                Instant::now() < deadline,
                "ffmpeg still running: {:?}",
                ffmpeg_processes_for(&out)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn thumbnails_are_taken_every_interval() {
        let dir = TempDir::new("thumbs");
        let src = source(&dir, true);
        let thumbs = dir.join("thumbs");
        std::fs::create_dir_all(&thumbs).unwrap();
        std::fs::write(thumbs.join("thumb-0009.jpg"), b"stale").unwrap();
        std::fs::write(thumbs.join("keep.txt"), b"not ours").unwrap();

        let all = thumbnails(&src, &thumbs, 1.0, 10, 90).await.unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "thumb-0000.jpg",
                "thumb-0001.jpg",
                "thumb-0002.jpg",
                "thumb-0003.jpg"
            ]
        );
        assert!(!thumbs.join("thumb-0009.jpg").exists());
        assert!(thumbs.join("keep.txt").exists());
        let info = probe(&all[0]).await.unwrap();
        assert_eq!((info.width, info.height), (90, 160));
        // Each thumbnail is the frame at its time: the clock in testsrc2 differs.
        assert!(std::fs::read(&all[0]).unwrap() != std::fs::read(&all[1]).unwrap());

        let capped = thumbnails(&src, &thumbs, 0.5, 3, 1000).await.unwrap();
        assert_eq!(capped.len(), 3);
        assert!(!thumbs.join("thumb-0003.jpg").exists());
        let info = probe(&capped[2]).await.unwrap();
        assert_eq!((info.width, info.height), (360, 640), "never upscaled");
    }

    #[tokio::test]
    async fn preview_is_small_and_covers_the_range() {
        let dir = TempDir::new("preview");
        let src = source(&dir, true);
        let out = dir.join("preview.mp4");
        preview(&src, &out, 1.0, 3.5, 180, &CancellationToken::new())
            .await
            .unwrap();
        let info = probe(&out).await.unwrap();
        assert_eq!((info.width, info.height), (180, 320));
        assert_close(info.duration_secs, 2.5, 0.3, "preview duration");
        assert!(info.has_video && info.has_audio);
    }

    #[tokio::test]
    async fn ffmpeg_failures_report_the_stderr_tail_and_remove_the_output() {
        let dir = TempDir::new("failure");
        let out = dir.join("out.mp4");
        std::fs::write(&out, b"stale").unwrap();
        let mut args = os(&["-i", "file:/nonexistent/input.mp4", "-f", "mp4"]);
        args.push(file_url(&out));
        let mut calls = 0;
        let r = run_ffmpeg(
            args,
            Some(&out),
            1.0,
            &mut |_| calls += 1,
            &CancellationToken::new(),
        )
        .await;
        match r {
            Err(MediaError::Failed {
                status,
                stderr_tail,
            }) => {
                assert!(matches!(status, Some(code) if code != 0), "{status:?}");
                assert!(stderr_tail.contains("No such file"), "{stderr_tail}");
                assert!(stderr_tail.len() <= STDERR_TAIL_BYTES);
            }
            other => panic!("{other:?}"),
        }
        assert!(!out.exists());
        assert_eq!(calls, 0);
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let long = "x".repeat(10_000) + "the end";
        let tail = tail_string(long.as_bytes());
        assert_eq!(tail.len(), STDERR_TAIL_BYTES);
        assert!(tail.ends_with("the end"));
    }

    #[test]
    fn progress_tracker_reports_new_percents_only() {
        let mut t = ProgressTracker::new(2.0);
        let lines = [
            "frame=0",
            "out_time_us=N/A",
            "out_time_ms=N/A",
            "out_time_us=0",
            "out_time_ms=0",
            "out_time_us=500000",
            "out_time_ms=500000",
            "out_time_us=500000",
            "out_time_us=1990000",
            "out_time_us=2500000",
            "progress=end",
        ];
        let seen: Vec<u8> = lines.iter().filter_map(|l| t.feed(l)).collect();
        assert_eq!(seen, [0, 25, 99]);

        // Without out_time_us, out_time_ms is read (as microseconds).
        let mut t = ProgressTracker::new(1.0);
        assert_eq!(t.feed("out_time_ms=250000\n"), Some(25));
        assert_eq!(t.feed("out_time_ms=-5"), None);
    }

    #[test]
    fn probe_output_applies_rotation_and_pixel_aspect() {
        let json = br#"{"streams":[
            {"codec_type":"video","width":100,"height":100,"disposition":{"attached_pic":1}},
            {"codec_type":"video","width":1920,"height":1080,"sample_aspect_ratio":"1:1",
             "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]},
            {"codec_type":"audio","duration":"12.5"}],
            "format":{"duration":"12.500000"}}"#;
        let info = parse_probe(json).unwrap();
        assert_eq!(
            info,
            MediaInfo {
                duration_secs: 12.5,
                width: 1080,
                height: 1920,
                has_video: true,
                has_audio: true
            }
        );

        let json = br#"{"streams":[{"codec_type":"video","width":720,"height":576,
            "sample_aspect_ratio":"16:15","duration":"3.0"}],"format":{}}"#;
        let info = parse_probe(json).unwrap();
        assert_eq!(
            (info.width, info.height, info.duration_secs),
            (768, 576, 3.0)
        );

        let cover_only = br#"{"streams":[{"codec_type":"video","width":500,"height":500,"disposition":{"attached_pic":1}},{"codec_type":"audio"}]}"#;
        let info = parse_probe(cover_only).unwrap();
        assert!(!info.has_video && info.has_audio);
        assert!(require_video(&info).is_err());
    }

    #[test]
    fn output_sizes_are_even_and_keep_the_aspect() {
        let info = |width, height| MediaInfo {
            duration_secs: 1.0,
            width,
            height,
            has_video: true,
            has_audio: false,
        };
        assert_eq!(output_size(&info(360, 640)), (360, 640));
        assert_eq!(output_size(&info(361, 641)), (362, 642));
        assert_eq!(output_size(&info(2160, 3840)), (1080, 1920));
        assert_eq!(output_size(&info(3840, 1634)), (1920, 818));
        assert_eq!(fit_width(&info(360, 640), 180), (180, 320));
        assert_eq!(fit_width(&info(360, 640), 4000), (360, 640));
        assert_eq!(fit_width(&info(1920, 1080), 101), (102, 56));
    }

    #[test]
    fn thumbnail_names() {
        assert!(is_thumbnail_name("thumb-0000.jpg"));
        assert!(!is_thumbnail_name("thumb-000.jpg"));
        assert!(!is_thumbnail_name("thumb-00a0.jpg"));
        assert!(!is_thumbnail_name("keep.txt"));
    }
}
