//! Typed paths on the wire: absolute and normalised (`AbsPath`), or
//! relative to a writable root (`RelPath`). A decoded plan never holds `..`.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// An absolute, normalised path (no `.`/`..`, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct AbsPath(PathBuf);

pub fn normal_components(s: &str, what: &str) -> Result<Vec<String>, String> {
    if s.contains('\0') {
        return Err(format!("{what} {s:?} contains a NUL byte"));
    }
    let mut out = Vec::new();
    for c in Path::new(s).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(
                n.to_str()
                    .ok_or_else(|| format!("{what} {s:?} is not UTF-8"))?
                    .to_string(),
            ),
            Component::ParentDir => return Err(format!("{what} {s:?} contains `..`")),
            Component::Prefix(_) => return Err(format!("{what} {s:?} has a prefix")),
        }
    }
    Ok(out)
}

impl AbsPath {
    pub fn new(p: impl AsRef<Path>) -> Result<Self, String> {
        let p = p.as_ref();
        let s = p
            .to_str()
            .ok_or_else(|| format!("path {p:?} is not UTF-8"))?;
        if !s.starts_with('/') {
            return Err(format!("path {s:?} is not absolute"));
        }
        let comps = normal_components(s, "path")?;
        let mut buf = PathBuf::from("/");
        buf.extend(comps);
        Ok(AbsPath(buf))
    }
    pub fn as_path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, rel: &RelPath) -> AbsPath {
        AbsPath(self.0.join(&rel.0))
    }
    /// Component-wise prefix test: `/usr` contains `/usr/lib` but not `/usrx`.
    /// `other` is this path or below it. Both are normal (`new`), so a
    /// byte prefix ending at a separator is the same answer as
    /// `Path::starts_with`, without walking components (the compiler asks
    /// this a few hundred times per plan).
    pub fn contains(&self, other: &AbsPath) -> bool {
        let (me, it) = (
            self.0.as_os_str().as_encoded_bytes(),
            other.0.as_os_str().as_encoded_bytes(),
        );
        me == b"/"
            || it
                .strip_prefix(me)
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
    }
    pub fn depth(&self) -> usize {
        self.0.components().count()
    }
}

/// Already what `AbsPath::new` would make of it: absolute, no empty, `.`
/// or `..` component, no trailing slash, no NUL.
fn is_normal(s: &str) -> bool {
    s == "/"
        || (s.starts_with('/')
            && !s.ends_with('/')
            && !s.contains('\0')
            && s[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

impl TryFrom<PathBuf> for AbsPath {
    type Error = String;
    /// Keeps the buffer of a path already in normal form: every plan the
    /// jailer decodes is full of them (see `JailRequest::decode`).
    fn try_from(p: PathBuf) -> Result<Self, String> {
        if p.to_str().is_some_and(is_normal) {
            return Ok(AbsPath(p));
        }
        AbsPath::new(p)
    }
}
impl From<AbsPath> for PathBuf {
    fn from(p: AbsPath) -> PathBuf {
        p.0
    }
}
impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

/// A path relative to a writable root (protected paths such as `.git/hooks`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(PathBuf);

impl RelPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('/') || s.starts_with('$') {
            return Err(format!(
                "protected path {s:?} must be relative to a writable root"
            ));
        }
        let comps = normal_components(s, "protected path")?;
        if comps.is_empty() {
            return Err(format!("protected path {s:?} is empty"));
        }
        Ok(RelPath(comps.iter().collect()))
    }
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}
impl TryFrom<String> for RelPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RelPath::parse(&s)
    }
}
impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0.display().to_string()
    }
}
impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `contains` answers as `Path::starts_with` on every pair.
    #[test]
    fn contains_is_path_starts_with() {
        let all = [
            "/", "/a", "/a/b", "/a-b", "/ab", "/a/b/c", "/a/bc", "/b", "/tmp", "/tmp/x", "/tmpx",
        ];
        for a in all {
            for b in all {
                let (pa, pb) = (AbsPath::new(a).unwrap(), AbsPath::new(b).unwrap());
                assert_eq!(
                    pa.contains(&pb),
                    Path::new(b).starts_with(a),
                    "{a} contains {b}"
                );
            }
        }
    }

    /// The fast path of `TryFrom<PathBuf>` agrees with `AbsPath::new`.
    #[test]
    fn abs_path_from_a_buffer_is_new() {
        for s in [
            "/",
            "/usr",
            "/usr/lib",
            "//usr",
            "/usr/",
            "/usr//lib",
            "/./usr",
            "/usr/.",
            "/usr/..",
            "/a/../b",
            "/a/.b/..c",
            "/...",
            "usr",
            "",
            "/a\0b",
            "/\u{e9}t\u{e9}",
        ] {
            let via_buf = AbsPath::try_from(PathBuf::from(s));
            assert_eq!(via_buf, AbsPath::new(s), "{s:?}");
        }
        assert!(AbsPath::try_from(PathBuf::from("/a/../b")).is_err());
        assert_eq!(
            AbsPath::try_from(PathBuf::from("/usr//lib/"))
                .unwrap()
                .to_string(),
            "/usr/lib"
        );
    }

    #[test]
    fn relative_paths_stay_below_their_root() {
        assert!(RelPath::parse("../x").is_err());
        assert!(RelPath::parse("/x").is_err());
        assert_eq!(RelPath::parse("a//b/").unwrap().to_string(), "a/b");
    }

    #[test]
    fn containment_is_by_component() {
        let usr = AbsPath::new("/usr").unwrap();
        assert!(usr.contains(&AbsPath::new("/usr/lib").unwrap()));
        assert!(!usr.contains(&AbsPath::new("/usrx").unwrap()));
    }
}
