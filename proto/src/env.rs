//! Environment variable names, as plans and agent specs carry them.
use serde::{Deserialize, Serialize};
use std::fmt;

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

impl EnvName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if is_env_name(s) {
            Ok(EnvName(s.into()))
        } else {
            Err(format!("{s:?} is not an environment variable name"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what a plan's env and a spec's variables must be.
pub fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl TryFrom<String> for EnvName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        EnvName::parse(&s)
    }
}
impl From<EnvName> for String {
    fn from(n: EnvName) -> String {
        n.0
    }
}
impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
