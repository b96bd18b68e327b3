//! The node's HTTP API (docs/api.md) on tiny_http: a fixed pool of worker threads, bodies read
//! under a cap, every error a JSON body with a code and a one-line reason.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

use miniserde::json;
use phase_core::encoding::{base64_decode, base64_encode, hex_decode_array, hex_encode};
use phase_core::job::RequestedLimits;
use phase_core::receipt::Outcome;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::service::{Completed, JobRequest, ModuleSource, NodeService, ServiceError};

/// Fault injection (`phase node --fault exit-after-job`): the process exits once a job's
/// answer is sent, so the boot tests can watch PID 1 restart the node.
pub static EXIT_AFTER_JOB: AtomicBool = AtomicBool::new(false);

static P2P: std::sync::OnceLock<crate::p2p::P2p> = std::sync::OnceLock::new();

static BOOT: std::sync::OnceLock<crate::boot::provider::Provider> = std::sync::OnceLock::new();
/// The port this node's API is bound to (so boot discovery can leave out the node itself).
static HTTP_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Gives the API a boot store to serve at /v1/boot.
pub fn set_boot_provider(p: crate::boot::provider::Provider) {
    let _ = BOOT.set(p);
}

/// Gives the API the peer network, for /v1/peers and /v1/status.
pub fn set_p2p(p2p: crate::p2p::P2p) {
    let _ = P2P.set(p2p);
}

/// Worker threads run jobs, so each gets a roomy stack.
const WORKER_STACK: usize = 4 << 20;
/// Threads beyond the job slots keep /health and /v1/status answering while all slots are busy,
/// and let a request beyond the slots get a 429 instead of waiting in the accept queue.
const SPARE_THREADS: usize = 4;

