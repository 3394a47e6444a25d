//! Arbitrary bytes as a supervisor -> jailer request: the jailer decodes and
//! validates these as if from a stranger (it runs with more privilege than
//! the sender), so any error is fine and a panic is a bug.
#![no_main]
use aiops_proto::{JailRequest, MAX_REQUEST_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(req) = JailRequest::decode(bytes) else {
        return;
    };
    let verdict = req.validate().map_err(|e| e.to_string());
    // What decodes must re-encode and decode to the same request, with the
    // same verdict: the supervisor's encoding is what the jailer checks.
    let again = serde_json::to_vec(&req).expect("a decoded request re-encodes");
    if again.len() <= MAX_REQUEST_BYTES {
        let back = JailRequest::decode(&again).expect("a re-encoded request decodes");
        assert_eq!(back, req);
        assert_eq!(back.validate().map_err(|e| e.to_string()), verdict);
    }
});
