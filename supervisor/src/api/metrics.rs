//! The API's own Prometheus counters, appended to the engine's.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct ApiMetrics {
    by_code: Mutex<BTreeMap<u16, u64>>,
    refused_peers: Mutex<u64>,
}

impl ApiMetrics {
    pub(crate) fn count(&self, code: u16) {
        if let Ok(mut m) = self.by_code.lock() {
            *m.entry(code).or_default() += 1;
        }
    }

    pub(crate) fn count_refused_peer(&self) {
        if let Ok(mut n) = self.refused_peers.lock() {
            *n += 1;
        }
    }

    pub(crate) fn render(&self, out: &mut String) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("# HELP aiops_api_requests_total HTTP requests answered, by status code.\n");
        out.push_str("# TYPE aiops_api_requests_total counter\n");
        if let Ok(m) = self.by_code.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(out, "aiops_api_requests_total{{code=\"{code}\"}} {n}");
            }
        }
        out.push_str(
            "# HELP aiops_api_refused_connections_total Unix-socket connections refused by peer credentials.\n",
        );
        out.push_str("# TYPE aiops_api_refused_connections_total counter\n");
        let refused = self.refused_peers.lock().map(|n| *n).unwrap_or(0);
        let _ = writeln!(out, "aiops_api_refused_connections_total {refused}");
    }
}