pub struct HttpServer {
    server: Arc<Server>,
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Binds `addr` and starts the workers.
    pub fn start(service: Arc<NodeService>, addr: &str) -> Result<HttpServer, String> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        crate::sys::set_nodelay_inherited(&listener)
            .map_err(|e| format!("setsockopt TCP_NODELAY on {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| format!("{addr}: {e}"))?;
        HTTP_PORT.store(bound.port(), Relaxed);
        let server = Server::from_listener(listener, None)
            .map_err(|e| format!("cannot serve on {addr}: {e}"))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let n = service.config().max_concurrent + SPARE_THREADS;
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (server, service, stopping, requests) =
                (server.clone(), service.clone(), stopping.clone(), requests.clone());
            let t = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    while !stopping.load(Relaxed) {
                        match server.recv() {
                            Ok(req) => {
                                requests.fetch_add(1, Relaxed);
                                handle(&service, &requests, req)
                            }
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| format!("cannot start HTTP worker: {e}"))?;
            threads.push(t);
        }
        Ok(HttpServer { server, threads, stopping, addr: bound })
    }

    /// Stops accepting, lets running requests finish, joins the workers.
    pub fn stop(self) {
        self.stopping.store(true, Relaxed);
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Blocks until the workers exit.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// A header from ASCII the node made itself (never from request bytes).
pub(crate) fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("header from ASCII the node made")
}

/// Sends a whole in-memory answer. Always with Content-Length: tiny_http would switch bodies
/// over 32 KiB to chunked encoding, which buys nothing for a body already in memory and which
/// small clients (PID 1's fetcher) do not speak.
pub(crate) fn reply(req: Request, status: u16, content_type: &str, body: String, extra: &[(&str, String)]) {
    let mut resp = Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_chunked_threshold(usize::MAX);
    for (k, v) in extra {
        resp.add_header(header(k, v));
    }
    // A client that hung up is not our error.
    let _ = req.respond(resp);
}

fn json_str(s: &str) -> String {
    json::to_string(&s.to_string())
}

pub(crate) fn error(req: Request, status: u16, code: &str, message: &str, extra: &[(&str, String)]) {
    let body = format!("{{\"error\":{},\"message\":{}}}", json_str(code), json_str(message));
    reply(req, status, "application/json", body, extra);
}

/// An error answer with its status, as peers receive it over the job protocol.
pub fn error_body(status: u16, code: &str, message: &str) -> String {
    format!("{{\"status\":{status},\"error\":{},\"message\":{}}}", json_str(code), json_str(message))
}

/// The HTTP status of a service error (docs/api.md).
pub fn status_of(e: &ServiceError) -> u16 {
    match e {
        ServiceError::InvalidRequest(_) => 400,
        ServiceError::ModuleNotFound(_) => 404,
        ServiceError::Module(crate::engine::ModuleError::TooLarge { .. }) => 413,
        ServiceError::InputTooLarge { .. } => 413,
        ServiceError::Module(_) | ServiceError::Limit(_) | ServiceError::Spec(_) => 422,
        ServiceError::IdempotencyConflict(_) => 409,
        ServiceError::Busy { .. } => 429,
        ServiceError::Storage(_) => 507,
    }
}

fn service_error(req: Request, e: ServiceError) {
    let status = status_of(&e);
    let extra: Vec<(&str, String)> = match e {
        ServiceError::Busy { .. } => vec![("Retry-After", "1".into())],
        _ => vec![],
    };
    error(req, status, e.code(), &e.to_string(), &extra);
}

/// The largest job request body this node takes, over HTTP or from a peer: base64 grows bytes
/// by 4/3; 1 MiB covers args, env and the JSON around them.
pub fn max_job_body(c: &crate::service::NodeConfig) -> usize {
    (c.max_module_bytes + c.max_input_bytes) / 3 * 4 + (1 << 20)
}

/// Reads the body under `cap` bytes; `Err` has already been answered.
fn read_body(req: &mut Request, cap: usize) -> Result<Vec<u8>, (u16, &'static str, String)> {
    if let Some(len) = req.body_length() {
        if len > cap {
            return Err((413, "body_too_large", format!("body is {len} bytes, the limit is {cap}")));
        }
    }
    let mut body = Vec::new();
    match req.as_reader().take(cap as u64 + 1).read_to_end(&mut body) {
        Ok(_) if body.len() > cap => {
            Err((413, "body_too_large", format!("body exceeds the limit of {cap} bytes")))
        }
        Ok(_) => Ok(body),
        Err(e) => Err((400, "bad_body", format!("cannot read body: {e}"))),
    }
}

fn handle(service: &NodeService, requests: &AtomicU64, req: Request) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    match (req.method(), path.as_str()) {
        (Method::Get, "/health") => {
            reply(req, 200, "application/json", "{\"status\":\"ok\"}".into(), &[])
        }
        (Method::Get, "/v1/status") => reply(req, 200, "application/json", status(service), &[]),
        (Method::Get, "/v1/providers") => {
            let cap = req.url().split_once("?cap=").map(|(_, c)| c.to_string()).unwrap_or_else(|| "wasm".into());
            if !cap.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_' || b == b'-') || cap.len() > 64 {
                return error(req, 400, "invalid_request", "cap must be like wasm or wasm/x86_64", &[]);
            }
            let Some(p2p) = P2P.get() else {
                return error(req, 404, "p2p_disabled", "this node has not joined the peer network (phase node --p2p)", &[]);
            };
            let started = std::time::Instant::now();
            match p2p.find_providers(&format!("/phase/cap/{cap}")) {
                Ok(list) => {
                    let ids: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
                    let body = format!("{{\"cap\":{},\"providers\":[{}],\"lookup_us\":{}}}", json_str(&cap), ids.join(","), started.elapsed().as_micros());
                    reply(req, 200, "application/json", body, &[])
                }
                Err(e) => error(req, 503, "p2p_unavailable", &e.to_string(), &[]),
            }
        }
        (Method::Get, "/v1/peers") => match P2P.get().map(|p| p.peers()) {
            Some(Ok(list)) => reply(req, 200, "application/json", peers_json(&list), &[]),
            Some(Err(e)) => error(req, 503, "p2p_unavailable", &e.to_string(), &[]),
            None => error(req, 404, "p2p_disabled", "this node has not joined the peer network (phase node --p2p)", &[]),
        },
        (Method::Get, "/metrics") => reply(
            req,
            200,
            "text/plain; version=0.0.4",
            metrics(service, requests.load(Relaxed)),
            &[],
        ),
        (Method::Get, "/v1/boot") => match BOOT.get() {
            Some(b) => reply(req, 200, "application/json", b.index_json(), &[]),
            None => reply(req, 200, "application/json", "{\"entries\":[]}".into(), &[]),
        },
        (Method::Get, "/v1/boot/providers") => boot_providers(req),
        (_, p) if p.starts_with("/v1/boot/") => match BOOT.get() {
            Some(b) => {
                let rest = p["/v1/boot/".len()..].to_string();
                b.serve(req, &rest)
            }
            None => error(req, 404, "not_found", "this node serves no boot artifacts (phase node --boot-store)", &[]),
        },
        (Method::Post, "/v1/jobs") => post_job(service, req),
        (Method::Put, "/v1/modules") => put_module(service, req),
        (_, "/health" | "/v1/status" | "/v1/peers" | "/v1/providers" | "/metrics" | "/v1/jobs" | "/v1/modules") => {
            let m = req.method().to_string();
            error(req, 405, "method_not_allowed", &format!("{m} is not allowed on {path}"), &[])
        }
        _ => error(req, 404, "not_found", &format!("no route {path}"), &[]),
    }
}

