//! The route table: one list that the router, the 405 `Allow` header, the
//! docs drift test and `docs/openapi.yaml` all agree on.

/// Every route, as `(method, path template)`; `{x}` is one path segment.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/state"),
    ("GET", "/api/v1/runs"),
    ("POST", "/api/v1/runs"),
    ("GET", "/api/v1/runs/{id}"),
    ("POST", "/api/v1/runs/{id}/cancel"),
    ("GET", "/api/v1/runs/{id}/nodes/{node}/output"),
    ("POST", "/api/v1/runs/{id}/nodes/{node}/confirm"),
    ("POST", "/api/v1/runs/{id}/nodes/{node}/cancel"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/gc"),
];

/// A matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Livez,
    Readyz,
    Metrics,
    State,
    ListRuns,
    Submit,
    GetRun { id: String },
    CancelRun { id: String },
    Output { id: String, node: String },
    Confirm { id: String, node: String },
    CancelNode { id: String, node: String },
    Events,
    Audit,
    Gc,
}

/// Why a request matched no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    /// The path exists with other methods, listed for `Allow`.
    MethodNotAllowed(String),
    /// A path segment is not valid percent-encoded UTF-8.
    BadPath,
}

/// Match `method path` against [`ROUTES`].
pub fn route(method: &str, path: &str) -> Result<Route, NoRoute> {
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let mut allowed: Vec<&str> = Vec::new();
    for (i, (m, template)) in ROUTES.iter().enumerate() {
        let Some(params) = match_template(template, &segs)? else {
            continue;
        };
        if *m != method {
            allowed.push(m);
            continue;
        }
        return Ok(build(i, params));
    }
    if allowed.is_empty() {
        Err(NoRoute::NotFound)
    } else {
        Err(NoRoute::MethodNotAllowed(allowed.join(", ")))
    }
}

fn match_template(template: &str, segs: &[&str]) -> Result<Option<Vec<String>>, NoRoute> {
    let tsegs: Vec<&str> = template.split('/').skip(1).collect();
    if tsegs.len() != segs.len() {
        return Ok(None);
    }
    let mut params = Vec::new();
    for (t, s) in tsegs.iter().zip(segs) {
        if t.starts_with('{') {
            if s.is_empty() {
                return Ok(None);
            }
            params.push(percent_decode(s).ok_or(NoRoute::BadPath)?);
        } else if t != s {
            return Ok(None);
        }
    }
    Ok(Some(params))
}

fn build(index: usize, mut p: Vec<String>) -> Route {
    let node = if p.len() > 1 {
        p.pop().unwrap_or_default()
    } else {
        String::new()
    };
    let id = p.pop().unwrap_or_default();
    match ROUTES[index].1 {
        "/livez" => Route::Livez,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/api/v1/state" => Route::State,
        "/api/v1/runs" if ROUTES[index].0 == "GET" => Route::ListRuns,
        "/api/v1/runs" => Route::Submit,
        "/api/v1/runs/{id}" => Route::GetRun { id },
        "/api/v1/runs/{id}/cancel" => Route::CancelRun { id },
        "/api/v1/runs/{id}/nodes/{node}/output" => Route::Output { id, node },
        "/api/v1/runs/{id}/nodes/{node}/confirm" => Route::Confirm { id, node },
        "/api/v1/runs/{id}/nodes/{node}/cancel" => Route::CancelNode { id, node },
        "/api/v1/audit" => Route::Audit,
        "/api/v1/gc" => Route::Gc,
        _ => Route::Events,
    }
}

/// Decode `%XX` escapes (and nothing else); `None` if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `key=value` pairs of a query string, decoded; `+` is a literal plus.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match (percent_decode(k), percent_decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!("malformed query parameter {p:?}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matches_every_route_with_its_parameters() {
        assert_eq!(route("GET", "/livez"), Ok(Route::Livez));
        assert_eq!(route("POST", "/api/v1/runs"), Ok(Route::Submit));
        assert_eq!(route("GET", "/api/v1/runs"), Ok(Route::ListRuns));
        assert_eq!(
            route("POST", "/api/v1/runs/r-1/nodes/b%20x/confirm"),
            Ok(Route::Confirm {
                id: "r-1".into(),
                node: "b x".into()
            })
        );
        assert_eq!(
            route("GET", "/api/v1/runs/r-1/nodes/n/output"),
            Ok(Route::Output {
                id: "r-1".into(),
                node: "n".into()
            })
        );
        assert_eq!(
            route("POST", "/api/v1/runs/r-1/cancel"),
            Ok(Route::CancelRun { id: "r-1".into() })
        );
    }

    #[test]
    fn names_allowed_methods_and_refuses_unknown_paths() {
        assert_eq!(
            route("DELETE", "/api/v1/runs"),
            Err(NoRoute::MethodNotAllowed("GET, POST".into()))
        );
        assert_eq!(
            route("GET", "/api/v1/runs/r-1/cancel"),
            Err(NoRoute::MethodNotAllowed("POST".into()))
        );
        assert_eq!(route("GET", "/api/v1/runs/"), Err(NoRoute::NotFound));
        assert_eq!(route("GET", "/nope"), Err(NoRoute::NotFound));
        assert_eq!(route("GET", "/api/v1/runs/%ff"), Err(NoRoute::BadPath));
    }

    #[test]
    fn percent_coding_round_trips() {
        let s = "a b/c%d?é";
        assert_eq!(percent_decode(&percent_encode(s)).unwrap(), s);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(
            query_pairs(Some("limit=5&follow")).unwrap(),
            vec![
                ("limit".into(), "5".into()),
                ("follow".into(), String::new())
            ]
        );
    }
}
