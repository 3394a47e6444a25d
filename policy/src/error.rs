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
    /// The file is not UTF-8 text (a profile, node caps or flow must be).
    #[error("{}: not UTF-8 text (invalid byte at offset {offset})", .path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    /// The file is larger than any profile, node caps or flow needs to be.
    #[error("{}: {size} bytes, over the {cap}-byte cap for {what} files", .path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        size: u64,
        cap: u64,
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
            PolicyError::NotUtf8 { .. } | PolicyError::TooLarge { .. } => exit::DATAERR,
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

/// The largest profile, node-caps or flow file read (1 MiB): the shipped
/// ones are a few KiB, and a larger file is a mistake, not a policy.
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Read a policy input file (`what`: "profile", "node caps", "flow") as
/// UTF-8 text of at most `MAX_INPUT_BYTES`, naming the file and the cap.
pub fn read_input(path: &std::path::Path, what: &'static str) -> Result<String, PolicyError> {
    use std::io::Read;
    let read_err = |source| PolicyError::Read {
        path: path.into(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    // One byte past the cap tells "too large" apart without trusting the
    // size a stat gives (a FIFO or /proc file has none).
    f.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64)
            .max(bytes.len() as u64);
        return Err(PolicyError::TooLarge {
            path: path.into(),
            what,
            size,
            cap: MAX_INPUT_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| PolicyError::NotUtf8 {
        path: path.into(),
        offset: e.utf8_error().valid_up_to(),
    })
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
        let path = field_path(&track.path().to_string());
        toml_error(file, src, &e, if path == "." { "" } else { &path })
    })
}

/// toml's `Spanned<T>` deserializes through a private field whose name
/// would otherwise show in the path (`node[0].id.$__serde_spanned_private_value`):
/// leave such segments out, so the path names the user's field.
fn field_path(path: &str) -> String {
    path.split('.')
        .filter(|seg| !seg.starts_with("$__"))
        .collect::<Vec<_>>()
        .join(".")
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
