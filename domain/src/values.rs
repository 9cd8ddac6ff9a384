//! Parse-don't-validate value types. Each is built only through `parse`, so a
//! value of the type is valid by construction.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a field was refused, with a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(Username);
string_newtype!(Email);
string_newtype!(DisplayName);
string_newtype!(Bio);
string_newtype!(ImageUrl);
string_newtype!(Caption);
string_newtype!(CommentBody);
string_newtype!(SearchQuery);
string_newtype!(ModerationReason);

/// Checks `raw` as free text and trims it: at most `max` characters as sent,
/// at least `min` after trimming, no control characters anywhere (line
/// breaks only where `multiline`).
fn text(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, FieldError> {
    // the raw text is bounded (what the API documents: `maxLength` and a
    // pattern on what is sent); what is kept is trimmed and not empty when
    // `min` is 1
    let t = raw.trim();
    let len = t.chars().count();
    if len < min || raw.chars().count() > max {
        let message = if min == 0 {
            format!("must be at most {max} characters")
        } else {
            format!("must be {min} to {max} characters")
        };
        return Err(FieldError::new(field, "length", message));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\r');
    if raw.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(FieldError::new(
            field,
            "format",
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

impl Username {
    pub const MIN: usize = 3;
    pub const MAX: usize = 30;

    /// 3–30 characters: ASCII letters, digits and underscore, starting with a letter.
    /// Case is kept; uniqueness is case-insensitive (see `normalized`).
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let len = raw.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&len) {
            return Err(FieldError::new(
                field,
                "length",
                format!("must be {} to {} characters", Self::MIN, Self::MAX),
            ));
        }
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(FieldError::new(
                field,
                "format",
                "must start with a letter and contain only letters, digits and underscores",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The form used for case-insensitive uniqueness.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl Email {
    pub const MAX: usize = 254;

    /// A pragmatic address check: one `@`, a non-empty local part of at most 64
    /// characters, a dotted domain of letters, digits, hyphens; no whitespace.
    /// Stored lower-cased: addresses are unique case-insensitively.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new(field, "format", "must be a valid email address");
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > Self::MAX || raw.chars().any(|c| c.is_whitespace()) {
            return Err(bad());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(bad());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(bad());
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad());
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }
}

impl DisplayName {
    pub const MAX: usize = 50;

    /// 1–50 characters after trimming, no control characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        text(field, raw, 1, Self::MAX, false).map(Self)
    }

    /// A username is always a valid display name (the default at signup).
    pub fn from_username(u: &Username) -> Self {
        Self(u.as_str().to_owned())
    }
}

impl Bio {
    pub const MAX: usize = 500;

    /// At most 500 characters; line breaks allowed, other control characters not.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        text(field, raw, 0, Self::MAX, true).map(Self)
    }
}

impl ImageUrl {
    pub const MAX: usize = 2048;

    /// A URL this server issued for a stored file (the `file_url` of a
    /// completed image), kept as issued.
    pub fn issued(url: String) -> Self {
        Self(url)
    }

    /// An absolute `http` or `https` URL of at most 2048 characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        if raw.len() > Self::MAX {
            return Err(FieldError::new(
                field,
                "length",
                format!("must be at most {} characters", Self::MAX),
            ));
        }
        match url::Url::parse(raw) {
            Ok(u) if Self::documented_shape(raw) && u.has_host() => Ok(Self(u.to_string())),
            _ => Err(FieldError::new(
                field,
                "format",
                "must be an absolute http(s) URL",
            )),
        }
    }
}

impl ImageUrl {
    /// The shape the API documents (`^https?://host(:port)?(/path)?$`):
    /// lower-case scheme, a host of letters, digits, dots and hyphens whose
    /// last label starts with a letter, a port of at most 4 digits, and a
    /// path of URL-safe characters; no user info, query or fragment.
    fn documented_shape(raw: &str) -> bool {
        let Some(rest) = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
        else {
            return false;
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if port
            .is_some_and(|p| p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return false;
        }
        let label_ok =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !host.split('.').all(label_ok) {
            return false;
        }
        let last_starts_with_letter = host
            .rsplit('.')
            .next()
            .and_then(|l| l.bytes().next())
            .is_some_and(|b| b.is_ascii_alphabetic());
        last_starts_with_letter
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@%/-".contains(&b))
    }
}

impl Caption {
    pub const MAX: usize = 2200;

    /// At most 2200 characters (hashtags included); line breaks allowed.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        text(field, raw, 0, Self::MAX, true).map(Self)
    }
}

impl Caption {
    /// The hashtags in the caption, case-folded, each once, in order of
    /// first appearance: `#` at the start or after a character that is not
    /// part of a word, then letters, digits (any script: `#댄스` is a tag)
    /// and underscores, at most 50 of them. At most 30 tags per caption.
    pub fn hashtags(&self) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        let chars: Vec<char> = self.0.chars().collect();
        let word = |c: char| c.is_alphanumeric() || c == '_';
        let mut i = 0;
        while i < chars.len() && tags.len() < 30 {
            if chars[i] == '#' && (i == 0 || !word(chars[i - 1]) && chars[i - 1] != '#') {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && word(chars[end]) {
                    end += 1;
                }
                // a tag has a letter (`#1` is a number, not a tag)
                if end > start
                    && end - start <= 50
                    && chars[start..end].iter().any(|c| c.is_alphabetic())
                {
                    let tag: String = chars[start..end].iter().collect::<String>().to_lowercase();
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
        tags
    }

    /// The words of the caption outside hashtags and mentions, lowercased,
    /// each once: what autocomplete offers as keywords. Words of 2–30
    /// letters or digits (any script), at most 50 per caption.
    pub fn keywords(&self) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        for token in self
            .0
            .split(|c: char| !(c.is_alphanumeric() || c == '#' || c == '@'))
        {
            if token.starts_with('#') || token.starts_with('@') || token.contains(['#', '@']) {
                continue;
            }
            let len = token.chars().count();
            if !(2..=30).contains(&len) || !token.chars().any(|c| c.is_alphabetic()) {
                continue;
            }
            let word = token.to_lowercase();
            if !words.contains(&word) {
                words.push(word);
                if words.len() == 50 {
                    break;
                }
            }
        }
        words
    }
}

impl SearchQuery {
    pub const MAX: usize = 100;

    /// 1–100 characters after trimming, on one line. Inner runs of
    /// whitespace become one space, so `"cat  video"` and `"cat video"` are
    /// one history entry.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let t = text(field, raw, 1, Self::MAX, false)?;
        Ok(Self(t.split_whitespace().collect::<Vec<_>>().join(" ")))
    }
}

/// Most words [`name_words`] gives.
pub const NAME_WORDS_MAX: usize = 8;

/// The words a person is found by, from their username and display name,
/// and the words a people search looks for: runs of letters of any script,
/// lowercased, each once, in order, at most [`NAME_WORDS_MAX`] of up to 30
/// letters. Digits, `_` and punctuation only separate words
/// (`neon_fox12` → `neon`, `fox`): a number in a name is rarely what
/// anybody searches for, and every `fox<n>` as a word of its own would fill
/// the lexicon with one entry per person.
pub fn name_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for run in text.split(|c: char| !c.is_alphabetic()) {
        if run.is_empty() {
            continue;
        }
        let word: String = run.chars().take(30).collect::<String>().to_lowercase();
        if !words.contains(&word) {
            words.push(word);
            if words.len() == NAME_WORDS_MAX {
                break;
            }
        }
    }
    words
}

impl CommentBody {
    pub const MAX: usize = 1000;

    /// 1–1000 characters after trimming; line breaks allowed.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        text(field, raw, 1, Self::MAX, true).map(Self)
    }
}

