//! Path rules: the one normalized form of a path inside a namespace.
//!
//! A [`RelPath`] is UTF-8, in Unicode NFC, `/`-separated, relative (no leading
//! or trailing `/`), with no empty, `.` or `..` segment, no NUL or other control
//! character, and within the length limits. The root is the empty path.
//! Anything else is rejected with a [`PathError`] saying why; input is never
//! silently "fixed" except for NFC normalization, which is applied so that the
//! same name typed on macOS (NFD) and Linux (NFC) is one path.
//!
//! The namespace is platform-neutral: `What?.txt`, `a:b`, `CON` or a name
//! ending in a dot are ordinary names here, as on Linux and macOS. What one
//! disk cannot hold (Windows, FAT and exFAT refuse such names) is that
//! client's business: it keeps the entry off its disk (`ferry_client::names`).
//!
//! The server runs every path in every request through [`RelPath::parse`]; the
//! client runs every path the server sends through it before touching disk.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Longest allowed segment, in bytes of UTF-8 (common file-system limit).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Longest allowed path, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 4096;
/// Deepest allowed nesting.
pub const MAX_DEPTH: usize = 256;

/// Why a path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("path has more than {MAX_DEPTH} segments")]
    TooDeep,
    #[error("path segment {0:?} is longer than {MAX_SEGMENT_BYTES} bytes")]
    SegmentTooLong(String),
    #[error("path has an empty segment (leading, trailing or doubled '/')")]
    EmptySegment,
    #[error("path segment '.' or '..' is not allowed")]
    DotSegment,
    #[error("path contains a NUL or control character")]
    ControlChar,
    #[error("a single name cannot contain '/'")]
    SlashInName,
    #[error("the root folder cannot be used here")]
    Root,
}

/// A normalized, validated path relative to a namespace root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelPath(String);

impl RelPath {
    /// The namespace root (the empty path).
    pub fn root() -> Self {
        RelPath(String::new())
    }

    /// Validates `s` and returns its normalized (NFC) form.
    ///
    /// A single leading `/` is accepted and dropped (`/a/b` is `a/b`), since
    /// the file API's `path=` parameter is commonly written that way; `/`
    /// alone is the root.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let s = s.strip_prefix('/').unwrap_or(s);
        if s.is_empty() {
            return Ok(Self::root());
        }
        if s.len() > MAX_PATH_BYTES * 4 {
            // Refuse absurd input before normalizing it.
            return Err(PathError::TooLong);
        }
        let nfc: String = s.nfc().collect();
        if nfc.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        let mut depth = 0;
        for segment in nfc.split('/') {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(PathError::TooDeep);
            }
            check_segment(segment)?;
        }
        Ok(RelPath(nfc))
    }

    /// Like [`RelPath::parse`] but refuses the root.
    pub fn parse_non_root(s: &str) -> Result<Self, PathError> {
        let p = Self::parse(s)?;
        if p.is_root() { Err(PathError::Root) } else { Ok(p) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The segments, outermost first (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, or `None` for the root.
    pub fn name(&self) -> Option<&str> {
        if self.is_root() { None } else { self.0.rsplit('/').next() }
    }

    /// The containing folder, or `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].to_owned()),
            None => RelPath::root(),
        })
    }

    /// `self/name`, validating `name` as one segment.
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        if name.contains('/') {
            return Err(PathError::SlashInName);
        }
        let name: String = name.nfc().collect();
        check_segment(&name)?;
        let joined = if self.is_root() { name } else { format!("{}/{}", self.0, name) };
        if joined.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(RelPath(joined))
    }

    /// The same place under `to` that `self` has under `from` (for moving a
    /// subtree): `a/b/c` rebased from `a/b` to `x` is `x/c`. `self` must be
    /// `from` or lie inside it.
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Result<RelPath, PathError> {
        debug_assert!(self.starts_with(from), "{self} is not under {from}");
        let rest = self.0[from.0.len()..].trim_start_matches('/');
        if rest.is_empty() {
            return Ok(to.clone());
        }
        if to.is_root() {
            return Ok(RelPath(rest.to_owned()));
        }
        let joined = format!("{}/{rest}", to.0);
        if joined.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(RelPath(joined))
    }

    /// True when `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

