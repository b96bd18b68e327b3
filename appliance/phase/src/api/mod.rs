//! The node's HTTP API (docs/api.md): routes over a `Node`, behind the front in `http`. Every
//! error is a JSON body with a code and a one-line reason. Cheap answers (health, status,
//! metrics, boot artifacts) are made on the front's executor and so answer at once whatever the
//! job slots are doing; work that blocks (jobs, compiles, placement) goes to the node's worker
//! pool; peer-network lookups are awaited without holding a thread.

mod jobs;
mod status;

pub use jobs::start_runners;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use phase_core::net::http::{Method, RequestHead};

use crate::http::{Admission, Handler, Request, Response};
use crate::node::Node;
use crate::service::ServiceError;

/// The API's handler: the front calls it for every request.
pub struct Api {
    pub node: Arc<Node>,
}

/// The largest job request body this node takes, over HTTP or from a peer: base64 grows bytes
/// by 4/3; 1 MiB covers args, env and the JSON around them.
pub fn max_job_body(c: &crate::service::NodeConfig) -> usize {
    (c.max_module_bytes + c.max_input_bytes) / 3 * 4 + (1 << 20)
}

/// Job bodies above this are refused unread while every slot is busy (see `admit`).
const EARLY_BUSY_BODY: u64 = 1 << 20;

/// The answer for a service error (docs/api.md), with Retry-After where coming back helps.
pub(crate) fn service_error(e: &ServiceError) -> Response {
    error_answer(e.status(), e.code(), &e.to_string())
}

/// An error answer; 429 and 503 (busy, memory, a key still running, a host failure, no peer
/// free) say when to come back.
pub(crate) fn error_answer(status: u16, code: &str, message: &str) -> Response {
    let r = Response::error(status, code, message);
    if status == 429 || status == 503 {
        r.header("Retry-After", "1")
    } else {
        r
    }
}

pub(crate) fn p2p_disabled() -> Response {
    Response::error(404, "p2p_disabled", "this node has not joined the peer network (phase node --p2p)")
}

impl Handler for Api {
    fn admit(&self, head: &RequestHead) -> Result<Admission, Response> {
        let service = &self.node.service;
        // What a body may be, and the memory reading and parsing it takes: a job's JSON is held
        // while its parse tree holds the strings again and they decode into the module and
        // input beside both (2.75 times its size at the peak, measured by the load bench).
        let (cap, factor) = match (head.method, head.path()) {
            (Method::Post, "/v1/jobs") => (max_job_body(service.config()), 3),
            (Method::Put, "/v1/modules") => (service.config().max_module_bytes, 1),
            // No other route takes a body.
            _ => (0, 1),
        };
        let len = head.content_length;
        // A node that can only run a job here refuses a large one while every slot is busy
        // before reading its body (with the peer network it may place it on a peer instead).
        // Small bodies are read: one may carry an idempotency key whose result is kept, or a
        // job running under it to wait for.
        if head.method == Method::Post
            && head.path() == "/v1/jobs"
            && len > EARLY_BUSY_BODY
            && self.node.p2p.is_none()
            && service.in_flight() >= service.config().max_concurrent
        {
            service.stats.rejected_busy.fetch_add(1, Relaxed);
            return Err(service_error(&ServiceError::Busy { max: service.config().max_concurrent }));
        }
        if len > cap as u64 {
            let msg = format!("body is {len} bytes, the limit for {} {} is {cap}", head.method_name, head.path());
            return Err(Response::error(413, "body_too_large", &msg));
        }
        if len == 0 {
            return Ok(Admission { hold: None });
        }
        let need = len * factor;
        match service.pool().try_reserve(need) {
            Some(hold) => Ok(Admission { hold: Some(hold) }),
            None => {
                service.stats.rejected_memory.fetch_add(1, Relaxed);
                let e = ServiceError::NoMemory { what: "the request body", need, free: service.pool().free() };
                Err(service_error(&e))
            }
        }
    }

