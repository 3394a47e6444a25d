//! Arbitrary bytes as a request head sent by the node to the egress proxy
//! (`aiops_supervisor::egress::parse_head`): the node controls every byte,
//! so any error is fine and a panic is a bug. What is forwarded upstream
//! must be exactly one head: no second request can ride along unchecked,
//! every line ends in CRLF with no bare CR or LF, and its one `Host:` is
//! the authority that was checked.
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
    for (i, b) in fwd.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(fwd.get(i + 1), Some(&b'\n'), "bare CR forwarded"),
            b'\n' => assert_eq!(
                fwd.get(i.wrapping_sub(1)),
                Some(&b'\r'),
                "bare LF forwarded"
            ),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&fwd);
    let hosts: Vec<&str> = text
        .split("\r\n")
        .filter(|l| {
            l.as_bytes()
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"host:"))
        })
        .collect();
    assert_eq!(
        hosts.len(),
        1,
        "forwarded head has {} Host lines",
        hosts.len()
    );
    let checked = &req.target.host;
    assert!(
        hosts[0].to_ascii_lowercase().contains(checked.as_str()),
        "Host {:?} is not the checked {checked}",
        hosts[0]
    );
});