/// `GET /v1/boot/providers?channel=C&arch=A`: base URLs of peers that serve that release,
/// from the DHT provider records and the capabilities peers announce (identify), leaving out
/// this node's own address. PID 1 asks this when it netboots.
fn boot_providers(req: Request) {
    let query = req.url().split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
    let param = |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_string);
    let channel = param("channel").unwrap_or_else(|| phase_core::cmdline::DEFAULT_CHANNEL.into());
    let arch_name = param("arch").unwrap_or_else(|| std::env::consts::ARCH.into());
    let Some(arch) = phase_core::manifest::Arch::parse(&arch_name) else {
        return error(req, 400, "invalid_request", "arch must be x86_64, amd64, aarch64 or arm64", &[]);
    };
    if !phase_core::cmdline::valid_channel(&channel) {
        return error(req, 400, "invalid_request", "channel must be 1-32 of a-z, 0-9, -", &[]);
    }
    let Some(p2p) = P2P.get() else {
        return error(req, 404, "p2p_disabled", "this node has not joined the peer network (phase node --p2p)", &[]);
    };
    let release = format!("{channel}/{}", arch.name());
    let providers = p2p.find_providers(&crate::boot::provider_key(&channel, arch)).unwrap_or_default();
    let (peers, own) = match (p2p.peers(), p2p.listen_addrs()) {
        (Ok(p), Ok(o)) => (p, o),
        (Err(e), _) | (_, Err(e)) => return error(req, 503, "p2p_unavailable", &e.to_string(), &[]),
    };
    let ip_of = |a: &crate::p2p::Multiaddr| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip),
            _ => None,
        })
    };
    let own_ips: Vec<_> = own.iter().filter_map(ip_of).collect();
    let own_port = HTTP_PORT.load(Relaxed);
    let mut items = vec![];
    for p in &peers {
        let announced = p.agent.split_whitespace().any(|w| w.strip_prefix("boot=").is_some_and(|l| l.split(',').any(|r| r == release)));
        let in_dht = providers.contains(&p.peer_id);
        if !announced && !in_dht {
            continue;
        }
        let found_by: Vec<&str> = [(in_dht, "\"dht\""), (announced, "\"identify\"")].iter().filter(|x| x.0).map(|x| x.1).collect();
        let port: u16 = p.agent.split_whitespace().find_map(|w| w.strip_prefix("http=")).and_then(|v| v.parse().ok()).unwrap_or(phase_core::cmdline::DEFAULT_HTTP_PORT);
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
    reply(req, 200, "application/json", body, &[])
}

fn status(s: &NodeService) -> String {
    let c = s.config();
    let limits = |l: &phase_core::Limits| {
        format!(
            "{{\"fuel\":{},\"memory_bytes\":{},\"output_bytes\":{},\"deadline_ms\":{}}}",
            l.fuel, l.memory_bytes, l.output_bytes, l.deadline_ms
        )
    };
    let p2p = match P2P.get() {
        Some(p) => {
            let addrs: Vec<String> = p.listen_addrs().unwrap_or_default().iter().map(|a| json_str(&a.to_string())).collect();
            format!("{{\"peer_id\":\"{}\",\"listen\":[{}]}}", p.peer_id, addrs.join(","))
        }
        None => "null".into(),
    };
    format!(
        "{{\"version\":{},\"node_key\":\"{}\",\"p2p\":{p2p},\"uptime_secs\":{},\"jobs_run\":{},\"jobs_in_flight\":{},\
         \"max_concurrent\":{},\"max_module_bytes\":{},\"max_input_bytes\":{},\
         \"default_limits\":{},\"max_limits\":{}}}",
        json_str(env!("CARGO_PKG_VERSION")),
        s.identity().public_key_hex(),
        s.uptime_secs(),
        s.stats.jobs_exited.load(Relaxed) + s.stats.jobs_trapped.load(Relaxed),
        s.in_flight(),
        c.max_concurrent,
        c.max_module_bytes,
        c.max_input_bytes,
        limits(&c.default_limits),
        limits(&c.max_limits)
    )
}

