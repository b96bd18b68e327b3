//! The fleet view (docs/api.md, "The fleet page"): `GET /` is a page of its own (no external
//! assets: what `fleet.html` holds is all of it) that renders `GET /v1/fleet` every few
//! seconds; `phase fleet` prints the same on a terminal. `/v1/fleet` is this node's status and
//! update state, and for each connected Phase peer (at most `MAX_PEERS` asked, each within
//! `PEER_WAIT`, all at once) what it says at its own `/v1/update` and `/v1/status`.
//! Read-only: nothing here changes a node. One request asks up to 32 peer routes, so the view
//! is made at most once per `FRESH` and by one request at a time (`Cache`): others get the
//! last view (`busy` if there is none yet).

use std::time::{Duration, Instant};

use super::{json_str, status, Api};
use crate::http::{Body, Response};

/// The page (HTML, CSS and script in one file).
pub const PAGE: &str = include_str!("fleet.html");
/// Peers whose own state is asked for; more are listed from this node's peer table only.
pub const MAX_PEERS: usize = 16;
/// What one peer gets to answer.
pub const PEER_WAIT: Duration = Duration::from_secs(2);
/// The most a peer's answer may be.
const MAX_PEER_ANSWER: u64 = 256 << 10;
/// How long a fleet view is answered again before it is made anew.
pub const FRESH: Duration = Duration::from_secs(2);

/// The last fleet view and whether one is being made.
#[derive(Default)]
pub struct Cache {
    last: std::sync::Mutex<Option<(Instant, String)>>,
    making: std::sync::atomic::AtomicBool,
}

impl Cache {
    fn last(&self) -> Option<(Instant, String)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `GET /v1/fleet`: the view made at most once per FRESH, by one request at a time.
pub async fn fleet(api: &Api) -> Response {
    use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
    let cache = &api.fleet;
    match cache.last() {
        Some((at, view)) if at.elapsed() < FRESH => return Response::json(200, view),
        _ => {}
    }
    if cache.making.compare_exchange(false, true, AcqRel, Acquire).is_err() {
        return match cache.last() {
            Some((_, view)) => Response::json(200, view),
            None => Response::error(503, phase_core::job::error::ErrorCode::Busy, "the fleet view is being made: ask again"),
        };
    }
    // Cleared however this ends (a request whose client left is dropped mid-way).
    struct Making<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Making<'_> {
        fn drop(&mut self) {
            self.0.store(false, Release);
        }
    }
    let _making = Making(&cache.making);
    let view = make(api).await;
    *cache.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), view.clone()));
    Response::json(200, view)
}

pub fn page() -> Response {
    Response::new(200, "text/html; charset=utf-8", Body::Bytes(PAGE.as_bytes().to_vec())).header("Cache-Control", "no-cache")
}

/// A peer's `/v1/status` and `/v1/update` from the first of its URLs that answers both as that
/// peer (its status names `peer_id`: an address a peer lists may reach another machine, e.g. a
/// NAT'd private address every VM has, or this node itself), as JSON values (re-emitted: a
/// peer's bytes never reach the page unparsed), or why not.
fn ask_peer(peer_id: &str, urls: &[String]) -> Result<(String, String), String> {
    let mut why = "no address".to_string();
    let give_up = Instant::now() + PEER_WAIT;
    for base in urls.iter().take(3) {
        let get = |path: &str| -> Result<miniserde::json::Value, String> {
            let url = crate::boot::fetch::Url::parse(&format!("{base}{path}")).map_err(|e| e.to_string())?;
            let body = crate::boot::fetch::get_small(&url, MAX_PEER_ANSWER, give_up).map_err(|e| e.to_string())?;
            miniserde::json::from_str(&String::from_utf8_lossy(&body)).map_err(|_| format!("{url}: not JSON"))
        };
        match get("/v1/status").and_then(|s| answered_as(&s, peer_id, base).map(|()| s)) {
            Ok(s) => match get("/v1/update") {
                Ok(u) => return Ok((miniserde::json::to_string(&s), miniserde::json::to_string(&u))),
                Err(e) => why = e,
            },
            Err(e) => why = e,
        }
        if Instant::now() >= give_up {
            break;
        }
    }
    Err(why)
}

