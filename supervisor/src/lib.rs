//! aiops supervisor library
#![forbid(unsafe_code)]
pub mod exec;
pub mod signals;