fn metrics(s: &NodeService, requests: u64) -> String {
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
        &[
            ("{outcome=\"exited\"}", st.jobs_exited.load(Relaxed)),
            ("{outcome=\"trapped\"}", st.jobs_trapped.load(Relaxed)),
        ],
    );
    metric(
        "phase_jobs_rejected_total",
        "counter",
        "Job requests refused before running.",
        &[
            ("{reason=\"busy\"}", st.rejected_busy.load(Relaxed)),
            ("{reason=\"invalid\"}", st.rejected_invalid.load(Relaxed)),
        ],
    );
    metric("phase_jobs_replayed_total", "counter", "Results returned again for an idempotency key.", &[("", st.replays.load(Relaxed))]);
    metric("phase_jobs_in_flight", "gauge", "Jobs running now.", &[("", s.in_flight() as u64)]);
    metric("phase_fuel_used_total", "counter", "Fuel used by all jobs.", &[("", st.fuel_used.load(Relaxed))]);
    metric("phase_modules_stored", "gauge", "Modules held in memory.", &[("", s.cached_modules() as u64)]);
    metric("phase_http_requests_total", "counter", "HTTP requests received.", &[("", requests)]);
    if let Some(b) = BOOT.get() {
        metric("phase_boot_served_bytes_total", "counter", "Boot artifact bytes served (GET).", &[("", b.served_bytes.load(Relaxed))]);
    }
    metric("phase_uptime_seconds", "gauge", "Seconds since the node started.", &[("", s.uptime_secs())]);
    out
}

fn put_module(service: &NodeService, mut req: Request) {
    let body = match read_body(&mut req, service.config().max_module_bytes) {
        Ok(b) => b,
        Err((status, code, msg)) => return error(req, status, code, &msg, &[]),
    };
    match service.put_module(body) {
        Ok((digest, fresh)) => {
            let body = format!("{{\"module_sha256\":\"{}\"}}", hex_encode(&digest));
            reply(req, if fresh { 201 } else { 200 }, "application/json", body, &[])
        }
        Err(e) => service_error(req, e),
    }
}

/// A field of a request object: absent and `null` are both "not given".
fn opt<'a>(obj: &'a json::Object, key: &str) -> Option<&'a json::Value> {
    obj.get(key).filter(|v| !matches!(v, json::Value::Null))
}

