//! The value types of a flow file, each checked as it is deserialised (so
//! serde's error carries the position and field path): ids, bounded
//! counts, the repository address and the git ref.
use super::{MAX_PARALLELISM, MAX_RETRIES};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
/// A flow name or node id: `[a-z0-9][a-z0-9_-]{0,63}`, safe in paths, URLs and branch names.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FlowId(String);
/// Quoted like a string (`"a"`), not `FlowId("a")`: ids reach messages
/// through `{:?}` (`node {:?}: ...`), and the type's name means nothing there.
impl fmt::Debug for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl FlowId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut b = s.bytes();
        let ok = s.len() <= 64
            && matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if ok {
            Ok(FlowId(s.into()))
        } else {
            Err(format!(
                "{s:?}: use 1 to 64 lower-case letters, digits, '_' and '-', starting with a letter or digit"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for FlowId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FlowId::parse(&s)
    }
}
impl From<FlowId> for String {
    fn from(n: FlowId) -> String {
        n.0
    }
}
crate::path::string_schema!(
    FlowId,
    "FlowId",
    "1 to 64 lower-case letters, digits, '_' and '-', starting with a letter or digit"
);
impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A count with an inclusive range, refused with a message when outside it.
macro_rules! bounded {
    ($name:ident, $lo:expr, $hi:expr, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u32", into = "u32")]
        pub struct $name(u32);
        impl $name {
            pub fn get(self) -> u32 {
                self.0
            }
        }
        impl TryFrom<u32> for $name {
            type Error = String;
            fn try_from(v: u32) -> Result<Self, String> {
                if ($lo..=$hi).contains(&v) {
                    Ok($name(v))
                } else {
                    Err(format!("{} {v}: must be {} to {}", $what, $lo, $hi))
                }
            }
        }
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "integer", "minimum": $lo, "maximum": $hi })
            }
        }
        impl From<$name> for u32 {
            fn from(v: $name) -> u32 {
                v.0
            }
        }
    };
}
bounded!(Parallelism, 1, MAX_PARALLELISM, "parallelism");
bounded!(Retries, 0, MAX_RETRIES, "retries");
// Not derived in the macro: a default Parallelism of 0 would be out of range.
#[allow(clippy::derivable_impls)]
impl Default for Retries {
    fn default() -> Self {
        Retries(0)
    }
}

/// Where the workspace comes from: a local path (relative to the flow file's
/// directory, or absolute) or a `file://` URL. Remote URLs are refused: a
/// node never runs against code the supervisor did not already have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoSpec(String);
impl RepoSpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.contains('\0') {
            return Err("repo: give a path or a file:// URL".into());
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.eq_ignore_ascii_case("file") {
                return Err(format!(
                    "{s:?}: {scheme}:// is refused; use a local path or a file:// URL"
                ));
            }
            file_url_path(s)?;
        } else if s.split('/').next().is_some_and(|first| first.contains(':')) {
            return Err(format!(
                "{s:?} looks like a remote (host:path) address; use a local path or a file:// URL"
            ));
        }
        Ok(RepoSpec(s.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
crate::path::string_schema!(
    RepoSpec,
    "RepoSpec",
    "A local path (relative to the flow file's directory, or absolute) or a file:// URL"
);
impl TryFrom<String> for RepoSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RepoSpec::parse(&s)
    }
}
impl From<RepoSpec> for String {
    fn from(r: RepoSpec) -> String {
        r.0
    }
}

/// The absolute path of a `file://` URL (`file:///x` or `file://localhost/x`), percent-decoded.
pub(super) fn file_url_path(url: &str) -> Result<PathBuf, String> {
    let rest = &url["file://".len()..];
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err(format!(
            "{url:?}: a file:// URL names an absolute local path (file:///path)"
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("{url:?}: a query or fragment has no meaning here"));
    }
    let b = rest.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = rest
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(0) | None => return Err(format!("{url:?}: bad %-escape")),
                Some(c) => out.push(c),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(PathBuf::from)
        .map_err(|_| format!("{url:?}: decodes to a path that is not UTF-8"))
}

/// A git revision to check out: a branch, tag or commit. Refuses what git
/// itself refuses in ref names, and a leading '-' (it would read as an option).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GitRef(String);
impl GitRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = s.is_empty()
            || s.len() > 255
            || s.starts_with(['-', '/'])
            || s.ends_with(['/', '.'])
            || s.contains("..")
            || s.contains("@{")
            || s.contains("//")
            || s.ends_with(".lock")
            || s.chars()
                .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
        if bad {
            Err(format!("{s:?} is not a valid git branch, tag or commit"))
        } else {
            Ok(GitRef(s.into()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl Default for GitRef {
    fn default() -> Self {
        GitRef("HEAD".into())
    }
}
crate::path::string_schema!(
    GitRef,
    "GitRef",
    "A git branch, tag or commit; not starting with '-'"
);
impl TryFrom<String> for GitRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        GitRef::parse(&s)
    }
}
impl From<GitRef> for String {
    fn from(r: GitRef) -> String {
        r.0
    }
}
