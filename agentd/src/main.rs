//! aiops-agentd
fn main() {}
