//! The one error enum of the policy crate. Every variant names the step or
//! the field that failed, so the edge can print a single actionable line.
use aiops_proto::exit;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("read {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, type, unknown key, bad unit, bad path, unknown syscall, ...:
    /// anything found while deserializing, with its position and field path.
    #[error("{}:{line}:{column}: {field}: {message}", .file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    #[error("profile {name:?} not found (searched {})", display_paths(.searched))]
    ProfileNotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("{}: extends cycle: {}", .file.display(), .chain.join(" -> "))]
    ExtendsCycle { file: PathBuf, chain: Vec<String> },
    #[error("{}: extends chain deeper than {max}", .file.display())]
    ExtendsTooDeep { file: PathBuf, max: usize },
    #[error("{}: profile name {name:?} does not match file name {stem:?}", .file.display())]
    NameMismatch {
        file: PathBuf,
        name: String,
        stem: String,
    },
    #[error("{field} {entry}: outside profile {profile:?}")]
    OutsideProfile {
        field: String,
        entry: String,
        profile: String,
    },
    #[error("refused: layer {layer} unavailable: {reason}")]
    Refused { layer: String, reason: String },
    #[error("{field}: variable ${var} has no value in this context")]
    UnboundVariable { field: String, var: String },
    #[error("invalid plan: {field}: {reason}")]
    InvalidPlan { field: String, reason: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("protocol error: {reason}")]
    Protocol { reason: String },
    /// A flow check serde cannot make (a command that does not fit the
    /// node's kind, a duplicate id, an unknown need, ...), with its position.
    #[error("{}:{line}:{column}: {field}: {reason}", .file.display())]
    FlowInvalid {
        file: PathBuf,
        line: usize,
        column: usize,
        field: String,
        reason: String,
    },
    /// Nodes that need each other, named in order: `a -> b -> a`.
    #[error("{}:{line}:{column}: {field}: needs cycle: {}", .file.display(), .cycle.join(" -> "))]
    NeedsCycle {
        file: PathBuf,
        line: usize,
        column: usize,
        field: String,
        cycle: Vec<String>,
    },
}

fn display_paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl PolicyError {
    /// Distinct exit codes per failure class, documented in docs/operations.md.
    pub fn exit_code(&self) -> i32 {
        match self {
            PolicyError::Read { .. } => exit::NOINPUT,
            PolicyError::Parse { .. } => exit::DATAERR,
            PolicyError::ProfileNotFound { .. } => exit::NOINPUT,
            PolicyError::ExtendsCycle { .. } | PolicyError::ExtendsTooDeep { .. } => exit::DATAERR,
            PolicyError::NameMismatch { .. } => exit::DATAERR,
            PolicyError::OutsideProfile { .. } => exit::NOPERM,
            PolicyError::Refused { .. } => exit::UNAVAILABLE,
            PolicyError::UnboundVariable { .. } => exit::CONFIG,
            PolicyError::InvalidPlan { .. } | PolicyError::Invalid { .. } => exit::DATAERR,
            PolicyError::Protocol { .. } => exit::PROTOCOL,
            PolicyError::FlowInvalid { .. } | PolicyError::NeedsCycle { .. } => exit::DATAERR,
        }
    }
}

/// 1-based line and column (in chars) of a byte offset in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Deserialize strict TOML into `T`, turning any failure into `PolicyError::Parse`
/// with the file, line, column and the dotted field path.
pub fn from_toml<T: serde::de::DeserializeOwned>(
    file: &std::path::Path,
    src: &str,
) -> Result<T, PolicyError> {
    let de = toml::de::Deserializer::parse(src).map_err(|e| toml_error(file, src, &e, ""))?;
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
    T::deserialize(tracked).map_err(|e: toml::de::Error| {
        let path = track.path().to_string();
        toml_error(file, src, &e, if path == "." { "" } else { &path })
    })
}

fn toml_error(file: &std::path::Path, src: &str, e: &toml::de::Error, field: &str) -> PolicyError {
    let (line, column) = e.span().map(|s| line_col(src, s.start)).unwrap_or((1, 1));
    PolicyError::Parse {
        file: file.to_path_buf(),
        line,
        column,
        field: if field.is_empty() {
            "(document)".into()
        } else {
            field.into()
        },
        message: e.message().trim().to_string(),
    }
}

pub use aiops_proto::error_chain;

/// A plan or message that proto refused keeps its class (and exit code).
impl From<aiops_proto::ProtoError> for PolicyError {
    fn from(e: aiops_proto::ProtoError) -> Self {
        use aiops_proto::ProtoError as P;
        match e {
            P::InvalidPlan { field, reason } => PolicyError::InvalidPlan { field, reason },
            P::InvalidSpec { field, reason } => PolicyError::Invalid {
                what: format!("agent spec {field}"),
                reason,
            },
            P::Protocol { reason } => PolicyError::Protocol { reason },
        }
    }
}
