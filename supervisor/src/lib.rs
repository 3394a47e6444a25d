//! aiops supervisor library: the `aiopsctl` command line and what it shares
//! with the daemon (host facts, helper lookup, exec).
#![deny(unsafe_code)]
pub mod api;
#[cfg(target_os = "linux")]
pub mod audit;
pub mod cli;
pub mod config;
pub mod context;
#[cfg(target_os = "linux")]
pub mod daemon;
pub mod denials;
pub mod egress;
#[cfg(target_os = "linux")]
pub mod engine;
pub mod error;
pub mod exec;
pub mod facts;
#[cfg(target_os = "linux")]
pub mod gc;
pub mod live;
pub mod locate;
pub mod logging;
pub mod model;
#[cfg(target_os = "linux")]
pub mod notify;
#[cfg(target_os = "linux")]
pub mod signals;
#[cfg(target_os = "linux")]
pub mod store;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // libgit2's global options; see the module docs
pub mod sys;
#[cfg(target_os = "linux")]
pub mod workspace;
