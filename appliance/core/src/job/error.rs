//! The error codes of the job API (docs/api.md "Errors"): a closed set, the same over HTTP and
//! over the job protocol between nodes. Every error answer has one shape,
//! `{"status":S,"error":CODE,"message":TEXT}` (`error_json`, also for the HTTP front's own
//! codes); which status a code has is the node's api to say, not this format's.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use miniserde::json;

macro_rules! codes {
    ($($variant:ident = $text:literal,)*) => {
        /// Every error code a node answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it travels (`busy`, `no_memory` …).
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text,)* }
            }

            pub fn parse(text: &str) -> Option<ErrorCode> {
                match text { $($text => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    InvalidRequest = "invalid_request",
    BadBody = "bad_body",
    BodyTooLarge = "body_too_large",
    ModuleNotFound = "module_not_found",
    ModuleTooLarge = "module_too_large",
    InvalidModule = "invalid_module",
    InputTooLarge = "input_too_large",
    LimitOutOfRange = "limit_out_of_range",
    InvalidArgsEnv = "invalid_args_env",
    InvalidFiles = "invalid_files",
    FileNotFound = "file_not_found",
    Busy = "busy",
    QueueFull = "queue_full",
    ResultsFull = "results_full",
    ResultTooLarge = "result_too_large",
    NoMemory = "no_memory",
    HostFailure = "host_failure",
    IdempotencyConflict = "idempotency_conflict",
    IdempotencyPending = "idempotency_pending",
    Storage = "storage",
    Cancelled = "cancelled",
    P2pDisabled = "p2p_disabled",
    P2pUnavailable = "p2p_unavailable",
    NoPeer = "no_peer",
    NotEnoughPeers = "not_enough_peers",
    PeerUnreachable = "peer_unreachable",
    PeerTimeout = "peer_timeout",
    BadReceipt = "bad_receipt",
    BadPeerAnswer = "bad_peer_answer",
    PeerError = "peer_error",
    NotFound = "not_found",
    Forbidden = "forbidden",
    AlreadyEnded = "already_ended",
    MethodNotAllowed = "method_not_allowed",
    Stopping = "stopping",
    // The HTTP front's own (a request it could not take as HTTP).
    BadRequest = "bad_request",
    HeadTooLarge = "head_too_large",
    HttpVersion = "http_version",
    LengthRequired = "length_required",
    ExpectationFailed = "expectation_failed",
    Timeout = "timeout",
    TooManyConnections = "too_many_connections",
    Internal = "internal",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON of an error answer.
pub fn error_json(status: u16, code: ErrorCode, message: &str) -> String {
    format!("{{\"status\":{status},\"error\":\"{code}\",\"message\":{}}}", json::to_string(&message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_messages_are_escaped() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
        }
        assert_eq!(ErrorCode::parse("melted"), None);
        assert_eq!(error_json(429, ErrorCode::Busy, "a \"b\"\n"), r#"{"status":429,"error":"busy","message":"a \"b\"\n"}"#);
    }
}
