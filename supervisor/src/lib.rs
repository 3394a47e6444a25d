//! aiops supervisor library: the `aiopsctl` command line and what it shares
//! with the daemon (host facts, helper lookup, exec).
#![deny(unsafe_code)]
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod context;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod exec;
pub mod facts;
pub mod live;
pub mod locate;
pub mod logging;
pub mod model;
pub mod notify;
#[cfg(target_os = "linux")]
pub mod signals;
pub mod store;
#[allow(unsafe_code)] // libgit2's global options; see the module docs
pub mod sys;
pub mod workspace;
