//! Typed paths for policy files. A `PathSpec` is absolute or starts with one
//! of the known variables; it is normalised at parse time and `..` or a
//! relative path is refused, so later code never has to ask.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

pub use aiops_proto::path::{normal_components, AbsPath, RelPath};

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
                    Some(p) => p.as_path().to_path_buf(),
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
        // Normal by construction: the base is an AbsPath, the rest normalised components.
        AbsPath::try_from(p).map_err(|reason| crate::PolicyError::Invalid {
            what: field.into(),
            reason,
        })
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

/// `impl JsonSchema` for a type serialised as a string (only with the
/// `schema` feature, like every invocation).
#[cfg(feature = "schema")]
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
#[cfg(feature = "schema")]
pub(crate) use string_schema;
#[cfg(feature = "schema")]
string_schema!(
    PathSpec,
    "PathSpec",
    "An absolute path, or one starting with $WORKSPACE, $HOME or $TMPDIR; `..` is refused"
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
