//! `POST /v1/jobs` and `PUT /v1/modules`, run on the node's worker pool.

use std::sync::atomic::Ordering::Relaxed;

use phase_core::encoding::hex_encode;

use super::{error_answer, service_error};
use crate::http::{Request, Response};
use crate::node::Node;
use crate::remote::{self, Placement};
use crate::queue::Cancel;
use crate::service::{JobRequest, ModuleSource, ServiceError};

/// What running a job request came to, wherever it ran.
enum Ran {
    /// The JSON answer, with the memory the job was admitted with (held until it is sent)
    /// and whether it ran here.
    Done { json: String, hold: Option<crate::memory::Reservation>, local: bool },
    /// The error answer: status, code, message (a placement error or a `ServiceError`).
    Failed(remote::PlaceError),
}

/// Runs a parsed job request as `POST /v1/jobs` does: redundantly, placed on a peer, or here
/// in `slot` if one was taken (with `progress` seen from outside). `watch` follows it to a
/// peer (redundant jobs are synchronous only).
fn run(node: &Node, job: JobRequest, slot: Option<crate::service::Slot<'_>>, progress: std::sync::Arc<crate::engine::Progress>, watch: &dyn remote::Watch) -> Ran {
    let service = &node.service;
    if let Some(k) = job.redundancy.filter(|&k| k != 1) {
        if job.placement.is_some() {
            return Ran::Failed((400, "invalid_request", "give placement or redundancy, not both".into()));
        }
        return match remote::redundant(node, job, k.min(usize::MAX as u64) as usize) {
            Ok(json) => Ran::Done { json, hold: None, local: false },
            Err(e) => Ran::Failed(e),
        };
    }
    let placement = match job.placement.as_deref().map(Placement::parse) {
        // No placement: here while a slot is free; when every slot is busy, on the peer
        // that answers fastest instead of a 429 (load-based placement).
        None if slot.is_none() && node.p2p.is_some() && service.in_flight() >= service.config().max_concurrent => Placement::Remote,
        None => Placement::Local,
        Some(Ok(p)) => p,
        Some(Err(msg)) => return Ran::Failed((400, "invalid_request", msg)),
    };
    if placement != Placement::Local {
        return match remote::place(node, job, placement, watch) {
            Ok(json) => Ran::Done { json, hold: None, local: false },
            Err(e) => Ran::Failed(e),
        };
    }
    match service.submit_watched(slot, job, progress) {
        Ok(done) => Ran::Done { json: done.to_json(), hold: done.hold, local: true },
        Err(e) => Ran::Failed((e.status(), e.code(), e.to_string())),
    }
}

pub fn post_job(node: &Node, req: Request) -> Response {
    let service = &node.service;
    // `Prefer: respond-async` (RFC 7240): queue it and answer at once.
    let asynchronous = req.head.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("prefer") && v.split(',').any(|p| p.trim().eq_ignore_ascii_case("respond-async")));
    let job = match JobRequest::parse(&req.body) {
        Ok(j) => j,
        Err(msg) => {
            service.stats.rejected_invalid.fetch_add(1, Relaxed);
            return Response::error(400, "invalid_request", &msg);
        }
    };
    if asynchronous {
        return submit_async(node, job, req.hold);
    }
    // The body and its reservation are not needed past the parse.
    drop(req);
    match run(node, job, None, Default::default(), &remote::Unwatched) {
        Ran::Done { json, hold, local } => {
            let mut resp = Response::json(200, json);
            if let Some(hold) = hold {
                resp = resp.hold(hold);
            }
            if local && node.exit_after_job {
                resp = resp.on_sent(|| {
                    log!("fault exit-after-job: exiting");
                    std::process::exit(70);
                });
            }
            resp
        }
        Ran::Failed((status, code, message)) => error_answer(status, code, &message),
    }
}

