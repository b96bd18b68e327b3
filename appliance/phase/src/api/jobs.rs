//! The job routes: `POST /v1/jobs` (synchronous, or queued with `Prefer: respond-async`),
//! `GET`/`DELETE /v1/jobs/<id>`, `GET /v1/jobs/<id>/output`, `PUT /v1/modules`,
//! `PUT /v1/blobs/<sha256>`. Each reads the request, calls `Jobs`, and writes what came back;
//! the status documents of asynchronous jobs are written here
//! (docs/schemas/async-job-status.schema.json).

use phase_core::encoding::{hex_decode_array, hex_encode};
use phase_core::Digest;
use phase_core::job::error::ErrorCode;
use phase_core::net::http::{Method, RequestHead};

use super::{error, json_str};
use crate::http::{Body, BodySink, Request, Response};
use crate::jobs::{job_id_of_handle, valid_handle, Cancelled, Jobs, Status, Submitted, MAX_OUTPUT_CHUNK};
use crate::modules::Upload;

const NOT_A_HANDLE: &str = "a job is named by its id (64 lowercase hex digits) and, if it was placed, .<placement>";

pub fn post(jobs: &Jobs, req: Request) -> Response {
    // `Prefer: respond-async` (RFC 7240): queue it and answer at once.
    let asynchronous = req.head.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("prefer") && v.split(',').any(|p| p.trim().eq_ignore_ascii_case("respond-async")));
    let job = match jobs.request(&req.body) {
        Ok(j) => j,
        Err(e) => return error::job(&e),
    };
    if asynchronous {
        return match jobs.submit(job, req.hold, req.peer.ip()) {
            Ok(submitted) => accepted(&submitted),
            Err(e) => error::job(&e),
        };
    }
    // The body and its reservation are not needed past the parse.
    drop(req);
    match jobs.run(job) {
        Ok(finished) => {
            let resp = Response::json(200, finished.to_json());
            match finished.hold {
                Some(hold) => resp.hold(hold),
                None => resp,
            }
        }
        Err(e) => error::job(&e),
    }
}

/// 202 for a queued job: its status, where to look, and the submitter's own cancel token (none
/// for a job that ended or is being cancelled).
fn accepted(s: &Submitted) -> Response {
    let location = format!("/v1/jobs/{}", s.id);
    let body = status_json(&s.id, &s.status);
    let extra = match &s.cancel_token {
        Some(t) => format!("\"existing\":{},\"cancel_token\":\"{t}\"", s.existing),
        None => format!("\"existing\":{}", s.existing),
    };
    let body = format!("{},\"location\":\"{location}\",{extra}}}", &body[..body.len() - 1]);
    Response::json(202, body).header("Location", location)
}

/// The status object of docs/api.md for the job `handle` names, without a done job's answer
/// (`status_body` adds it).
fn status_json(handle: &str, status: &Status) -> String {
    let head = format!("{{\"job_id\":\"{}\",\"status\":\"{}\"", job_id_of_handle(handle), status.name());
    match status {
        Status::Queued { position } => format!("{head},\"position\":{position}}}"),
        Status::Running { fuel_used, placed } => format!("{head},\"fuel_used\":{fuel_used},\"placed\":{placed}}}"),
        Status::Failed { code, message } => {
            format!("{head},\"error\":{{\"status\":{},\"code\":\"{code}\",\"message\":{}}}}}", error::status(*code), json_str(message))
        }
        Status::Done { .. } | Status::Cancelling | Status::Cancelled => format!("{head}}}"),
    }
}

/// The whole status object as a body: a done job's answer (up to megabytes) is read from the
/// kept copy as it is sent, never copied per request.
fn status_body(handle: &str, status: &Status) -> Body {
    use std::io::Read;
    match status {
        Status::Done { answer } => {
            let head = format!("{{\"job_id\":\"{}\",\"status\":\"done\",\"result\":", job_id_of_handle(handle)).into_bytes();
            let len = (head.len() + answer.len() + 1) as u64;
            let reader = std::io::Cursor::new(head).chain(std::io::Cursor::new(Shared(answer.clone()))).chain(&b"}"[..]);
            Body::Reader { reader: Box::new(reader), len }
        }
        s => Body::Bytes(status_json(handle, s).into_bytes()),
    }
}