/// Whether a `/v1/status` answer from `base` is `peer_id`'s.
fn answered_as(status: &miniserde::json::Value, peer_id: &str, base: &str) -> Result<(), String> {
    use miniserde::json::Value;
    let said = match status {
        Value::Object(m) => match m.get("p2p") {
            Some(Value::Object(p)) => match p.get("peer_id") {
                Some(Value::String(id)) => Some(id.as_str()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    match said {
        Some(id) if id == peer_id => Ok(()),
        Some(id) => Err(format!("{base} answers as another node ({id})")),
        None => Err(format!("{base} answers as a node without a peer id")),
    }
}

/// The fleet view, asked of the peers now.
async fn make(api: &Api) -> String {
    let p = &api.parts;
    let node = status::status(api).await;
    let update = p.updates.status_json();
    let (queued, running, kept, ..) = p.jobs.queue_counts();
    let peers = match &p.network {
        Some(n) => n.peers_async().await.unwrap_or_default(),
        None => vec![],
    };
    let connected: Vec<_> = peers.into_iter().filter(|p| p.connected && p.agent.starts_with("phase/")).collect();
    let asked: Vec<(crate::p2p::PeerInfo, Result<(String, String), String>)> = p
        .workers
        .run(move || {
            let urls: Vec<(String, Vec<String>)> = connected.iter().take(MAX_PEERS).map(|p| (p.peer_id.to_string(), p.http_urls())).collect();
            let mut answers: Vec<Result<(String, String), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = urls.iter().map(|(id, u)| s.spawn(move || ask_peer(id, u))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("no answer".into()))).collect()
            });
            answers.resize_with(connected.len(), || Err(format!("not asked: more than {MAX_PEERS} peers")));
            connected.into_iter().zip(answers).collect()
        })
        .await
        .unwrap_or_default();
    let items: Vec<String> = asked
        .iter()
        .map(|(peer, answer)| {
            let (state, error) = match answer {
                Ok((s, u)) => (format!("\"status\":{s},\"update\":{u}"), "null".to_string()),
                Err(e) => ("\"status\":null,\"update\":null".to_string(), json_str(e)),
            };
            let load = peer.load.map_or("null".to_string(), |l| format!("{{\"in_flight\":{},\"slots\":{}}}", l.busy(), l.slots));
            let urls: Vec<String> = peer.http_urls().iter().map(|u| json_str(u)).collect();
            format!(
                "{{\"peer_id\":\"{}\",\"rtt_ms\":{},\"load\":{load},\"urls\":[{}],{state},\"error\":{error}}}",
                peer.peer_id,
                peer.rtt_ms.map_or("null".to_string(), |r| r.to_string()),
                urls.join(",")
            )
        })
        .collect();
    let served = p.boot.as_ref().map_or("[]".to_string(), |b| b.served_json());
    format!(
        "{{\"node\":{node},\"update\":{update},\"queue\":{{\"queued\":{queued},\"running\":{running},\"kept\":{kept}}},\"served\":{served},\"peers\":[{}]}}",
        items.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_state_counts_only_when_the_answer_names_that_peer() {
        let status = |s: &str| miniserde::json::from_str::<miniserde::json::Value>(s).unwrap();
        assert!(answered_as(&status(r#"{"p2p":{"peer_id":"12D3KooWA"}}"#), "12D3KooWA", "http://10.9.0.2:8700").is_ok());
        let other = answered_as(&status(r#"{"p2p":{"peer_id":"12D3KooWB"}}"#), "12D3KooWA", "http://10.0.2.15:8700").unwrap_err();
        assert!(other.contains("10.0.2.15") && other.contains("another node (12D3KooWB)"), "{other}");
        assert!(answered_as(&status(r#"{"p2p":null}"#), "12D3KooWA", "http://x").is_err());
        assert!(answered_as(&status("[]"), "12D3KooWA", "http://x").is_err());
    }
}
