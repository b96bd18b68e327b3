//! The node's API (docs/api.md): translates HTTP requests, and job requests from peers
//! (`peer`), into calls on `Jobs`, the boot provider, PXE and the peer network, and their
//! results back. The one place that knows statuses, the error body and `Retry-After`
//! (`error`). Cheap answers (health, status, metrics, boot artifacts) are made on the front's
//! executor and so answer at once whatever the job slots are doing; work that blocks (jobs,
//! compiles, placement, output reads) goes to the node's worker pool; peer-network lookups are
//! awaited without holding a thread.

mod error;
mod fleet;
mod jobs;
pub mod peer;
mod status;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use phase_core::job::error::ErrorCode;
use phase_core::net::http::{Method, RequestHead};

use crate::boot::provider::Provider;
use crate::http::{Admission, Handler, Request, Response};
use crate::jobs::Jobs;
use crate::p2p::P2p;
use crate::pxe::Pxe;
use crate::update::Updates;
use crate::workers::Workers;

/// What the routes answer from.
pub struct Parts {
    /// Where the release this machine runs came from (an appliance's `phase.from`).
    pub booted_from: Option<String>,
    pub jobs: Arc<Jobs>,
    pub updates: Arc<Updates>,
    pub network: Option<P2p>,
    pub boot: Option<Arc<Provider>>,
    pub pxe: Option<Arc<Pxe>>,
    pub workers: Arc<Workers>,
    /// The port the API listens on (boot discovery leaves this node's own address out).
    pub http_port: u16,
    /// The front's connections (for /metrics).
    pub connections: Arc<crate::http::Places>,
    /// The hardware report PID 1 keeps (an appliance's), for /v1/status.
    pub hardware_report: Option<std::path::PathBuf>,
}

/// The largest `POST /v1/releases` body: a manifest and three artifacts of a release.
pub const MAX_RELEASE_BODY: u64 = 256 << 20;

/// The API's handler: the front calls it for every request.
pub struct Api {
    parts: Parts,
    started: Instant,
    /// HTTP requests received.
    requests: AtomicU64,
    /// The last fleet view (`GET /v1/fleet`).
    fleet: fleet::Cache,
}

impl Api {
    pub fn new(parts: Parts) -> Api {
        Api { parts, started: Instant::now(), requests: AtomicU64::new(0), fleet: fleet::Cache::default() }
    }
}

impl Handler for Api {
    fn admit(&self, head: &RequestHead) -> Result<Admission, Response> {
        let jobs = &self.parts.jobs;
        // What a body may be, and the memory reading and parsing it takes: a job's JSON is held
        // while its parse tree holds the strings again and they decode into the module and
        // input beside both (2.75 times its size at the peak, measured by the load bench).
        let len = head.content_length;
        if let (Method::Put, Some(name)) = (head.method, head.path().strip_prefix("/v1/blobs/")) {
            let named = jobs::blob_name(name)?;
            // One kept already is answered at once; its bytes are not read.
            if let Some(size) = jobs.blob_kept(&named) {
                return Err(jobs::blob_answer(&named, size, false));
            }
            // Streamed to the data dir as it arrives where there is one; else held like a module.
            return match jobs.blob_upload(len).map_err(|e| error::job(&e))? {
                Some(upload) => Ok(Admission { pay: None, sink: Some(Box::new(jobs::UploadSink(upload))) }),
                None => {
                    jobs.body_fits(len, 1).map_err(|e| error::job(&e))?;
                    Ok(Admission::in_memory((len > 0).then(|| (jobs.pool().clone(), 1))))
                }
            };
        }
        if (head.method, head.path()) == (Method::Post, "/v1/releases") {
            // Only an operator's body is read, and only as long as the largest release.
            self.parts.updates.authorize(head.header("Authorization")).map_err(|e| error::update(&e))?;
            if len > MAX_RELEASE_BODY {
                let msg = format!("body is {len} bytes, the limit for a release is {MAX_RELEASE_BODY}");
                return Err(Response::error(413, ErrorCode::BodyTooLarge, &msg));
            }
            jobs.body_fits(len, 1).map_err(|e| error::job(&e))?;
            return Ok(Admission::in_memory((len > 0).then(|| (jobs.pool().clone(), 1))));
        }
        if (head.method, head.path()) == (Method::Put, "/v1/modules") {
            // Streamed to the data dir as it arrives where there is one (read back to compile).
            if let Some(upload) = jobs.module_upload(len).map_err(|e| error::job(&e))? {
                return Ok(Admission { pay: None, sink: Some(Box::new(jobs::UploadSink(upload))) });
            }
        }
        let (cap, factor, job) = match (head.method, head.path()) {
            (Method::Post, "/v1/jobs") => (jobs.config().max_request_bytes(), 3, true),
            (Method::Put, "/v1/modules") => (jobs.config().max_module_bytes, 1, false),
            // No other route takes a body.
            _ => (0, 1, false),
        };
        if job {
            jobs.admit_job_body(len).map_err(|e| error::job(&e))?;
        }
        if len > cap as u64 {
            let msg = format!("body is {len} bytes, the limit for {} {} is {cap}", head.method_name, head.path());
            return Err(Response::error(413, ErrorCode::BodyTooLarge, &msg));
        }
        jobs.body_fits(len, factor).map_err(|e| error::job(&e))?;
        Ok(Admission::in_memory((len > 0).then(|| (jobs.pool().clone(), factor))))
    }

