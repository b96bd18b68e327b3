//! `phase fleet`: the fleet view of a node (`GET /v1/fleet`, what its page at `/` shows) on a
//! terminal; with `--update`, an operator's `POST /v1/update`.

use std::time::{Duration, Instant};

use argh::FromArgs;

use super::{report, Failure, Outcome, EXIT_ERROR};
use crate::boot::fetch;
use crate::update::fleet_text;

#[derive(FromArgs)]
/// Show a node, its peers and the rollouts they are in (what the node's page at / shows).
#[argh(subcommand, name = "fleet")]
pub struct FleetCmd {
    /// the node's API (default http://127.0.0.1:8700)
    #[argh(option, default = "String::from(\"http://127.0.0.1:8700\")")]
    node: String,
    /// print the node's /v1/fleet JSON as it came
    #[argh(switch)]
    json: bool,
    /// ask the node to take the newest release up now, whatever its wave (needs
    /// --operator-token-file)
    #[argh(switch)]
    update: bool,
    /// with --update: the file holding the node's operator token
    #[argh(option)]
    operator_token_file: Option<std::path::PathBuf>,
}

pub fn fleet(c: FleetCmd) -> i32 {
    let outcome = (|| -> Outcome {
        let base = fetch::Url::parse(&c.node).map_err(|e| Failure::new(format!("--node {}: {e}", c.node)))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        if c.update {
            let token_file = c.operator_token_file.as_deref().ok_or_else(|| Failure::new("--update needs --operator-token-file"))?;
            let token = super::operator_token(token_file)?;
            let url = base.join("v1/update");
            let resp = fetch::post(&url, &format!("Authorization: Bearer {token}\r\n"), b"", deadline).map_err(|e| Failure::new(e.to_string()))?;
            let status = resp.status;
            let body = String::from_utf8_lossy(&fetch::read_small(resp, &url, 64 << 10).map_err(|e| Failure::new(e.to_string()))?).trim().to_string();
            return match status {
                202 => Ok(body),
                _ => Err(Failure::new(format!("{url} answered {status}: {body}"))),
            };
        }
        let text = fleet_text::fleet_json(&base, deadline).map_err(Failure::new)?;
        match c.json {
            true => Ok(text.trim().to_string()),
            false => Ok(fleet_text::render(&miniserde::json::from_str(&text).map_err(|_| Failure::new(format!("{}: not JSON", base.join("v1/fleet"))))?)),
        }
    })();
    report(outcome, "fleet", EXIT_ERROR)
}
