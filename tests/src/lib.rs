//! Shared helpers for the cross-binary tests.
