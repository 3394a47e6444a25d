//! aiops-jailer
fn main() {}
