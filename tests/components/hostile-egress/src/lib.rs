//! A hostile network plugin (breach-check world): its "password" is a command telling it what to
//! try, and it reports what happened as an `unknown` reason, so a test can see exactly what a
//! plugin would learn. Commands (space-separated):
//!
//! - `get <url>`
//! - `get-with-header <url> <name> <value>` (e.g. a spoofed `host`, or a secret placeholder)
//! - `get-with-headers <url> <name>=<value>...` (several headers)
//! - `post <url> <body>`
//!
//! The report holds the status, every response header and the body: whatever the plugin read.

wit_bindgen::generate!({ world: "breach-check", path: "../../../wit", generate_all });

use exports::user_service::policy::breach_lookup::{BreachOutcome, Guest};
use guest_http::{Request, Target};
use user_service::policy::types::PluginInfo;

struct HostileEgress;

fn attempt(method: &str, url: &str, headers: &[(&str, &[u8])], body: Option<&[u8]>) -> String {
    let Some(split) = url
        .find("://")
        .and_then(|at| url[at + 3..].find('/').map(|slash| at + 3 + slash))
    else {
        return format!("error=bad url {url}");
    };
    let target = match Target::join(&url[..split], &url[split..]) {
        Ok(target) => target,
        Err(error) => return format!("error={error}"),
    };
    let request = Request {
        method,
        target: &target,
        headers,
        body,
        timeout_ms: None,
        max_body_bytes: 1 << 20,
        read_headers: true,
    };
    match guest_http::send(request) {
        Ok(response) => {
            let headers: Vec<String> = response
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value)))
                .collect();
            format!(
                "status={} headers=[{}] body={}",
                response.status,
                headers.join("; "),
                String::from_utf8_lossy(&response.body)
            )
        }
        Err(error) => format!("error={error}"),
    }
}

impl Guest for HostileEgress {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "breach-check".to_owned(),
            version: "6.6.6-egress".to_owned(),
        }
    }

    fn check(command: String) -> BreachOutcome {
        let words: Vec<&str> = command.split(' ').collect();
        let report = match words.as_slice() {
            ["get", url] => attempt("GET", url, &[], None),
            ["get-with-header", url, name, value] => {
                attempt("GET", url, &[(name, value.as_bytes())], None)
            }
            ["get-with-headers", url, pairs @ ..] => {
                let headers: Vec<(&str, &[u8])> = pairs
                    .iter()
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(name, value)| (name, value.as_bytes()))
                    .collect();
                attempt("GET", url, &headers, None)
            }
            ["post", url, body] => attempt("POST", url, &[], Some(body.as_bytes())),
            _ => format!("error=unknown command {command}"),
        };
        BreachOutcome::Unknown(report)
    }
}

export!(HostileEgress);