impl ModerationReason {
    pub const MAX: usize = 500;

    /// Why an admin acted: 1–500 characters after trimming, kept in the
    /// event and shown in the audit.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        text(field, raw, 1, Self::MAX, true).map(Self)
    }
}

/// Who may see a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        match raw {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            _ => Err(FieldError::new(
                field,
                "format",
                "must be \"public\" or \"private\"",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// Measured properties of an uploaded video, each checked for range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VideoDimensions {
    pub width: u32,
    pub height: u32,
    /// Seconds.
    pub duration: f64,
}

impl VideoDimensions {
    pub const MAX_SIDE: u32 = 8192;
    pub const MAX_DURATION: f64 = 600.0;

    /// Every bad field is reported, not only the first.
    pub fn parse(width: i64, height: i64, duration: f64) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let side = |field: &'static str, v: i64, errors: &mut Vec<FieldError>| {
            if v < 1 || v > Self::MAX_SIDE as i64 {
                errors.push(FieldError::new(
                    field,
                    "range",
                    format!("must be 1 to {}", Self::MAX_SIDE),
                ));
            }
        };
        side("width", width, &mut errors);
        side("height", height, &mut errors);
        if !(duration.is_finite() && duration > 0.0 && duration <= Self::MAX_DURATION) {
            errors.push(FieldError::new(
                "actual_duration",
                "range",
                format!(
                    "must be more than 0 and at most {} seconds",
                    Self::MAX_DURATION
                ),
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                width: width as u32,
                height: height as u32,
                duration,
            })
        } else {
            Err(errors)
        }
    }
}

