//! What a node says about itself and its peers: `/v1/status`, `/metrics`, `/v1/peers`,
//! `/v1/providers`, `/v1/boot/providers`. Peer-network answers are awaited from the swarm
//! (each bounded: 5 s for the peer table, 12 s for a DHT lookup) without holding a thread.

use std::sync::atomic::Ordering::Relaxed;

use phase_core::job::error::ErrorCode;
use phase_core::net::http::RequestHead;

use phase_core::net::peer::Capabilities;

use super::{json_str, Api, Parts};
use crate::http::Response;

fn p2p_disabled() -> Response {
    Response::error(404, ErrorCode::P2pDisabled, "this node has not joined the peer network (phase node --p2p)")
}

pub async fn status(api: &Api) -> String {
    let s = &api.parts.jobs;
    let c = s.config();
    let limits = |l: &phase_core::Limits| {
        format!(
            "{{\"fuel\":{},\"memory_bytes\":{},\"output_bytes\":{},\"deadline_ms\":{}}}",
            l.fuel, l.memory_bytes, l.output_bytes, l.deadline_ms
        )
    };
    let p2p = match &api.parts.network {
        Some(p) => {
            let addrs: Vec<String> = p.listen_addrs().await.unwrap_or_default().iter().map(|a| json_str(&a.to_string())).collect();
            format!("{{\"peer_id\":\"{}\",\"listen\":[{}]}}", p.peer_id, addrs.join(","))
        }
        None => "null".into(),
    };
    let m = c.memory;
    let (results, compiled, modules) = s.cache_bytes();
    let memory = format!(
        "{{\"budget_bytes\":{},\"pool_bytes\":{},\"free_bytes\":{},\"results_bytes\":{results},\"results_max_bytes\":{},\
         \"compiled_bytes\":{compiled},\"compiled_max_bytes\":{},\"modules_bytes\":{modules},\"modules_max_bytes\":{}}}",
        m.budget,
        m.pool,
        s.pool().free(),
        m.results,
        m.compiled,
        m.module_store
    );
    // Re-emitted from its type: a report that does not parse (or is too large) is left out.
    let hardware = api
        .parts
        .hardware_report
        .as_ref()
        .and_then(|p| {
            use std::io::Read;
            let mut text = String::new();
            let cap = phase_core::boot::hardware::MAX_BYTES as u64 + 1;
            std::fs::File::open(p).and_then(|f| f.take(cap).read_to_string(&mut text)).ok().map(|_| text)
        })
        .and_then(|t| phase_core::boot::hardware::HardwareReport::parse(&t))
        .map_or_else(|| "null".to_string(), |r| r.to_json());
    format!(
        "{{\"version\":{},\"node_key\":\"{}\",\"booted_from\":{},\"p2p\":{p2p},\"hardware\":{hardware},\"uptime_secs\":{},\"jobs_run\":{},\"jobs_in_flight\":{},\
         \"jobs_forwarding\":{},\"max_concurrent\":{},\"max_module_bytes\":{},\"max_input_bytes\":{},\
         \"default_limits\":{},\"max_limits\":{},\"memory\":{memory}}}",
        json_str(env!("CARGO_PKG_VERSION")),
        s.identity().public_key_hex(),
        api.parts.booted_from.as_deref().map_or("null".to_string(), json_str),
        api.started.elapsed().as_secs(),
        s.stats.jobs_exited.load(Relaxed) + s.stats.jobs_trapped.load(Relaxed),
        s.in_flight(),
        s.forwarding(),
        c.max_concurrent,
        c.max_module_bytes,
        c.max_input_bytes,
        limits(&c.default_limits),
        limits(&c.max_limits)
    )
}

