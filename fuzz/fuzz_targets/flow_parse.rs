//! Arbitrary UTF-8 as a flow file: any error is fine, a panic is a bug.
//! What parses is also ordered, linted and round-tripped through JSON.
#![no_main]
use aiops_policy::lint::LintContext;
use aiops_policy::{AbsPath, Flow};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|src: &str| {
    let Ok(flow) = Flow::from_toml_str(Path::new("/flows/f/flow.toml"), src) else {
        return;
    };
    assert_eq!(flow.topo_order().len(), flow.nodes.len(), "a validated flow has no cycle");
    let ws = AbsPath::new("/ws").expect("absolute");
    let ctx = LintContext { workspace: Some(&ws), readable: &[], writable: &[] };
    for n in &flow.nodes {
        let _ = (n.argv(), n.command_text(), n.caps(), n.lint(&ctx));
    }
    let _ = flow.resolve_repo();
    let json = serde_json::to_string(&flow).expect("a flow serialises");
    let back: Flow = serde_json::from_str(&json).expect("a serialised flow deserialises");
    assert_eq!(back, flow);
});