/// A plain-text password as typed. Never serialized, never logged.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub const MIN: usize = 8;
    pub const MAX: usize = 128;

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let len = raw.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&len) {
            return Err(FieldError::new(
                field,
                "length",
                format!("must be {} to {} characters", Self::MIN, Self::MAX),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashtags_are_unicode_aware_case_folded_and_once_each() {
        let c = Caption::parse(
            "caption",
            "오늘 #댄스 챌린지 #Dance #dance a#b ##x #1 #_ok #끝.",
        )
        .unwrap();
        assert_eq!(c.hashtags(), vec!["댄스", "dance", "_ok", "끝"]);
        let none = Caption::parse("caption", "no tags here, just # and 100%").unwrap();
        assert!(none.hashtags().is_empty());
        let many = (0..40)
            .map(|i| format!("#t{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            Caption::parse("caption", &many).unwrap().hashtags().len(),
            30
        );
    }

    #[test]
    fn keywords_skip_tags_mentions_and_noise() {
        let c = Caption::parse(
            "caption",
            "Dance video, 고양이가 춤춘다! #dance @bob a 42 Dance",
        )
        .unwrap();
        assert_eq!(c.keywords(), vec!["dance", "video", "고양이가", "춤춘다"]);
    }

    #[test]
    fn name_words_are_letter_runs_of_any_script() {
        assert_eq!(name_words("neon_fox12 Neon Fox"), vec!["neon", "fox"]);
        assert_eq!(name_words("Kosmic.Phenix"), vec!["kosmic", "phenix"]);
        assert_eq!(name_words("김민수 (Minsu) 김민수"), vec!["김민수", "minsu"]);
        assert_eq!(name_words("2pac"), vec!["pac"]);
        assert!(name_words("1234 _ !").is_empty());
        let long = "a".repeat(40);
        assert_eq!(name_words(&long), vec!["a".repeat(30)]);
        let many = "a b c d e f g h i j";
        assert_eq!(name_words(many).len(), NAME_WORDS_MAX);
    }

    #[test]
    fn search_queries_collapse_whitespace() {
        assert_eq!(
            SearchQuery::parse("q", "  cat   video ").unwrap().as_str(),
            "cat video"
        );
        assert_eq!(SearchQuery::parse("q", "   ").unwrap_err().code, "length");
        assert_eq!(
            SearchQuery::parse("q", &"x".repeat(101)).unwrap_err().code,
            "length"
        );
        assert_eq!(SearchQuery::parse("q", "a\nb").unwrap_err().code, "format");
    }

    #[test]
    fn usernames() {
        assert!(Username::parse("u", "trick_ster9").is_ok());
        assert_eq!(Username::parse("u", "ab").unwrap_err().code, "length");
        assert_eq!(
            Username::parse("u", &"a".repeat(31)).unwrap_err().code,
            "length"
        );
        assert_eq!(Username::parse("u", "9abc").unwrap_err().code, "format");
        assert_eq!(Username::parse("u", "ab cd").unwrap_err().code, "format");
        assert_eq!(Username::parse("u", "Trick").unwrap().normalized(), "trick");
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("e", "A.B@Example.COM").unwrap().as_str(),
            "a.b@example.com"
        );
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@@b.c", "a@-b.c",
        ] {
            assert!(Email::parse("e", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn video_values() {
        assert!(Caption::parse("caption", &"x".repeat(2201)).is_err());
        assert_eq!(
            Caption::parse("caption", " #glitch ").unwrap().as_str(),
            "#glitch"
        );
        assert!(CommentBody::parse("body", "  ").is_err());
        assert_eq!(
            Visibility::parse("v", "private").unwrap(),
            Visibility::Private
        );
        assert!(Visibility::parse("v", "secret").is_err());
        assert!(VideoDimensions::parse(1080, 1920, 12.5).is_ok());
        let errs = VideoDimensions::parse(0, 99999, f64::NAN).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["width", "height", "actual_duration"]);
    }

    #[test]
    fn others() {
        assert!(DisplayName::parse("d", "   ").is_err());
        assert_eq!(DisplayName::parse("d", " Kim ").unwrap().as_str(), "Kim");
        assert!(Bio::parse("b", &"x".repeat(501)).is_err());
        assert!(ImageUrl::parse("i", "ftp://x.y/a.png").is_err());
        assert!(ImageUrl::parse("i", "https://cdn.lokiz.dev/a.png").is_ok());
        assert!(ImageUrl::parse("i", "http://localhost:8080/p/a-b_c.png").is_ok());
        // what url::Url reads but the documented shape excludes
        for other in [
            "http://a*/x.png",
            "HTTP://cdn.lokiz.dev/a.png",
            "https://user@cdn.lokiz.dev/a.png",
            "https://cdn.lokiz.dev/a.png?size=2",
            "https://1.2.3.4/a.png",
            "https://cdn.lokiz.dev:123456/a.png",
        ] {
            assert!(ImageUrl::parse("i", other).is_err(), "{other}");
        }
        assert!(Password::parse("p", "short").is_err());
        assert_eq!(
            format!("{:?}", Password::parse("p", "longenough").unwrap()),
            "Password(***)"
        );
    }
}
