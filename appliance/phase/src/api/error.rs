//! What an error code means to an HTTP client: its status (docs/api.md "Errors"). The only
//! place that maps one to the other; the body and `Retry-After` are `Response::error`'s.

use phase_core::job::error::ErrorCode;

use crate::http::Response;
use crate::jobs::JobError;

/// The HTTP status of an error code.
pub fn status(code: ErrorCode) -> u16 {
    use ErrorCode::*;
    match code {
        InvalidRequest | BadBody => 400,
        Forbidden => 403,
        ModuleNotFound | FileNotFound | NotFound => 404,
        MethodNotAllowed => 405,
        IdempotencyConflict | Cancelled | AlreadyEnded => 409,
        BodyTooLarge | ModuleTooLarge | InputTooLarge => 413,
        InvalidModule | LimitOutOfRange | InvalidArgsEnv | InvalidFiles | P2pDisabled | ResultTooLarge => 422,
        Busy | QueueFull => 429,
        PeerUnreachable | BadReceipt | BadPeerAnswer | PeerError => 502,
        NoMemory | HostFailure | IdempotencyPending | P2pUnavailable | NoPeer | NotEnoughPeers | Stopping | TooManyConnections | ResultsFull => 503,
        PeerTimeout => 504,
        Storage => 507,
        // The front's own: what it answers a request it could not take as HTTP.
        BadRequest => 400,
        Timeout => 408,
        LengthRequired => 411,
        ExpectationFailed => 417,
        HeadTooLarge => 431,
        HttpVersion => 505,
        Internal => 500,
    }
}

/// The answer to a job error.
pub fn job(e: &JobError) -> Response {
    let code = e.code();
    Response::error(status(code), code, &e.to_string())
}

/// The answer to an operator's update request that was refused.
pub fn update(e: &crate::update::UpdateError) -> Response {
    use crate::update::{PublishError, UpdateError};
    let code = match e {
        UpdateError::Token | UpdateError::NoOperator => ErrorCode::Forbidden,
        UpdateError::Publish(PublishError::Body(_) | PublishError::Refused(_)) => ErrorCode::InvalidRequest,
        UpdateError::Publish(PublishError::NoStore) => ErrorCode::NotFound,
        UpdateError::Publish(PublishError::Store(_)) => ErrorCode::Storage,
    };
    Response::error(status(code), code, &e.to_string())
}

/// The error body of a job error, as the job protocol carries it to a peer.
pub fn job_json(e: &JobError) -> String {
    let code = e.code();
    phase_core::job::error::error_json(status(code), code, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_every_429_and_503_says_when_to_come_back() {
        for code in ErrorCode::ALL {
            let s = status(*code);
            assert!((400..600).contains(&s), "{code}: {s}");
            let r = Response::error(s, *code, "why");
            let retry = r.headers.iter().any(|(k, v)| *k == "Retry-After" && v == "1");
            assert_eq!(retry, s == 429 || s == 503, "{code}");
        }
    }
}