pub fn metrics(api: &Api) -> String {
    let s = &api.parts.jobs;
    let st = &s.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for (labels, v) in rows {
            out += &format!("{name}{labels} {v}\n");
        }
    };
    metric(
        "phase_jobs_total",
        "counter",
        "Jobs run, by how they ended.",
        &[("{outcome=\"exited\"}", st.jobs_exited.load(Relaxed)), ("{outcome=\"trapped\"}", st.jobs_trapped.load(Relaxed))],
    );
    metric(
        "phase_jobs_rejected_total",
        "counter",
        "Job requests refused before running.",
        &[
            ("{reason=\"busy\"}", st.rejected_busy.load(Relaxed)),
            ("{reason=\"memory\"}", st.rejected_memory.load(Relaxed)),
            ("{reason=\"invalid\"}", st.rejected_invalid.load(Relaxed)),
        ],
    );
    metric("phase_jobs_host_failures_total", "counter", "Jobs the host failed (an admitted allocation failed): answered 503, never signed.", &[("", st.host_failures.load(Relaxed))]);
    metric("phase_jobs_replayed_total", "counter", "Results returned again for an idempotency key.", &[("", st.replays.load(Relaxed))]);
    metric("phase_jobs_in_flight", "gauge", "Jobs running now.", &[("", s.in_flight() as u64)]);
    metric("phase_jobs_cancelled_total", "counter", "Jobs stopped on request while running (no receipt).", &[("", st.jobs_cancelled.load(Relaxed))]);
    let (queued, running, kept, kept_bytes, reserved_bytes) = s.queue_counts();
    metric(
        "phase_async_jobs",
        "gauge",
        "Asynchronous jobs by state (ended: answers kept).",
        &[("{state=\"queued\"}", queued as u64), ("{state=\"running\"}", running as u64), ("{state=\"ended\"}", kept as u64)],
    );
    metric("phase_async_kept_bytes", "gauge", "Bytes of asynchronous jobs' answers kept.", &[("", kept_bytes as u64)]);
    metric("phase_async_reserved_bytes", "gauge", "Bytes reserved for the answers of asynchronous jobs not ended.", &[("", reserved_bytes as u64)]);
    metric("phase_fuel_used_total", "counter", "Fuel used by all jobs.", &[("", st.fuel_used.load(Relaxed))]);
    metric("phase_modules_stored", "gauge", "Modules held in memory.", &[("", s.cached_modules() as u64)]);
    metric("phase_memory_free_bytes", "gauge", "Memory left in the pool for requests and jobs.", &[("", s.pool().free())]);
    metric("phase_http_requests_total", "counter", "HTTP requests received.", &[("", api.requests.load(Relaxed))]);
    let (open, displaced) = api.parts.connections.counts();
    metric("phase_http_connections", "gauge", "HTTP connections open.", &[("", open as u64)]);
    metric("phase_http_connections_displaced_total", "counter", "HTTP connections closed to make room for a newcomer (they had done the least).", &[("", displaced)]);
    if let Some(b) = &api.parts.boot {
        metric("phase_boot_served_bytes_total", "counter", "Boot artifact bytes served (GET).", &[("", b.served_bytes.load(Relaxed))]);
    }
    metric("phase_uptime_seconds", "gauge", "Seconds since the node started.", &[("", api.started.elapsed().as_secs())]);
    if let Some(p) = &api.parts.pxe {
        let x = &p.stats;
        metric("phase_pxe_dhcp_messages_total", "counter", "DHCP messages on the PXE interface, by what came of them.", &[
            ("{outcome=\"answered\"}", x.dhcp_answered.load(Relaxed)),
            ("{outcome=\"ignored\"}", x.dhcp_ignored.load(Relaxed)),
            ("{outcome=\"malformed\"}", x.dhcp_malformed.load(Relaxed)),
            ("{outcome=\"rate_limited\"}", x.dhcp_rate_limited.load(Relaxed)),
        ]);
        metric("phase_pxe_tftp_requests_total", "counter", "TFTP requests, by what came of them.", &[
            ("{outcome=\"completed\"}", x.tftp_completed.load(Relaxed)),
            ("{outcome=\"failed\"}", x.tftp_failed.load(Relaxed)),
            ("{outcome=\"aborted\"}", x.tftp_aborted.load(Relaxed)),
            ("{outcome=\"refused\"}", x.tftp_refused.load(Relaxed)),
            ("{outcome=\"malformed\"}", x.tftp_malformed.load(Relaxed)),
            ("{outcome=\"displaced\"}", x.tftp_displaced.load(Relaxed)),
        ]);
    }
    out
}

pub async fn peers(parts: &Parts) -> Response {
    let Some(p2p) = &parts.network else { return p2p_disabled() };
    match p2p.peers_async().await {
        Ok(list) => Response::json(200, peers_json(&list)),
        Err(e) => Response::error(503, ErrorCode::P2pUnavailable, &e.to_string()),
    }
}

/// `GET /v1/providers?cap=wasm[/ARCH]`: a DHT lookup.
pub async fn providers(parts: &Parts, head: &RequestHead) -> Response {
    let cap = head.query("cap").unwrap_or("wasm").to_string();
    if !cap.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_' || b == b'-') || cap.is_empty() || cap.len() > 64 {
        return Response::error(400, ErrorCode::InvalidRequest, "cap must be like wasm or wasm/x86_64");
    }
    let Some(p2p) = &parts.network else { return p2p_disabled() };
    let started = std::time::Instant::now();
    match p2p.find_providers(&format!("/phase/cap/{cap}")).await {
        Ok(list) => {
            let ids: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
            let body = format!("{{\"cap\":{},\"providers\":[{}],\"lookup_us\":{}}}", json_str(&cap), ids.join(","), started.elapsed().as_micros());
            Response::json(200, body)
        }
        Err(e) => Response::error(503, ErrorCode::P2pUnavailable, &e.to_string()),
    }
}

