//! Arbitrary bytes as an agentd -> supervisor report frame: the supervisor
//! decodes these from inside the jail's reach, so a panic is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Ok(report) = aiops_proto::Report::decode(frame) {
        // What decodes must re-encode (bounded) and decode to the same value.
        if let Ok(bytes) = report.encode() {
            assert_eq!(aiops_proto::Report::decode(&bytes).ok(), Some(report));
        }
    }
});
