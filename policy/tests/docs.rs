//! Checked-in documents generated from the code: the profile JSON Schema and
//! the generated tables of docs/profiles.md. A change to the types or tables
//! fails here until the documents are regenerated (`UPDATE_GOLDEN=1`).
// Both documents come from the JSON Schema (schemars).
#![cfg(feature = "schema")]
#![allow(clippy::unwrap_used)]
mod common;

use aiops_policy::profile::{
    Limits, DEFAULT_ENV_ALLOW, DEFAULT_PROTECTED, TMPFS_DEFAULT_MAX, TMPFS_DEFAULT_MEMORY_DIVISOR,
};
use aiops_policy::syscalls::{
    baseline_deny, baseline_eafnosupport, baseline_enosys, ArgOp, SyscallRule,
};
use aiops_policy::units::Bytes;
use aiops_policy::ProfileFile;
use common::{check_golden, repo_root, report, updating};
use serde_json::Value;
use std::fmt::Write as _;

const BEGIN: &str = "<!-- BEGIN GENERATED -->";
const END: &str = "<!-- END GENERATED -->";

/// Top-level keys in the order the reference presents them; the test fails
/// when the schema gains or loses one, so the list cannot go stale.
const SECTIONS: &[&str] = &[
    "schema",
    "name",
    "description",
    "extends",
    "require",
    "unconfined",
    "fs",
    "net",
    "env",
    "limits",
    "seccomp",
    "protected",
];

fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(ProfileFile)).unwrap()
}

#[test]
fn profile_json_schema_is_up_to_date() {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap();
    text.push('\n');
    report(
        check_golden(&repo_root().join("docs/profile.schema.json"), &text)
            .err()
            .into_iter()
            .collect(),
    );
}

/// The `$defs` name a property refers to, looking through `anyOf [ref, null]`.
fn ref_name(v: &Value) -> Option<&str> {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next();
    }
    v.get("anyOf")?.as_array()?.iter().find_map(ref_name)
}

