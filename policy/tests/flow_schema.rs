//! The flow JSON Schema is generated from the parser's types and checked in;
//! docs/flows.md documents every key it has. `UPDATE_GOLDEN=1` rewrites the schema.
#![cfg(feature = "full")]
#![allow(clippy::unwrap_used)]
mod common;

use common::{check_golden, repo_root};
use serde_json::Value;

fn schema() -> Value {
    serde_json::to_value(aiops_policy::flow::json_schema()).unwrap()
}

#[test]
fn flow_json_schema_is_up_to_date() {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap();
    text.push('\n');
    if let Err(e) = check_golden(&repo_root().join("docs/flow.schema.json"), &text) {
        panic!(
            "{e}\nregenerate with UPDATE_GOLDEN=1 cargo test -p aiops-policy --test flow_schema"
        );
    }
}

fn keys(v: &Value) -> Vec<String> {
    v["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn docs_flows_md_has_a_row_for_every_key() {
    let s = schema();
    let doc = std::fs::read_to_string(repo_root().join("docs/flows.md")).unwrap();
    let defs = &s["$defs"];
    let mut all = keys(&s);
    all.extend(keys(&defs["WorkspaceFile"]));
    all.extend(keys(&defs["NodeFile"]));
    assert!(all.len() >= 15, "{all:?}");
    for k in all {
        let row = match k.as_str() {
            "workspace" => "| `[workspace]` |".to_string(),
            "node" => "| `[[node]]` |".to_string(),
            "caps" => "| `[node.caps]` |".to_string(),
            _ => format!("| `{k}` |"),
        };
        assert!(doc.contains(&row), "docs/flows.md has no row {row}");
    }
}
