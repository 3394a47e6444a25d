//! The one error enum of the proto crate: a message that is not what the
//! protocol allows. Each names the field or the frame that failed.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A plan that decodes but breaks a structural rule (`JailPlan::validate`).
    #[error("invalid plan: {field}: {reason}")]
    InvalidPlan { field: String, reason: String },
    /// An agent spec that decodes but breaks a rule (`AgentSpec::validate`).
    #[error("invalid agent spec: {field}: {reason}")]
    InvalidSpec { field: String, reason: String },
    /// Bad bytes: not JSON of the right shape, too long, wrong version.
    #[error("protocol error: {reason}")]
    Protocol { reason: String },
}

pub(crate) fn protocol(reason: String) -> ProtoError {
    ProtoError::Protocol { reason }
}

/// `error: cause: cause`, as every binary prints an error (one line).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
