//! `POST /v1/jobs` and `PUT /v1/modules`, run on the node's worker pool.

use std::sync::atomic::Ordering::Relaxed;

use phase_core::encoding::hex_encode;

use super::service_error;
use crate::http::{Request, Response};
use crate::node::Node;
use crate::remote::{self, Placement};
use crate::service::JobRequest;

fn place_error((status, code, msg): remote::PlaceError) -> Response {
    let r = Response::error(status, code, &msg);
    if status == 429 || status == 503 {
        r.header("Retry-After", "1")
    } else {
        r
    }
}

pub fn post_job(node: &Node, req: Request) -> Response {
    let service = &node.service;
    let job = match JobRequest::parse(&req.body) {
        Ok(j) => j,
        Err(msg) => {
            service.stats.rejected_invalid.fetch_add(1, Relaxed);
            return Response::error(400, "invalid_request", &msg);
        }
    };
    // The body and its reservation are not needed past the parse.
    drop(req);
    if let Some(k) = job.redundancy.filter(|&k| k != 1) {
        if job.placement.is_some() {
            return Response::error(400, "invalid_request", "give placement or redundancy, not both");
        }
        return match remote::redundant(node, job, k.min(usize::MAX as u64) as usize) {
            Ok(answer) => Response::json(200, answer),
            Err(e) => place_error(e),
        };
    }
    let placement = match job.placement.as_deref().map(Placement::parse) {
        // No placement: here while a slot is free; when every slot is busy, on the peer
        // that answers fastest instead of a 429 (load-based placement).
        None if node.p2p.is_some() && service.in_flight() >= service.config().max_concurrent => Placement::Remote,
        None => Placement::Local,
        Some(Ok(p)) => p,
        Some(Err(msg)) => return Response::error(400, "invalid_request", &msg),
    };
    if placement != Placement::Local {
        return match remote::place(node, job, placement) {
            Ok(answer) => Response::json(200, answer),
            Err(e) => place_error(e),
        };
    }
    match service.submit(job) {
        Ok(done) => {
            let mut resp = Response::json(200, done.to_json());
            if let Some(hold) = done.hold {
                resp = resp.hold(hold);
            }
            if node.exit_after_job {
                resp = resp.on_sent(|| {
                    log!("fault exit-after-job: exiting");
                    std::process::exit(70);
                });
            }
            resp
        }
        Err(e) => service_error(&e),
    }
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
