//! aiops supervisor library
#![forbid(unsafe_code)]
