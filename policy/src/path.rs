//! Typed paths for policy files. A `PathSpec` is absolute or starts with one
//! of the known variables; it is normalised at parse time and `..` or a
//! relative path is refused, so later code never has to ask.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Variables a profile path may start with.
pub const VARIABLES: &[&str] = &["WORKSPACE", "HOME", "TMPDIR"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathSpec {
    /// `Some("WORKSPACE")` for `$WORKSPACE/...`, `None` for an absolute path.
    var: Option<String>,
    /// Normalised components after the variable (or after `/`).
    rest: Vec<String>,
}

/// What the variables stand for when a plan is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathVars {
    pub workspace: Option<AbsPath>,
    pub home: Option<AbsPath>,
    pub tmpdir: Option<AbsPath>,
}

/// An absolute, normalised path (no `.`/`..`, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct AbsPath(PathBuf);

fn normal_components(s: &str, what: &str) -> Result<Vec<String>, String> {
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
    pub fn contains(&self, other: &AbsPath) -> bool {
        other.0.starts_with(&self.0)
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

impl PathSpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(after) = s.strip_prefix('$') {
            let (name, rest) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            if !VARIABLES.contains(&name) {
                return Err(format!(
                    "unknown variable ${name} in {s:?} (known: ${})",
                    VARIABLES.join(", $")
                ));
            }
            Ok(PathSpec {
                var: Some(name.to_string()),
                rest: normal_components(rest, "path")?,
            })
        } else if s.starts_with('/') {
            Ok(PathSpec {
                var: None,
                rest: normal_components(s, "path")?,
            })
        } else {
            Err(format!(
                "path {s:?} is relative: use an absolute path or start with ${}",
                VARIABLES.join(", $")
            ))
        }
    }

    pub fn var(&self) -> Option<&str> {
        self.var.as_deref()
    }

    /// Substitute the variables; `field` names the entry for the error.
    pub fn resolve(&self, vars: &PathVars, field: &str) -> Result<AbsPath, crate::PolicyError> {
        let base = match self.var.as_deref() {
            None => PathBuf::from("/"),
            Some(v) => {
                let val = match v {
                    "WORKSPACE" => &vars.workspace,
                    "HOME" => &vars.home,
                    _ => &vars.tmpdir,
                };
                match val {
                    Some(p) => p.0.clone(),
                    None => {
                        return Err(crate::PolicyError::UnboundVariable {
                            field: field.into(),
                            var: v.into(),
                        })
                    }
                }
            }
        };
        let mut p = base;
        p.extend(&self.rest);
        Ok(AbsPath(p))
    }
}

impl TryFrom<String> for PathSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PathSpec::parse(&s)
    }
}
impl From<PathSpec> for String {
    fn from(p: PathSpec) -> String {
        p.to_string()
    }
}
impl fmt::Display for PathSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.var {
            Some(v) => write!(f, "${v}")?,
            None if self.rest.is_empty() => return f.write_str("/"),
            None => {}
        }
        for c in &self.rest {
            write!(f, "/{c}")?;
        }
        Ok(())
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

macro_rules! string_schema {
    ($t:ty, $name:literal, $desc:literal) => {
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $desc })
            }
        }
    };
}
pub(crate) use string_schema;
string_schema!(
    PathSpec,
    "PathSpec",
    "An absolute path, or one starting with $WORKSPACE, $HOME or $TMPDIR; `..` is refused"
);
string_schema!(
    RelPath,
    "RelPath",
    "A path relative to each writable root, such as .git/hooks; `..` is refused"
);
string_schema!(AbsPath, "AbsPath", "An absolute, normalised path");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn normalises_absolute_and_variable_paths() {
        assert_eq!(
            PathSpec::parse("/usr//lib/./x/").unwrap().to_string(),
            "/usr/lib/x"
        );
        assert_eq!(
            PathSpec::parse("$HOME/.cargo").unwrap().to_string(),
            "$HOME/.cargo"
        );
        assert_eq!(
            PathSpec::parse("$WORKSPACE").unwrap().to_string(),
            "$WORKSPACE"
        );
        assert_eq!(PathSpec::parse("/").unwrap().to_string(), "/");
    }

    #[test]
    fn refuses_relative_parent_and_unknown_variable() {
        assert!(PathSpec::parse("usr/lib").unwrap_err().contains("relative"));
        assert!(PathSpec::parse("/usr/../etc").unwrap_err().contains(".."));
        assert!(PathSpec::parse("$HOMEDIR/x")
            .unwrap_err()
            .contains("unknown variable"));
        assert!(RelPath::parse("../x").is_err());
        assert!(RelPath::parse("/x").is_err());
    }

    #[test]
    fn resolves_variables_and_reports_unbound_ones() {
        let vars = PathVars {
            workspace: Some(AbsPath::new("/w").unwrap()),
            ..Default::default()
        };
        let p = PathSpec::parse("$WORKSPACE/src").unwrap();
        assert_eq!(
            p.resolve(&vars, "f").unwrap(),
            AbsPath::new("/w/src").unwrap()
        );
        let err = PathSpec::parse("$HOME/x")
            .unwrap()
            .resolve(&vars, "fs.read[0]");
        assert!(err.unwrap_err().to_string().contains("$HOME"));
    }

    #[test]
    fn containment_is_by_component() {
        let usr = AbsPath::new("/usr").unwrap();
        assert!(usr.contains(&AbsPath::new("/usr/lib").unwrap()));
        assert!(!usr.contains(&AbsPath::new("/usrx").unwrap()));
    }
}