fn opt_str(obj: &json::Object, key: &str) -> Result<Option<String>, String> {
    match opt(obj, key) {
        None => Ok(None),
        Some(json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn opt_u64(obj: &json::Object, key: &str, path: &str) -> Result<Option<u64>, String> {
    match opt(obj, key) {
        None => Ok(None),
        Some(json::Value::Number(json::Number::U64(n))) => Ok(Some(*n)),
        Some(_) => Err(format!("{path} must be an unsigned integer")),
    }
}

fn opt_strings(obj: &json::Object, key: &str) -> Result<Vec<String>, String> {
    match opt(obj, key) {
        None => Ok(Vec::new()),
        Some(json::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                json::Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{key} must be an array of strings")),
            })
            .collect(),
        Some(_) => Err(format!("{key} must be an array of strings")),
    }
}

/// Parses a job request body (one JSON parse, fields read from it); the error is a one-line
/// reason for a 400 that names the field.
pub fn parse_job(body: &[u8]) -> Result<JobRequest, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let value: json::Value = json::from_str(text).map_err(|_| "body is not valid JSON".to_string())?;
    let json::Value::Object(top) = &value else {
        return Err("body must be a JSON object".into());
    };
    // A misspelt "limit" must not silently run on defaults.
    const FIELDS: [&str; 9] = [
        "module", "module_sha256", "input", "args", "env", "limits", "idempotency_key", "placement", "redundancy",
    ];
    const LIMITS: [&str; 4] = ["fuel", "memory_bytes", "output_bytes", "deadline_ms"];
    if let Some(k) = top.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    let limits = match opt(top, "limits") {
        None => RequestedLimits::default(),
        Some(json::Value::Object(l)) => {
            if let Some(k) = l.keys().find(|k| !LIMITS.contains(&k.as_str())) {
                return Err(format!("unknown field limits.{k}"));
            }
            RequestedLimits {
                fuel: opt_u64(l, "fuel", "limits.fuel")?,
                memory_bytes: opt_u64(l, "memory_bytes", "limits.memory_bytes")?,
                output_bytes: opt_u64(l, "output_bytes", "limits.output_bytes")?,
                deadline_ms: opt_u64(l, "deadline_ms", "limits.deadline_ms")?,
            }
        }
        Some(_) => return Err("limits must be an object".into()),
    };
    let module = match (opt_str(top, "module")?, opt_str(top, "module_sha256")?) {
        (Some(b64), None) => ModuleSource::Bytes(
            base64_decode(&b64).map_err(|e| format!("module is not base64: {e}"))?,
        ),
        (None, Some(hex)) => ModuleSource::Sha256(
            hex_decode_array(&hex).map_err(|e| format!("module_sha256 is not 64 hex digits: {e}"))?,
        ),
        _ => return Err("give exactly one of module (base64) and module_sha256 (hex)".into()),
    };
    let input = match opt_str(top, "input")? {
        Some(b64) => base64_decode(&b64).map_err(|e| format!("input is not base64: {e}"))?,
        None => Vec::new(),
    };
    Ok(JobRequest {
        module,
        input,
        args: opt_strings(top, "args")?,
        env: opt_strings(top, "env")?,
        limits,
        idempotency_key: opt_str(top, "idempotency_key")?,
        placement: opt_str(top, "placement")?,
        redundancy: opt_u64(top, "redundancy", "redundancy")?,
    })
}

/// The JSON answer for a finished job (docs/api.md).
pub fn job_json(c: &Completed) -> String {
    let o = &c.outcome;
    let ex = &o.execution;
    let (exit_code, trap) = match ex.outcome {
        Outcome::Exited(code) => (code.to_string(), "null".to_string()),
        Outcome::Trapped(kind) => ("null".to_string(), json_str(kind.name())),
    };
    format!(
        "{{\"job_id\":\"{}\",\"exit_code\":{exit_code},\"trap\":{trap},\"trap_detail\":{},\
         \"stdout\":\"{}\",\"stderr\":\"{}\",\"fuel_used\":{},\"wall_time_us\":{},\
         \"replayed\":{},\"receipt\":{}}}",
        hex_encode(&ex.job_id),
        ex.detail.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
        base64_encode(&ex.stdout),
        base64_encode(&ex.stderr),
        ex.fuel_used,
        ex.wall_time.as_micros(),
        c.replayed,
        o.receipt.to_json()
    )
}

fn post_job(service: &NodeService, mut req: Request) {
    let cap = max_job_body(service.config());
    let body = match read_body(&mut req, cap) {
        Ok(b) => b,
        Err((status, code, msg)) => return error(req, status, code, &msg, &[]),
    };
    let job = match parse_job(&body) {
        Ok(j) => j,
        Err(msg) => {
            service.stats.rejected_invalid.fetch_add(1, Relaxed);
            return error(req, 400, "invalid_request", &msg, &[]);
        }
    };
    if let Some(k) = job.redundancy.filter(|&k| k != 1) {
        if job.placement.is_some() {
            return error(req, 400, "invalid_request", "give placement or redundancy, not both", &[]);
        }
        return match crate::remote::redundant(service, P2P.get(), job, k.min(usize::MAX as u64) as usize) {
            Ok(answer) => reply(req, 200, "application/json", answer, &[]),
            Err((status, code, msg)) => error(req, status, code, &msg, &[]),
        };
    }
    let placement = match job.placement.as_deref().map(crate::remote::Placement::parse) {
        // No placement: here while a slot is free; when every slot is busy, on the peer
        // that answers fastest instead of a 429 (load-based placement).
        None if P2P.get().is_some() && service.in_flight() >= service.config().max_concurrent => {
            crate::remote::Placement::Remote
        }
        None => crate::remote::Placement::Local,
        Some(Ok(p)) => p,
        Some(Err(msg)) => return error(req, 400, "invalid_request", &msg, &[]),
    };
    if placement != crate::remote::Placement::Local {
        let Some(p2p) = P2P.get() else {
            return error(req, 422, "p2p_disabled", "placement needs the peer network (phase node --p2p)", &[]);
        };
        return match crate::remote::place(service, p2p, job, placement) {
            Ok(answer) => reply(req, 200, "application/json", answer, &[]),
            Err((status, code, msg)) => error(req, status, code, &msg, &[]),
        };
    }
    match service.submit(job) {
        Ok(done) => {
            reply(req, 200, "application/json", job_json(&done), &[]);
            if EXIT_AFTER_JOB.load(Relaxed) {
                log!("fault exit-after-job: exiting");
                std::process::exit(70);
            }
        }
        Err(e) => service_error(req, e),
    }
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