/// A kept answer's bytes, for a reader.
struct Shared(std::sync::Arc<str>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A checked `GET /v1/jobs/<id>/output` request.
pub struct OutputRead {
    id: String,
    stderr: bool,
    offset: usize,
    max: usize,
}

/// Checks `GET /v1/jobs/<id>/output?stream=&offset=&max=` (`rest`: the path after `/v1/jobs/`).
pub fn output_request(head: &RequestHead, rest: &str) -> Result<OutputRead, Response> {
    let id = rest.strip_suffix("/output").unwrap_or(rest);
    if !matches!(head.method, Method::Get | Method::Head) {
        return Err(Response::error(405, ErrorCode::MethodNotAllowed, "GET"));
    }
    if !valid_handle(id) {
        return Err(Response::error(404, ErrorCode::NotFound, NOT_A_HANDLE));
    }
    let stderr = match head.query("stream") {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => return Err(Response::error(400, ErrorCode::InvalidRequest, &format!("stream {other:?}: stdout or stderr"))),
    };
    let number = |key: &str, default: usize| -> Result<usize, Response> {
        match head.query(key) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| Response::error(400, ErrorCode::InvalidRequest, &format!("{key} {v:?}: a whole number of bytes"))),
        }
    };
    Ok(OutputRead { id: id.to_string(), stderr, offset: number("offset", 0)?, max: number("max", MAX_OUTPUT_CHUNK)? })
}

/// Answers an output read (on the worker pool).
pub fn read_output(jobs: &Jobs, r: OutputRead) -> Response {
    match jobs.output(&r.id, r.stderr, r.offset, r.max) {
        Ok(chunk) => Response::new(200, "application/octet-stream", Body::Bytes(chunk.bytes))
            .header("Phase-Output-Total", chunk.total.to_string())
            .header("Phase-Job-Status", chunk.status)
            .hold(chunk.hold),
        Err(e) => error::job(&e),
    }
}

/// `GET /v1/jobs/<id>`: the job's status; `DELETE`: cancel it.
pub fn job_route(jobs: &Jobs, head: &RequestHead, id: &str) -> Response {
    if !valid_handle(id) {
        return Response::error(404, ErrorCode::NotFound, NOT_A_HANDLE);
    }
    let result = match head.method {
        Method::Get | Method::Head => jobs.status(id).map(|s| Response::new(200, "application/json", status_body(id, &s))),
        // A queued job is cancelled now (200); a running one is stopping (202); one other
        // submitters still hold goes on (202, `released`).
        Method::Delete => jobs.cancel(id, head.query("token").unwrap_or("")).map(|c| match c {
            Cancelled::Stopped(s) => Response::json(if s == Status::Cancelled { 200 } else { 202 }, status_json(id, &s)),
            Cancelled::Released { status, others } => {
                let body = status_json(id, &status);
                Response::json(202, format!("{},\"released\":true,\"holders\":{others}}}", &body[..body.len() - 1]))
            }
        }),
        _ => return Response::error(405, ErrorCode::MethodNotAllowed, "GET or DELETE"),
    };
    result.unwrap_or_else(|e| error::job(&e))
}

/// An upload (a blob or a module) as the front's body sink: its bytes go to the data dir as
/// they arrive.
pub struct UploadSink(pub Upload);

impl BodySink for UploadSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write(bytes)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// The digest a `/v1/blobs/<sha256>` path names.
pub fn blob_name(name: &str) -> Result<Digest, Response> {
    match hex_decode_array::<32>(name) {
        Ok(d) if hex_encode(&d) == name => Ok(d),
        _ => Err(Response::error(400, ErrorCode::InvalidRequest, "a blob is named by its SHA-256 (64 lowercase hex digits)")),
    }
}

pub fn blob_answer(named: &Digest, size: u64, fresh: bool) -> Response {
    Response::json(if fresh { 201 } else { 200 }, format!("{{\"sha256\":\"{}\",\"size\":{size}}}", hex_encode(named)))
}

/// `PUT /v1/blobs/<sha256>`: the body (streamed to the data dir, or read into memory without
/// one) kept under its SHA-256 for jobs whose trees name it.
pub fn put_blob(jobs: &Jobs, req: Request) -> Response {
    let Request { head, body, hold, sink, .. } = req;
    let named = match blob_name(head.path().trim_start_matches("/v1/blobs/")) {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let result = match sink.map(|s| s.into_any().downcast::<UploadSink>()) {
        Some(Ok(sink)) => jobs.keep_blob(sink.0, &named),
        Some(Err(_)) => return Response::error(500, ErrorCode::Internal, "a blob upload lost its sink"),
        None => jobs.put_blob(body, &named),
    };
    drop(hold);
    match result {
        Ok((size, fresh)) => blob_answer(&named, size, fresh),
        Err(e) => error::job(&e),
    }
}

pub fn put_module(jobs: &Jobs, req: Request) -> Response {
    let Request { body, hold, sink, .. } = req;
    let result = match sink.map(|s| s.into_any().downcast::<UploadSink>()) {
        Some(Ok(sink)) => jobs.put_module_upload(sink.0),
        Some(Err(_)) => return Response::error(500, ErrorCode::Internal, "a module upload lost its sink"),
        None => jobs.put_module(body),
    };
    drop(hold);
    match result {
        Ok((digest, fresh)) => Response::json(if fresh { 201 } else { 200 }, format!("{{\"module_sha256\":\"{}\"}}", hex_encode(&digest))),
        Err(e) => error::job(&e),
    }
}
