//! Glitch and music presets, bundled from `infra/presets/presets.json`.
//!
//! Filter syntax (see [`GlitchPreset::filter`]):
//! - `animate`: a linear filter chain (valid as `-vf`) that takes the source,
//!   already scaled to the output size, and returns the glitched video.
//! - `replace`: a `-filter_complex` fragment that reads `[src]` and writes
//!   `[out]`, typically keying the source over a generated background.
//!
//! Both may use `{w}`, `{h}` (output size in pixels) and `{d}` (segment length
//! in seconds). Music expressions are mono `aevalsrc` expressions of `t` that
//! may use `{bpm}`; they must not contain `'` (the renderer quotes them).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const BUNDLED_JSON: &str = include_str!("../../presets/presets.json");

/// The presets file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Presets {
    pub version: u32,
    pub glitch: Vec<GlitchPreset>,
    pub music: Vec<MusicPreset>,
}

/// A video effect.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GlitchPreset {
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: GlitchKind,
    /// FFmpeg filter chain (`animate`) or graph fragment `[src]…[out]`
    /// (`replace`), with `{w}`, `{h}`, `{d}` placeholders.
    pub filter: String,
}

/// How a glitch preset's filter is applied.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GlitchKind {
    /// A filter chain applied to the whole frame.
    Animate,
    /// Part of the frame is keyed out and replaced by a generated background.
    Replace,
}

/// A generated soundtrack.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MusicPreset {
    pub id: String,
    pub name: String,
    pub description: String,
    pub bpm: u32,
    /// `aevalsrc` expression of `t` (mono), with a `{bpm}` placeholder.
    pub expression: String,
}

impl MusicPreset {
    /// The expression with `{bpm}` substituted, ready for `aevalsrc`.
    pub fn resolved_expression(&self) -> String {
        self.expression.replace("{bpm}", &self.bpm.to_string())
    }
}

/// The presets compiled into the binary, parsed on first use.
///
/// The file is checked by this module's tests, so a parse failure cannot
/// ship; should it happen anyway, the result is an empty set (and an error log)
/// rather than a panic.
pub fn bundled() -> &'static Presets {
    static BUNDLED: OnceLock<Presets> = OnceLock::new();
    BUNDLED.get_or_init(|| {
        serde_json::from_str(BUNDLED_JSON).unwrap_or_else(|e| {
            tracing::error!(error = %e, "bundled presets.json does not parse");
            Presets {
                version: 0,
                glitch: Vec::new(),
                music: Vec::new(),
            }
        })
    })
}

impl Presets {
    /// The glitch preset with this id.
    pub fn glitch(&self, id: &str) -> Option<&GlitchPreset> {
        self.glitch.iter().find(|p| p.id == id)
    }

    /// The music preset with this id.
    pub fn music(&self, id: &str) -> Option<&MusicPreset> {
        self.music.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn bundled_file_parses_with_unique_ids_and_every_kind() {
        let parsed: Presets = serde_json::from_str(BUNDLED_JSON).unwrap();
        assert!(parsed.version >= 1);
        let p = bundled();
        assert_eq!(p.version, parsed.version);

        let mut ids = HashSet::new();
        for id in p
            .glitch
            .iter()
            .map(|g| &g.id)
            .chain(p.music.iter().map(|m| &m.id))
        {
            assert!(ids.insert(id.clone()), "duplicate preset id {id}");
            assert!(
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "bad id {id:?}"
            );
        }
        let animate = p
            .glitch
            .iter()
            .filter(|g| g.kind == GlitchKind::Animate)
            .count();
        let replace = p
            .glitch
            .iter()
            .filter(|g| g.kind == GlitchKind::Replace)
            .count();
        assert!(animate >= 4, "{animate} animate presets");
        assert!(replace >= 2, "{replace} replace presets");
        assert!(p.music.len() >= 3, "{} music presets", p.music.len());
    }

    #[test]
    fn filters_follow_their_kind_syntax() {
        for g in &bundled().glitch {
            assert!(!g.name.is_empty() && !g.description.is_empty(), "{}", g.id);
            match g.kind {
                GlitchKind::Animate => assert!(
                    !g.filter.contains(['[', ']', ';']),
                    "{}: animate filters are plain chains",
                    g.id
                ),
                GlitchKind::Replace => assert!(
                    g.filter.starts_with("[src]") && g.filter.ends_with("[out]"),
                    "{}: replace filters read [src] and write [out]",
                    g.id
                ),
            }
        }
        for m in &bundled().music {
            let e = m.resolved_expression();
            assert!(m.bpm > 0, "{}", m.id);
            assert!(!e.contains(['{', '}', '\'', '|']), "{}: {e}", m.id);
            assert!(e.contains('t'), "{}", m.id);
        }
    }

    #[test]
    fn lookup_by_id() {
        let p = bundled();
        assert_eq!(
            p.glitch("rgb-split").map(|g| g.kind),
            Some(GlitchKind::Animate)
        );
        assert_eq!(
            p.glitch("fractal-sky").map(|g| g.kind),
            Some(GlitchKind::Replace)
        );
        assert_eq!(p.music("arcade").map(|m| m.bpm), Some(140));
        assert!(p.glitch("arcade").is_none());
        assert!(p.music("nope").is_none());
    }
}
