//! aiops supervisor library: the `aiopsctl` command line and what it shares
//! with the daemon (host facts, helper lookup, exec).
#![forbid(unsafe_code)]
pub mod cli;
pub mod context;
pub mod egress;
pub mod error;
pub mod exec;
pub mod facts;
pub mod live;
pub mod locate;
pub mod logging;
#[cfg(target_os = "linux")]
pub mod signals;