    async fn handle(&self, req: Request) -> Response {
        let node = &self.node;
        node.requests.fetch_add(1, Relaxed);
        let path = req.head.path().to_string();
        let get = matches!(req.head.method, Method::Get | Method::Head);
        match (req.head.method, path.as_str()) {
            (_, "/health") if get => Response::json(200, "{\"status\":\"ok\"}".into()),
            (_, "/v1/status") if get => Response::json(200, status::status(node).await),
            (_, "/metrics") if get => Response::new(200, "text/plain; version=0.0.4", crate::http::Body::Bytes(status::metrics(node).into_bytes())),
            (_, "/v1/peers") if get => status::peers(node).await,
            (_, "/v1/providers") if get => status::providers(node, &req.head).await,
            (_, "/v1/boot") if get => match &node.boot {
                Some(b) => Response::json(200, b.index_json()),
                None => Response::json(200, "{\"entries\":[]}".into()),
            },
            (_, "/v1/boot/providers") if get => status::boot_providers(node, &req.head).await,
            (_, p) if p.starts_with("/v1/boot/") => match &node.boot {
                Some(b) => b.serve(&req.head, &p["/v1/boot/".len()..]),
                None => Response::error(404, "not_found", "this node serves no boot artifacts (phase node --boot-store)"),
            },
            (_, p) if p.starts_with("/v1/pxe/") && get => match (&node.pxe, &node.boot) {
                (Some(pxe), Some(boot)) => pxe_route(pxe, boot, &p["/v1/pxe/".len()..]),
                _ => Response::error(404, "not_found", "this node answers no PXE clients (phase node --pxe)"),
            },
            (Method::Post, "/v1/jobs") => {
                let n = node.clone();
                node.workers.run(move || jobs::post_job(&n, req)).await.unwrap_or_else(stopped)
            }
            (_, p) if p.starts_with("/v1/jobs/") && p.ends_with("/output") => match jobs::output_request(&req.head, &p["/v1/jobs/".len()..]) {
                // Reading a done job's output parses its answer: work for the pool, not the front.
                Ok(r) => {
                    let n = node.clone();
                    node.workers.run(move || jobs::read_output(&n, r)).await.unwrap_or_else(stopped)
                }
                Err(resp) => resp,
            },
            (_, p) if p.starts_with("/v1/jobs/") => jobs::job_route(node, &req.head, &p["/v1/jobs/".len()..]),
            (Method::Put, "/v1/modules") => {
                let n = node.clone();
                node.workers.run(move || jobs::put_module(&n, req)).await.unwrap_or_else(stopped)
            }
            (_, "/health" | "/v1/status" | "/v1/peers" | "/v1/providers" | "/metrics" | "/v1/jobs" | "/v1/modules" | "/v1/boot" | "/v1/boot/providers") => {
                Response::error(405, "method_not_allowed", &format!("{} is not allowed on {path}", req.head.method_name))
            }
            _ => Response::error(404, "not_found", &format!("no route {path}")),
        }
    }
}

/// `/v1/pxe/x86_64.ipxe` and `/v1/pxe/aarch64.grub` (the boot scripts), `/v1/pxe/<arch>/initrd`
/// (the carrying initrd),
/// `/v1/pxe/<program>` (a network boot program, for UEFI HTTP Boot). The initrd and programs
/// take a download slot of the boot provider, as its artifacts do.
fn pxe_route(pxe: &crate::pxe::Pxe, boot: &crate::boot::provider::Provider, rest: &str) -> Response {
    let shared = |bytes: &std::sync::Arc<[u8]>, kind: &'static str| match boot.download_slot() {
        Ok(slot) => Response::new(200, kind, crate::http::Body::Reader { len: bytes.len() as u64, reader: Box::new(std::io::Cursor::new(bytes.clone())) }).hold(slot),
        Err(busy) => busy,
    };
    if rest.ends_with(".ipxe") || rest.ends_with(".grub") {
        if let Some(script) = pxe.script(rest) {
            return Response::new(200, "text/plain", crate::http::Body::Bytes(script.into_bytes()));
        }
    } else if let Some(arch) = rest.strip_suffix("/initrd") {
        if let Some(initrd) = pxe.initrd(arch) {
            return shared(initrd, "application/octet-stream");
        }
    } else if let Some(program) = pxe.program(rest) {
        return shared(program, "application/efi");
    }
    Response::error(404, "not_found", &format!("no PXE file {rest:?}"))
}

fn stopped() -> Response {
    Response::error(503, "stopping", "the node is stopping").closing()
}

pub(crate) fn json_str(s: &str) -> String {
    miniserde::json::to_string(&s.to_string())
}