fn type_of(v: &Value) -> String {
    if let Some(r) = ref_name(v) {
        return r.to_string();
    }
    let ty: Vec<&str> = match v.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    match ty.as_slice() {
        ["array"] => format!(
            "list of {}",
            v.get("items").map(type_of).unwrap_or_default()
        ),
        ["object"] => match v.get("additionalProperties") {
            Some(ap @ Value::Object(_)) => format!("table of {}", type_of(ap)),
            _ => "table".into(),
        },
        [t] => (*t).to_string(),
        _ => "?".into(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn description(v: &Value, defs: &Value) -> String {
    let own = v.get("description").and_then(Value::as_str);
    let from_def = ref_name(v)
        .and_then(|r| defs[r].get("description"))
        .and_then(Value::as_str);
    one_line(own.or(from_def).unwrap_or(""))
}

fn fields_table(out: &mut String) {
    let s = schema();
    let defs = &s["$defs"];
    let props = s["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort();
    let mut listed = SECTIONS.to_vec();
    listed.sort();
    assert_eq!(
        keys, listed,
        "update SECTIONS in this test and the prose in docs/profiles.md"
    );
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();

    out.push_str("### Fields\n\n| Key | Type | Required | Meaning |\n|---|---|---|---|\n");
    for key in SECTIONS {
        let p = &props[*key];
        let sub = ref_name(p)
            .map(|r| &defs[r])
            .filter(|d| d.get("properties").is_some());
        match sub {
            None => {
                let req = if required.contains(key) { "yes" } else { "no" };
                let _ = writeln!(
                    out,
                    "| `{key}` | {} | {req} | {} |",
                    type_of(p),
                    description(p, defs)
                );
            }
            Some(d) => {
                let _ = writeln!(out, "| `[{key}]` | table | no | {} |", description(p, defs));
                for (f, fp) in d["properties"].as_object().unwrap() {
                    let _ = writeln!(
                        out,
                        "| `{key}.{f}` | {} | no | {} |",
                        type_of(fp),
                        description(fp, defs)
                    );
                    // Tables of tables (`[[seccomp.deny]]`, `protected.unprotect`) list their keys too.
                    let item = fp.get("items").and_then(ref_name).map(|r| &defs[r]);
                    if let Some(item_props) = item
                        .and_then(|i| i.get("properties"))
                        .and_then(Value::as_object)
                    {
                        for (g, gp) in item_props {
                            let _ = writeln!(
                                out,
                                "| `{key}.{f}[].{g}` | {} | yes | {} |",
                                type_of(gp),
                                description(gp, defs)
                            );
                        }
                    }
                }
            }
        }
    }
    out.push_str("\n### Value types\n\n| Type | Form |\n|---|---|\n");
    for (name, d) in defs.as_object().unwrap() {
        if d.get("properties").is_some() {
            continue;
        }
        let mut form = description(d, defs);
        if let Some(p) = d.get("pattern").and_then(Value::as_str) {
            let _ = write!(form, " (pattern `{}`)", p.replace('|', "\\|"));
        }
        if let Some(e) = d.get("oneOf").or(d.get("enum")) {
            let names: Vec<String> = match e {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| {
                        x.as_str()
                            .map(String::from)
                            .or_else(|| x.get("const")?.as_str().map(String::from))
                    })
                    .map(|n| format!("`{n}`"))
                    .collect(),
                _ => vec![],
            };
            if !names.is_empty() {
                let sep = if form.is_empty() { "" } else { " One of: " };
                let _ = write!(form, "{sep}{}", names.join(", "));
            }
        }
        let _ = writeln!(out, "| `{name}` | {form} |");
    }
}

fn cond(r: &SyscallRule) -> String {
    if r.when.is_empty() {
        return "always".into();
    }
    r.when
        .iter()
        .map(|c| {
            let w = if c.dword { " (32-bit)" } else { "" };
            match &c.op {
                ArgOp::Eq => format!("arg{} == {:#x}{w}", c.arg, c.value),
                ArgOp::Ne => format!("arg{} != {:#x}{w}", c.arg, c.value),
                // File modes read best in octal, flags in hex.
                ArgOp::MaskedEq(m)
                    if r.syscall.contains("mod")
                        || r.syscall.starts_with("open")
                        || r.syscall == "creat" =>
                {
                    format!("arg{} & {m:#o} == {:#o}{w}", c.arg, c.value)
                }
                ArgOp::MaskedEq(m) => format!("arg{} & {m:#x} == {:#x}{w}", c.arg, c.value),
            }
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

fn generated() -> String {
    let mut out = String::from("\n<!-- Generated by policy/tests/docs.rs from the code; edit the code, then run\n     UPDATE_GOLDEN=1 cargo test -p aiops-policy --test docs -->\n\n");
    fields_table(&mut out);

    let l = Limits::default();
    out.push_str("\n### Default limits\n\nWhat a profile gets for a limit no profile in its chain sets.\n\n| Limit | Default |\n|---|---|\n");
    for (k, v) in [
        ("timeout", l.timeout.to_string()),
        ("output", l.output.to_string()),
        ("memory", l.memory.to_string()),
        ("pids", l.pids.to_string()),
        ("cpu", l.cpu.to_string()),
        ("file_size", l.file_size.to_string()),
        ("open_files", l.open_files.to_string()),
        (
            "tmpfs",
            format!(
                "memory / {TMPFS_DEFAULT_MEMORY_DIVISOR}, at most {}",
                Bytes(TMPFS_DEFAULT_MAX)
            ),
        ),
        ("tmpfs_inodes", l.tmpfs_inodes.to_string()),
    ] {
        let _ = writeln!(out, "| `{k}` | `{v}` |");
    }

    out.push_str("\n### Default environment allow-list\n\nUsed when no profile in the chain sets `env.allow`: ");
    let env: Vec<String> = DEFAULT_ENV_ALLOW.iter().map(|e| format!("`{e}`")).collect();
    out.push_str(&env.join(", "));
    out.push_str(".\n\n### Default protected paths\n\nRelative to every writable root; kept read-only unless a profile lists them under `protected.unprotect`:\n\n");
    for p in DEFAULT_PROTECTED {
        let _ = writeln!(out, "- `{p}`");
    }

    out.push_str("\n### Baseline seccomp table\n\nApplied to every confined node; `seccomp.deny` adds to it, nothing removes from it. The default action is allow.\n\n| Syscall | When | Result | Why |\n|---|---|---|---|\n");
    for (rules, result) in [
        (baseline_deny(), "EPERM"),
        (baseline_enosys(), "ENOSYS"),
        (baseline_eafnosupport(), "EAFNOSUPPORT"),
    ] {
        for r in rules {
            let _ = writeln!(
                out,
                "| `{}` | {} | {result} | {} |",
                r.syscall,
                cond(&r),
                one_line(&r.reason)
            );
        }
    }
    out.push('\n');
    out
}

#[test]
fn profiles_md_generated_section_is_up_to_date() {
    let path = repo_root().join("docs/profiles.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc
        .split_once(BEGIN)
        .expect("docs/profiles.md lacks the BEGIN marker");
    let (_, tail) = rest
        .split_once(END)
        .expect("docs/profiles.md lacks the END marker");
    let want = format!("{head}{BEGIN}{}{END}{tail}", generated());
    if updating() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    report(check_golden(&path, &want).err().into_iter().collect());
}