/// The key under which names are unique in a folder: NFC and case-folded, so
/// that `Readme.md` and `README.md` (or an NFD twin) cannot both exist and
/// never meet on a case-insensitive or normalizing file system.
pub fn name_key(name: &str) -> std::borrow::Cow<'_, str> {
    // Most names are ASCII already in lower case: no allocation for them.
    if name.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return std::borrow::Cow::Borrowed(name);
    }
    let lower: String = name.nfd().collect::<String>().to_lowercase();
    std::borrow::Cow::Owned(lower.nfc().collect())
}

/// Whether `c` changes how a name reads without showing itself: the
/// bidirectional overrides, embeddings and isolates (`U+202E` makes
/// `evil\u{202E}txt.exe` read as `evilexe.txt`), zero-width and other
/// invisible characters. Names may hold them (the namespace takes names as
/// they are); what shows a name to a person shows them with [`visible`].
pub fn is_hidden_char(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}')
}

/// `name` as a person should read it: every [`is_hidden_char`] shown as
/// `[U+XXXX]`, but a zero-width joiner or non-joiner between two non-ASCII
/// characters (emoji sequences, Persian words), where it is part of the
/// writing. The web app does the same (`visible` in `server/web/dom.js`).
pub fn visible(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(is_hidden_char) {
        return std::borrow::Cow::Borrowed(name);
    }
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        let joins = matches!(c, '\u{200C}' | '\u{200D}')
            && i > 0
            && !chars[i - 1].is_ascii()
            && chars.get(i + 1).is_some_and(|n| !n.is_ascii() && !is_hidden_char(*n));
        if is_hidden_char(c) && !joins {
            out.push_str(&format!("[U+{:04X}]", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn check_segment(segment: &str) -> Result<(), PathError> {
    if segment.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(PathError::DotSegment);
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err(PathError::SegmentTooLong(segment.chars().take(32).collect()));
    }
    if segment.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    Ok(())
}

/// Lets ordered maps keyed by `RelPath` be searched by `&str` ranges (the
/// order is the string's, so `a/…` sorts between `a/` and `a0`).
impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl serde::Serialize for RelPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One path segment as a pattern (ECMA-262 and Python agree on it): not
/// empty, not `.` or `..`, no `/` and no control character. The byte
/// limits are not expressible; `maxLength` bounds the path in characters.
#[cfg(feature = "openapi")]
const SEGMENT_PATTERN: &str = concat!(
    r"(?:[^/.\u0000-\u001f\u007f-\u009f]|[^/.\u0000-\u001f\u007f-\u009f][^/\u0000-\u001f\u007f-\u009f]",
    r"|\.[^/.\u0000-\u001f\u007f-\u009f]|[^/\u0000-\u001f\u007f-\u009f]{3,255})"
);

#[cfg(feature = "openapi")]
fn path_schema(root: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let seg = SEGMENT_PATTERN;
    let (pattern, description) = if root {
        (
            format!("^/?(?:{seg}(?:/{seg})*)?$"),
            "Path relative to the namespace root ('/'-separated, stored in NFC; '' is the root)",
        )
    } else {
        (
            format!("^/?{seg}(?:/{seg})*$"),
            "Path of a file or folder relative to the namespace root ('/'-separated, stored in NFC)",
        )
    };
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(pattern))
        .max_length(Some(MAX_PATH_BYTES))
        .description(Some(description))
        .into()
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for RelPath {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        path_schema(true)
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for RelPath {}

/// A [`RelPath`] that must not be the root, as the API documents it.
#[cfg(feature = "openapi")]
pub struct NonRootPath;
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for NonRootPath {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        path_schema(false)
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for NonRootPath {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_shown() {
        assert_eq!(visible("plain name.txt"), "plain name.txt");
        assert_eq!(visible("evil\u{202E}txt.exe"), "evil[U+202E]txt.exe");
        assert_eq!(visible("a\u{200B}b\u{FEFF}"), "a[U+200B]b[U+FEFF]");
        assert_eq!(visible("e\u{200D}vil"), "e[U+200D]vil");
        // Part of the writing: an emoji sequence, a Persian word.
        assert_eq!(visible("👨\u{200D}👩\u{200D}👧.png"), "👨\u{200D}👩\u{200D}👧.png");
        assert_eq!(visible("می\u{200C}خواهم"), "می\u{200C}خواهم");
    }

    #[test]
    fn accepts_and_normalizes() {
        assert_eq!(RelPath::parse("a/b.txt").unwrap().as_str(), "a/b.txt");
        assert_eq!(RelPath::parse("/a/b").unwrap().as_str(), "a/b");
        assert!(RelPath::parse("").unwrap().is_root());
        assert!(RelPath::parse("/").unwrap().is_root());
        // NFD "é" becomes NFC.
        assert_eq!(RelPath::parse("cafe\u{301}").unwrap().as_str(), "caf\u{e9}");
        assert_eq!(RelPath::parse("日本/ファイル").unwrap().as_str(), "日本/ファイル");
        assert_eq!(RelPath::parse(".hidden/..x").unwrap().as_str(), ".hidden/..x");
    }

    #[test]
    fn rejects_with_reason() {
        let cases: &[(&str, PathError)] = &[
            ("a//b", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("//a", PathError::EmptySegment),
            ("a/../b", PathError::DotSegment),
            ("..", PathError::DotSegment),
            ("./a", PathError::DotSegment),
            ("a\0b", PathError::ControlChar),
            ("a\nb", PathError::ControlChar),
            ("a\u{7f}", PathError::ControlChar),
            ("a\u{85}b", PathError::ControlChar),
        ];
        for (input, want) in cases {
            assert_eq!(RelPath::parse(input).unwrap_err(), *want, "{input:?}");
        }
        assert_eq!(RelPath::parse(&"x".repeat(256)).unwrap_err(), PathError::SegmentTooLong("x".repeat(32)));
        assert_eq!(RelPath::parse(&["ab"; 2000].join("/")).unwrap_err(), PathError::TooLong);
        assert_eq!(RelPath::parse(&["a"; 300].join("/")).unwrap_err(), PathError::TooDeep);
        assert_eq!(RelPath::parse_non_root("/").unwrap_err(), PathError::Root);
        // Names only some disks cannot hold are ordinary names here.
        for name in
            ["What?.txt", "Meeting: notes.md", "say \"hi\".txt", "CON", "x/com1.txt", "name.", "name ", "a\\b", "<|*>"]
        {
            assert_eq!(RelPath::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn navigation() {
        let p = RelPath::parse("a/b/c.txt").unwrap();
        assert_eq!(p.name(), Some("c.txt"));
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(RelPath::parse("a").unwrap().parent().unwrap(), RelPath::root());
        assert_eq!(p.segments().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
        assert!(p.starts_with(&RelPath::parse("a/b").unwrap()));
        assert!(!p.starts_with(&RelPath::parse("a/bb").unwrap()));
        assert!(RelPath::parse("a/bb").unwrap().starts_with(&RelPath::root()));
        assert_eq!(RelPath::root().join("x").unwrap().as_str(), "x");
        let (ab, x) = (RelPath::parse("a/b").unwrap(), RelPath::parse("x").unwrap());
        assert_eq!(p.rebase(&ab, &x).unwrap().as_str(), "x/c.txt");
        assert_eq!(ab.rebase(&ab, &x).unwrap(), x);
        assert_eq!(p.rebase(&ab, &RelPath::root()).unwrap().as_str(), "c.txt");
        assert_eq!(x.rebase(&RelPath::root(), &ab).unwrap().as_str(), "a/b/x");
        assert!(p.join("..").is_err());
    }

    #[test]
    fn name_key_folds_case_and_normalization() {
        assert_eq!(name_key("README.md"), name_key("readme.MD"));
        assert_eq!(name_key("Cafe\u{301}"), name_key("caf\u{e9}"));
        assert_ne!(name_key("a"), name_key("b"));
    }

    #[test]
    fn serde_validates() {
        let ok: RelPath = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(ok.as_str(), "a/b");
        assert!(serde_json::from_str::<RelPath>("\"../etc/passwd\"").is_err());
    }
}
