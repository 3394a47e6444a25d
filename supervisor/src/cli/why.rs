//! `aiopsctl why RUN NODE`: what the jail refused a flow node, grouped by
//! the layer that refused it, each with what would allow it. Read from the
//! node's last audit line (its end, or its refusal before it ran), so it
//! answers for runs that ended long ago, through the daemon or not.
use super::print_json;
use super::runs::Common;
use crate::audit::{AuditRecord, Query};
use crate::denials::Denials;
use crate::error::{out_err, SupervisorError};
use clap::Args;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The run id (`aiopsctl status` lists them).
    pub run: String,
    /// The node id in that run's flow.
    pub node: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Serialize)]
struct Why {
    run: String,
    node: String,
    state: Option<String>,
    reason: Option<String>,
    /// `None`: the node never ran (refused, cancelled before it started).
    denials: Option<Denials>,
    /// Connections the egress proxy refused: (host:port, why).
    egress_denied: Vec<(String, String)>,
}

pub fn why(args: &WhyArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let q = Query {
        since: None,
        run: Some(args.run.clone()),
    };
    let recs = super::records::audit_records(&args.common, q)?;
    let last = recs
        .iter()
        .rev()
        .find(|r| {
            r.node.as_deref() == Some(args.node.as_str())
                && matches!(r.kind.as_str(), "node_end" | "refusal" | "gate" | "cancel")
        })
        .ok_or_else(|| SupervisorError::NoSuchNode {
            run: args.run.clone(),
            node: args.node.clone(),
        })?;
    let why = explain(args, last);
    if args.common.json {
        print_json(out, "why", &why)?;
        return Ok(0);
    }
    out.write_all(render(&why).as_bytes()).map_err(out_err)?;
    Ok(0)
}

fn explain(args: &WhyArgs, r: &AuditRecord) -> Why {
    let denials = r
        .denials
        .as_ref()
        .and_then(|d| serde_json::from_value::<Denials>(d.clone()).ok());
    let egress_denied = r
        .egress
        .as_ref()
        .and_then(|e| e.get("records"))
        .and_then(|v| v.as_array())
        .map(|recs| {
            recs.iter()
                .filter(|x| x.get("verdict").and_then(|v| v.as_str()) == Some("denied"))
                .map(|x| {
                    let host = x.get("host").and_then(|v| v.as_str()).unwrap_or("-");
                    let port = x.get("port").and_then(|v| v.as_u64()).unwrap_or(0);
                    let why = x.get("reason").and_then(|v| v.as_str()).unwrap_or("");
                    (format!("{host}:{port}"), why.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Why {
        run: args.run.clone(),
        node: args.node.clone(),
        state: r.state.clone(),
        reason: r.reason.clone(),
        denials,
        egress_denied,
    }
}

fn render(w: &Why) -> String {
    let mut s = format!(
        "node {} of run {}: {}\n",
        w.node,
        w.run,
        w.state.as_deref().unwrap_or("?")
    );
    if let Some(r) = &w.reason {
        s += &format!("  reason: {r}\n");
    }
    let Some(d) = &w.denials else {
        s += "  the node has not run (refused, cancelled or waiting at the gate), so the jail \
               denied it nothing: the state and reason above say why\n";
        return s;
    };
    let mut any = false;
    for line in d.to_text().lines() {
        any = true;
        s += &format!("  {}\n", line.trim_start_matches("aiops: "));
    }
    for (target, why) in &w.egress_denied {
        any = true;
        s += &format!(
            "  denied by egress: {target} ({why}); allowed by: net.allow = [..., \"{target}\"] \
             with net = \"allowlist\" in the profile\n"
        );
    }
    if !d.seccomp_recorded {
        s += "  seccomp denials were not recorded for this node (no filter, or a nested jail)\n";
    }
    if !any {
        s += "  nothing recorded was denied (seccomp, limits, egress)\n";
    }
    s += "  not attributed yet: filesystem denials (EACCES from Landlock, ENOENT outside \
          the jail's tree); `aiopsctl profile explain` shows what the jail holds\n";
    s
}
