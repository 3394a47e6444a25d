//! Arbitrary bytes as a request head sent by the node to the egress proxy
//! (`aiops_supervisor::egress::parse_head`): the node controls every byte,
//! so any error is fine and a panic is a bug. What is forwarded upstream
//! must be exactly one head: no second request can ride along unchecked.
#![no_main]
use aiops_supervisor::egress::parse_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|head: &[u8]| {
    let Ok(req) = parse_head(head) else {
        return;
    };
    let Some(fwd) = req.forward else {
        return; // CONNECT: nothing of the head is forwarded
    };
    assert!(
        fwd.ends_with(b"\r\n\r\n"),
        "forwarded head is not terminated"
    );
    let ends = fwd.windows(4).filter(|w| w == b"\r\n\r\n").count();
    assert_eq!(ends, 1, "forwarded head holds an early end of head");
    assert!(
        fwd.windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"connection: close")),
        "forwarded head lacks Connection: close"
    );
});