    async fn handle(&self, req: Request) -> Response {
        let p = &self.parts;
        self.requests.fetch_add(1, Relaxed);
        let path = req.head.path().to_string();
        let get = matches!(req.head.method, Method::Get | Method::Head);
        match (req.head.method, path.as_str()) {
            (_, "/health") if get => Response::json(200, "{\"status\":\"ok\"}".into()),
            (_, "/") if get => fleet::page(),
            (_, "/v1/fleet") if get => fleet::fleet(self).await,
            (Method::Post, "/v1/update") => match p.updates.authorize(req.head.header("Authorization")) {
                Ok(()) => Response::json(202, p.updates.update_now("an operator")),
                Err(e) => error::update(&e),
            },
            (_, "/v1/status") if get => Response::json(200, status::status(self).await),
            (_, "/metrics") if get => Response::new(200, "text/plain; version=0.0.4", crate::http::Body::Bytes(status::metrics(self).into_bytes())),
            (_, "/v1/peers") if get => status::peers(p).await,
            (_, "/v1/providers") if get => status::providers(p, &req.head).await,
            (_, "/v1/boot") if get => match &p.boot {
                Some(b) => Response::json(200, b.index_json()),
                None => Response::json(200, "{\"entries\":[]}".into()),
            },
            (_, "/v1/boot/providers") if get => status::boot_providers(p, &req.head).await,
            (_, rest) if rest.starts_with("/v1/boot/") => match &p.boot {
                Some(b) => b.serve(&req.head, &rest["/v1/boot/".len()..], req.peer.ip()),
                None => Response::error(404, ErrorCode::NotFound, "this node serves no boot artifacts (phase node --boot-store)"),
            },
            (_, rest) if rest.starts_with("/v1/pxe/") && get => match (&p.pxe, &p.boot) {
                (Some(pxe), Some(boot)) => pxe_route(pxe, boot, &rest["/v1/pxe/".len()..]),
                _ => Response::error(404, ErrorCode::NotFound, "this node answers no PXE clients (phase node --pxe)"),
            },
            (_, "/v1/update") if get => Response::json(200, p.updates.status_json()),
            (Method::Post, "/v1/releases") => {
                let updates = p.updates.clone();
                p.workers
                    .run(move || match updates.publish(&req.body) {
                        Ok(id) => Response::json(201, format!("{{\"published\":{},\"version\":{}}}", json_str(&id.to_string()), id.version)),
                        Err(e) => error::update(&e),
                    })
                    .await
                    .unwrap_or_else(stopped)
            }
            (Method::Post, "/v1/jobs") => {
                let jobs = p.jobs.clone();
                p.workers.run(move || jobs::post(&jobs, req)).await.unwrap_or_else(stopped)
            }
            (_, rest) if rest.starts_with("/v1/jobs/") && rest.ends_with("/output") => match jobs::output_request(&req.head, &rest["/v1/jobs/".len()..]) {
                // Reading a done job's output parses its answer: work for the pool, not the front.
                Ok(r) => {
                    let jobs = p.jobs.clone();
                    p.workers.run(move || jobs::read_output(&jobs, r)).await.unwrap_or_else(stopped)
                }
                Err(resp) => resp,
            },
            (_, rest) if rest.starts_with("/v1/jobs/") => jobs::job_route(&p.jobs, &req.head, &rest["/v1/jobs/".len()..]),
            (Method::Put, "/v1/modules") => {
                let jobs = p.jobs.clone();
                p.workers.run(move || jobs::put_module(&jobs, req)).await.unwrap_or_else(stopped)
            }
            (Method::Put, rest) if rest.starts_with("/v1/blobs/") => {
                let jobs = p.jobs.clone();
                p.workers.run(move || jobs::put_blob(&jobs, req)).await.unwrap_or_else(stopped)
            }
            (_, "/health" | "/v1/status" | "/v1/peers" | "/v1/providers" | "/metrics" | "/v1/jobs" | "/v1/modules" | "/v1/boot" | "/v1/boot/providers" | "/v1/update" | "/v1/releases" | "/v1/fleet" | "/") => {
                Response::error(405, ErrorCode::MethodNotAllowed, &format!("{} is not allowed on {path}", req.head.method_name))
            }
            (_, rest) if rest.starts_with("/v1/blobs/") => Response::error(405, ErrorCode::MethodNotAllowed, &format!("{} is not allowed on {path}", req.head.method_name)),
            _ => Response::error(404, ErrorCode::NotFound, &format!("no route {path}")),
        }
    }
}

/// `/v1/pxe/x86_64.ipxe` and `/v1/pxe/aarch64.grub` (the boot scripts), `/v1/pxe/<arch>/initrd`
/// (the carrying initrd), `/v1/pxe/<program>` (a network boot program, for UEFI HTTP Boot).
/// The initrd and programs take a download slot of the boot provider, as its artifacts do.
fn pxe_route(pxe: &Pxe, boot: &Provider, rest: &str) -> Response {
    let shared = |bytes: &Arc<[u8]>, kind: &'static str| match boot.download_slot() {
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
    Response::error(404, ErrorCode::NotFound, &format!("no PXE file {rest:?}"))
}

fn stopped() -> Response {
    Response::error(503, ErrorCode::Stopping, "the node is stopping").closing()
}

fn json_str(s: &str) -> String {
    miniserde::json::to_string(&s.to_string())
}