/// `GET /v1/boot/providers?channel=C&arch=A`: base URLs of peers that serve that release,
/// from the DHT provider records and the capabilities peers announce (identify), leaving out
/// this node's own address. PID 1 asks this when it netboots.
pub async fn boot_providers(parts: &Parts, head: &RequestHead) -> Response {
    let channel = head.query("channel").unwrap_or(phase_core::boot::cmdline::DEFAULT_CHANNEL).to_string();
    let arch_name = head.query("arch").unwrap_or(std::env::consts::ARCH);
    let Some(arch) = phase_core::boot::manifest::Arch::parse(arch_name) else {
        return Response::error(400, ErrorCode::InvalidRequest, "arch must be x86_64, amd64, aarch64 or arm64");
    };
    if !phase_core::boot::cmdline::valid_channel(&channel) {
        return Response::error(400, ErrorCode::InvalidRequest, "channel must be 1-32 of a-z, 0-9, -");
    }
    let Some(p2p) = &parts.network else { return p2p_disabled() };
    let providers = p2p.find_providers(&crate::boot::provider_key(&channel, arch)).await.unwrap_or_default();
    let (peers, own) = match (p2p.peers_async().await, p2p.listen_addrs().await) {
        (Ok(p), Ok(o)) => (p, o),
        (Err(e), _) | (_, Err(e)) => return Response::error(503, ErrorCode::P2pUnavailable, &e.to_string()),
    };
    let ip_of = |a: &crate::p2p::Multiaddr| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip),
            _ => None,
        })
    };
    let own_ips: Vec<_> = own.iter().filter_map(ip_of).collect();
    let own_port = parts.http_port;
    let mut items = vec![];
    for p in &peers {
        let caps = Capabilities::parse(&p.agent);
        let announced = caps.as_ref().is_some_and(|c| c.serves(&channel, arch));
        let in_dht = providers.contains(&p.peer_id);
        if !announced && !in_dht {
            continue;
        }
        let found_by: Vec<&str> = [(in_dht, "\"dht\""), (announced, "\"identify\"")].iter().filter(|x| x.0).map(|x| x.1).collect();
        let port = caps.as_ref().map_or(phase_core::boot::cmdline::DEFAULT_HTTP_PORT, Capabilities::http_port);
        let mut urls: Vec<String> = vec![];
        for ip in p.addrs.iter().filter(|a| !a.iter().any(|x| matches!(x, libp2p::multiaddr::Protocol::P2pCircuit))).filter_map(ip_of) {
            let url = format!("http://{ip}:{port}");
            if !(own_ips.contains(&ip) && port == own_port) && !urls.contains(&url) {
                urls.push(url);
            }
        }
        if !urls.is_empty() {
            let list: Vec<String> = urls.iter().map(|u| json_str(u)).collect();
            items.push(format!(
                "{{\"peer_id\":\"{}\",\"connected\":{},\"found_by\":[{}],\"urls\":[{}]}}",
                p.peer_id,
                p.connected,
                found_by.join(","),
                list.join(",")
            ));
        }
    }
    let body = format!("{{\"channel\":{},\"arch\":\"{}\",\"providers\":[{}]}}", json_str(&channel), arch.name(), items.join(","));
    Response::json(200, body)
}

fn peers_json(list: &[crate::p2p::PeerInfo]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|p| {
            let addrs: Vec<String> = p.addrs.iter().map(|a| json_str(&a.to_string())).collect();
            format!(
                "{{\"peer_id\":\"{}\",\"agent\":{},\"connected\":{},\"source\":\"{}\",\"seen_secs_ago\":{},\"rtt_ms\":{},\"load\":{},\"addrs\":[{}]}}",
                p.peer_id,
                json_str(&p.agent),
                p.connected,
                p.source,
                p.seen_secs_ago,
                p.rtt_ms.map(|r| r.to_string()).unwrap_or_else(|| "null".into()),
                p.load
                    .map(|l| format!("{{\"in_flight\":{},\"slots\":{},\"sent_since\":{},\"age_ms\":{}}}", l.in_flight, l.slots, l.sent_since, l.age_ms))
                    .unwrap_or_else(|| "null".into()),
                addrs.join(",")
            )
        })
        .collect();
    format!("{{\"peers\":[{}]}}", items.join(","))
}
