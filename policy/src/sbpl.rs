//! macOS Seatbelt (SBPL) compilation from the same effective capabilities.
