//! The fleet view as text: what `phase fleet` and the appliance's `fleet` console command
//! print of a node's `GET /v1/fleet` (its page at `/` shows the same).

use std::time::{Duration, Instant};

use miniserde::json::{Number, Value};

use crate::boot::fetch;

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(*k),
        _ => None,
    })
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(Number::U64(n))) => n.to_string(),
        Some(Value::Number(Number::I64(n))) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "?".into(),
    }
}

fn num(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(Number::U64(n))) => *n,
        _ => 0,
    }
}

fn list(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

/// Where a node stands in the rollout of the newest release it knows.
fn rollout(update: Option<&Value>) -> String {
    let Some(u) = update else { return "?".into() };
    // A node that only serves releases (host mode) is current once it serves the newest.
    let at = if matches!(get(u, &["boots_releases"]), Some(Value::Bool(true))) { "running" } else { "serving" };
    let (running, now, arch) = (num(get(u, &[at])), num(get(u, &["now"])), text(get(u, &["arch"])));
    let next = list(get(u, &["releases"])).iter().filter(|r| num(get(r, &["version"])) > running && text(get(r, &["arch"])) == arch).max_by_key(|r| num(get(r, &["version"])));
    let Some(r) = next else {
        // A release it returned from is known by its failure report only.
        let failed = list(get(u, &["failures"])).iter().filter(|f| num(get(f, &["version"])) > running && text(get(f, &["arch"])) == arch).map(|f| num(get(f, &["version"]))).max();
        return failed.map_or("current".into(), |v| format!("v{v} failed: stays"));
    };
    let (v, wave, starts) = (num(get(r, &["version"])), num(get(r, &["wave"])), num(get(r, &["wave_starts_at"])));
    if matches!(get(r, &["failed"]), Some(Value::Bool(true))) {
        format!("v{v} failed: stays")
    } else if starts > now {
        format!("v{v}: wave {wave} in {}s", starts - now)
    } else {
        format!("v{v}: wave {wave} under way")
    }
}

fn short(s: &str) -> String {
    s.chars().take(12).collect::<String>() + "…"
}

/// The text of a `/v1/fleet` answer.
pub fn render(f: &Value) -> String {
    let mut out = String::new();
    let u = get(f, &["update"]);
    let from = match get(f, &["node", "booted_from"]) {
        Some(Value::String(s)) => s.clone(),
        _ => "its own image".into(),
    };
    let window = match u.and_then(|u| get(u, &["window", "utc"])) {
        Some(Value::String(w)) => format!("; boots new releases {w} UTC"),
        _ => String::new(),
    };
    out += &format!(
        "this node {} follows {}/{}: runs v{}, serves v{}; booted from {from}{window}\n\n",
        short(&text(get(f, &["node", "node_key"]))),
        text(u.and_then(|u| get(u, &["channel"]))),
        text(u.and_then(|u| get(u, &["arch"]))),
        text(u.and_then(|u| get(u, &["running"]))),
        text(u.and_then(|u| get(u, &["serving"])))
    );
    out += &format!("{:<20} {:>5} {:>6}  {:<28} {:>6} {:>7} {:>6}\n", "node", "runs", "serves", "rollout", "jobs", "load", "rtt");
    let line = |name: String, s: Option<&Value>, u: Option<&Value>, load: String, rtt: String| {
        let jobs = s.map_or("?".into(), |s| format!("{}/{}", text(get(s, &["jobs_in_flight"])), text(get(s, &["max_concurrent"]))));
        let v = |k: &str| u.map_or("?".into(), |u| format!("v{}", text(get(u, &[k]))));
        format!("{:<20} {:>5} {:>6}  {:<28} {:>6} {:>7} {:>6}\n", name, v("running"), v("serving"), rollout(u), jobs, load, rtt)
    };
    out += &line(format!("this {}", short(&text(get(f, &["node", "node_key"])))), get(f, &["node"]), u, String::new(), String::new());
    for p in list(get(f, &["peers"])) {
        let load = get(p, &["load"]).filter(|l| !matches!(l, Value::Null)).map_or(String::new(), |l| format!("{}/{}", num(get(l, &["in_flight"])), num(get(l, &["slots"]))));
        let rtt = match get(p, &["rtt_ms"]) {
            Some(Value::Number(Number::U64(n))) => format!("{n} ms"),
            _ => String::new(),
        };
        match get(p, &["error"]) {
            Some(Value::String(e)) => out += &format!("{:<20} {e}\n", format!("peer {}", short(&text(get(p, &["peer_id"]))))),
            _ => out += &line(format!("peer {}", short(&text(get(p, &["status", "node_key"])))), get(p, &["status"]), get(p, &["update"]), load, rtt),
        }
    }
    let now = num(u.and_then(|u| get(u, &["now"])));
    let releases = u.map(|u| list(get(u, &["releases"]))).unwrap_or_default();
    if !releases.is_empty() {
        out += "\nreleases\n";
        for r in releases {
            let waves = match get(r, &["rollout"]) {
                Some(Value::String(w)) => w.clone(),
                _ => "all at once".into(),
            };
            let failed = matches!(get(r, &["failed"]), Some(Value::Bool(true)));
            out += &format!(
                "  {}/{} v{} by {}: waves {waves}; this node: wave {} ({}){}\n",
                text(get(r, &["channel"])),
                text(get(r, &["arch"])),
                text(get(r, &["version"])),
                text(get(r, &["publisher"])),
                text(get(r, &["wave"])),
                match num(get(r, &["wave_starts_at"])) {
                    t if t > now => format!("starts in {}s", t - now),
                    _ => "started".into(),
                },
                if failed { "; FAILED" } else { "" }
            );
        }
    }
    for x in u.map(|u| list(get(u, &["failures"]))).unwrap_or_default() {
        out += &format!("failed: v{} on node {}: {}\n", text(get(x, &["version"])), short(&text(get(x, &["node_key"]))), text(get(x, &["reason"])));
    }
    let served = list(get(f, &["served"]));
    if !served.is_empty() {
        out += "\nbooted from this node\n";
        for s in served.iter().rev().take(10) {
            out += &format!("  {} {} ({}s ago)\n", text(get(s, &["client"])), text(get(s, &["release"])), now.saturating_sub(num(get(s, &["at"]))));
        }
    }
    out.trim_end().to_string()
}
/// The node's `/v1/fleet` JSON, as it came.
pub fn fleet_json(base: &fetch::Url, deadline: Instant) -> Result<String, String> {
    let url = base.join("v1/fleet");
    let body = fetch::get_small(&url, 8 << 20, deadline).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body).to_string())
}

/// The fleet view of the node at `node` (a URL) as text.
pub fn show(node: &str) -> Result<String, String> {
    let base = fetch::Url::parse(node).map_err(|e| format!("{node}: {e}"))?;
    let text = fleet_json(&base, Instant::now() + Duration::from_secs(10))?;
    let value: Value = miniserde::json::from_str(&text).map_err(|_| format!("{}: not JSON", base.join("v1/fleet")))?;
    Ok(render(&value))
}
