//! Static lint of shell commands: destructive operations and sandbox-escape
//! attempts, with spans.