/// Queues a job (docs/api.md, "Asynchronous jobs"): 202 with its id and where to look, the
/// request's memory held while it waits; 429 when the queue is full.
fn submit_async(node: &Node, job: JobRequest, hold: Option<crate::memory::Reservation>) -> Response {
    let service = &node.service;
    if job.redundancy.is_some_and(|k| k != 1) {
        // Its answer is k answers, not one a status can hold and a handle verify as one.
        return Response::error(400, "invalid_request", "redundancy is for synchronous jobs; submit each asynchronous job once");
    }
    let id = match service.job_id_of(&job) {
        Ok(id) => hex_encode(&id),
        Err(e) => return service_error(&e),
    };
    // While it waits, the request holds what it keeps (module bytes and input), not what
    // parsing it took.
    drop(hold);
    let keep = (job.input.len() + match &job.module { ModuleSource::Bytes(b) => b.len(), ModuleSource::Sha256(_) => 0 }) as u64;
    let hold = match keep {
        0 => None,
        _ => match service.pool().try_reserve(keep) {
            Some(h) => Some(h),
            None => return service_error(&ServiceError::NoMemory { what: "the queued request", need: keep, free: service.pool().free() }),
        },
    };
    match node.queue.submit(&id, job, hold) {
        Ok((status, token)) => {
            let location = format!("/v1/jobs/{id}");
            let body = status.to_json(&id);
            let extra = match &token {
                Some(t) => format!("\"existing\":false,\"cancel_token\":\"{t}\""),
                None => "\"existing\":true".to_string(),
            };
            let body = format!("{},\"location\":\"{location}\",{extra}}}", &body[..body.len() - 1]);
            Response::json(202, body).header("Location", location)
        }
        Err(crate::queue::SubmitError::Full { max }) => {
            service.stats.rejected_busy.fetch_add(1, Relaxed);
            error_answer(429, "queue_full", &format!("all {max} queue places are taken; retry later"))
        }
    }
}

/// Output bytes one `GET /v1/jobs/<id>/output` answers at most.
pub const MAX_OUTPUT_CHUNK: usize = 1 << 20;

/// A checked `GET /v1/jobs/<id>/output` request.
pub struct OutputRead {
    id: String,
    stderr: bool,
    offset: usize,
    max: usize,
}

/// Checks `GET /v1/jobs/<id>/output?stream=&offset=&max=` (`rest`: the path after `/v1/jobs/`).
pub fn output_request(head: &phase_core::net::http::RequestHead, rest: &str) -> Result<OutputRead, Response> {
    use phase_core::net::http::Method;
    let id = rest.strip_suffix("/output").unwrap_or(rest);
    if !matches!(head.method, Method::Get | Method::Head) {
        return Err(Response::error(405, "method_not_allowed", "GET"));
    }
    if !crate::queue::valid_id(id) {
        return Err(Response::error(404, "not_found", "a job id is 64 lowercase hex digits"));
    }
    let stderr = match head.query("stream") {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => return Err(Response::error(400, "invalid_request", &format!("stream {other:?}: stdout or stderr"))),
    };
    let number = |key: &str, default: usize| -> Result<usize, Response> {
        match head.query(key) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| Response::error(400, "invalid_request", &format!("{key} {v:?}: a whole number of bytes"))),
        }
    };
    Ok(OutputRead { id: id.to_string(), stderr, offset: number("offset", 0)?, max: number("max", MAX_OUTPUT_CHUNK)?.min(MAX_OUTPUT_CHUNK) })
}

/// Answers an output read, on the worker pool: the chunk, and for a done job the parse of its
/// answer, are reserved from the node's memory pool first (503 `no_memory` when they do not fit).
pub fn read_output(node: &Node, r: OutputRead) -> Response {
    let Some(stream) = node.queue.stream(&r.id) else { return unknown_job(&r.id) };
    let pool = node.service.pool();
    let need = (r.max + stream.read_cost()) as u64;
    let Some(hold) = pool.try_reserve(need) else {
        return service_error(&ServiceError::NoMemory { what: "reading the job's output", need, free: pool.free() });
    };
    let (bytes, total, status) = stream.read(r.stderr, r.offset, r.max);
    Response::new(200, "application/octet-stream", crate::http::Body::Bytes(bytes))
        .header("Phase-Output-Total", total.to_string())
        .header("Phase-Job-Status", status)
        .hold(hold)
}

fn unknown_job(id: &str) -> Response {
    Response::error(404, "not_found", &format!("no job {id} here (never submitted asynchronously, or no longer kept)"))
}

