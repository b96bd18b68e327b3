//! Requests as handlers get them (a parsed head and the whole body) and responses as they
//! give them back: a status, headers, and a body in memory or streamed from a reader, plus
//! what must stay alive until the response is written (memory reservations, download slots).

use std::io::Read;
use std::net::SocketAddr;

use phase_core::net::http::RequestHead;

use crate::memory::Reservation;

pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// The memory reserved for this request when it was admitted.
    pub hold: Option<Reservation>,
    /// Where its body went, if the handler gave a sink when admitting it (the body is empty).
    pub sink: Option<Box<dyn super::BodySink>>,
}

pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes read from `reader` as they are written (artifacts); a read error ends the
    /// connection mid-body, which is what a client must see when a file cannot be read.
    Reader { reader: Box<dyn Read + Send>, len: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Reader { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Hook = Box<dyn FnOnce() + Send>;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
    /// Kept until the response has been written (or the connection failed).
    held: Vec<Box<dyn Send>>,
    /// Run once the whole response has been written.
    sent: Vec<Hook>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Body) -> Response {
        Response { status, headers: vec![("Content-Type", content_type.to_string())], body, close: false, held: vec![], sent: vec![] }
    }

    /// An answer with no body and no type (304, 416).
    pub fn empty(status: u16) -> Response {
        Response { status, headers: vec![], body: Body::Bytes(vec![]), close: false, held: vec![], sent: vec![] }
    }

    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", Body::Bytes(body.into_bytes()))
    }

    /// The node's one error answer: `{"status":S,"error":"<code>","message":"<one line>"}`.
    /// Every 429 and 503 says when to come back (`Retry-After: 1`): the caps and the memory
    /// that refused it are freed within about that long.
    pub fn error(status: u16, code: phase_core::job::error::ErrorCode, message: &str) -> Response {
        let r = Response::json(status, phase_core::job::error::error_json(status, code, message));
        match status {
            429 | 503 => r.header("Retry-After", "1"),
            _ => r,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Keeps `thing` alive until the response has been written.
    pub fn hold(mut self, thing: impl Send + 'static) -> Response {
        self.held.push(Box::new(thing));
        self
    }

    /// Runs `f` once the whole response has been written to the connection.
    pub fn on_sent(mut self, f: impl FnOnce() + Send + 'static) -> Response {
        self.sent.push(Box::new(f));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// The head as written: status line, Content-Length, the headers, Connection: close when
    /// closing. `body_len` is the body's length even for HEAD (whose body is not written).
    pub fn head_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\nServer: phase\r\nContent-Length: {}\r\n", self.status, reason(self.status), self.body.len());
        for (k, v) in &self.headers {
            head += k;
            head += ": ";
            head += v;
            head += "\r\n";
        }
        if !keep_alive {
            head += "Connection: close\r\n";
        }
        head += "\r\n";
        head.into_bytes()
    }

    /// Called by the front when the response is out: runs the hooks, drops what was held.
    pub fn finish(&mut self, written: bool) {
        if written {
            for f in self.sent.drain(..) {
                f();
            }
        }
        self.held.clear();
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}