/// `GET /v1/jobs/<id>`: the job's status; `DELETE`: cancel it.
pub fn job_route(node: &Node, head: &phase_core::net::http::RequestHead, id: &str) -> Response {
    use phase_core::net::http::Method;
    let method = head.method;
    if !crate::queue::valid_id(id) {
        return Response::error(404, "not_found", "a job id is 64 lowercase hex digits");
    }
    let unknown = || unknown_job(id);
    match method {
        Method::Get | Method::Head => match node.queue.status(id) {
            Some(s) => Response::new(200, "application/json", s.body(id)),
            None => unknown(),
        },
        Method::Delete => match node.queue.cancel(id, head.query("token").unwrap_or("")) {
            None => unknown(),
            Some(Cancel::Forbidden) => Response::error(403, "forbidden", "cancelling needs the job's cancel_token (?token=), given to whoever submitted it"),
            Some(Cancel::Cancelled) => Response::json(200, crate::queue::Status::Cancelled.to_json(id)),
            Some(Cancel::Stopping) => Response::json(202, crate::queue::Status::Cancelling.to_json(id)),
            Some(Cancel::Placed { peer, request }) => {
                // The peer stops it within a fuel slice and answers `cancelled`; a job it
                // finished first ends done, as a job here may.
                if !node.p2p.as_ref().is_some_and(|p2p| p2p.cancel_job(peer, request)) {
                    log!("jobs: {}: the cancel could not be sent to {peer}; its answer decides", &id[..12]);
                }
                Response::json(202, crate::queue::Status::Cancelling.to_json(id))
            }
            Some(Cancel::Ended(how)) => Response::error(409, "already_ended", &format!("the job has ended ({how})")),
        },
        _ => Response::error(405, "method_not_allowed", "GET or DELETE"),
    }
}

/// Runner threads run the interpreter, as job workers do.
const RUNNER_STACK: usize = 4 << 20;

/// Starts `n` runner threads that take queued jobs and run them as synchronous ones run.
/// A runner waits for a free job slot before it starts a job here, so queued jobs never
/// turn into `busy` errors; the node's own slots and memory admission still decide.
pub fn start_runners(node: std::sync::Arc<Node>, n: usize) -> Result<(), String> {
    for i in 0..n {
        let node = node.clone();
        std::thread::Builder::new()
            .name(format!("job-runner-{i}"))
            .stack_size(RUNNER_STACK)
            .spawn(move || {
                loop {
                    run_queued(&node, node.queue.take());
                }
            })
            .map_err(|e| format!("job runner thread: {e}"))?;
    }
    Ok(())
}

/// An asynchronous job followed to a peer: its queue entry learns where it went (so a cancel
/// can follow it there), and its cancel stops the placement.
struct QueuedJob<'a> {
    queue: &'a crate::queue::Queue,
    id: &'a str,
    progress: &'a crate::engine::Progress,
}

impl remote::Watch for QueuedJob<'_> {
    fn sending(&self, peer: crate::p2p::PeerId, request: [u8; 32]) -> bool {
        self.queue.sent_to(self.id, peer, request)
    }
    fn cancelled(&self) -> bool {
        self.progress.cancel.load(Relaxed)
    }
}

fn run_queued(node: &Node, t: crate::queue::Taken) {
    use crate::queue::Status;
    let service = &node.service;
    // A job that runs here takes its slot first, waiting for one (polling: slots are taken and
    // given back without a signal), so a queued job never ends as `busy`. One that may go to a
    // peer (placed, or no placement on a node with peers) does not wait: placement decides.
    let here = match t.request.placement.as_deref() {
        _ if t.request.redundancy.is_some_and(|k| k != 1) => false,
        Some("local") => true,
        Some(_) => false,
        None => node.p2p.is_none(),
    };
    let mut slot = None;
    while here && slot.is_none() {
        match service.try_slot() {
            Ok(s) => slot = Some(s),
            Err(_) if t.progress.cancel.load(Relaxed) => {
                node.queue.finish(&t.id, Status::Cancelled);
                return;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    drop(t.hold);
    let watch = QueuedJob { queue: &node.queue, id: &t.id, progress: &t.progress };
    let status = match run(node, t.request, slot, t.progress.clone(), &watch) {
        Ran::Done { json, .. } => Status::Done { answer: json.into() },
        Ran::Failed((_, code, _)) if code == ServiceError::Cancelled.code() => Status::Cancelled,
        Ran::Failed((status, code, message)) => Status::Failed { status, code: code.to_string(), message },
    };
    node.queue.finish(&t.id, status);
}

pub fn put_module(node: &Node, req: Request) -> Response {
    let Request { body, hold, .. } = req;
    let result = node.service.put_module(body);
    drop(hold);
    match result {
        Ok((digest, fresh)) => Response::json(if fresh { 201 } else { 200 }, format!("{{\"module_sha256\":\"{}\"}}", hex_encode(&digest))),
        Err(e) => service_error(&e),
    }
}
