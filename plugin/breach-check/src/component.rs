//! The WASI 0.2 component: binds the range lookup to the `breach-check` world.

use crate::{Lookup, hash, lookup_in_response, settings::BreachSettings};
use guest_http::{Request, Target};

wit_bindgen::generate!({ world: "breach-check", path: "../../wit", generate_all });

use exports::user_service::policy::breach_lookup::{BreachOutcome, Guest};
use user_service::policy::{
    logging::{Level, log},
    settings,
    types::PluginInfo,
};

/// Range responses are ~30 KiB (with padding); anything far larger is not one.
const MAX_RANGE_BYTES: usize = 1 << 20;

struct BreachCheck;

impl Guest for BreachCheck {
    fn info() -> PluginInfo {
        PluginInfo {
            name: crate::PLUGIN_NAME.to_owned(),
            version: crate::PLUGIN_VERSION.to_owned(),
        }
    }

    fn check(password: String) -> BreachOutcome {
        let (config, warnings) = BreachSettings::from_lookup(settings::get);
        for warning in warnings {
            log(Level::Warn, &format!("setting ignored: {warning}"));
        }
        let (prefix, suffix) = hash::prefix_and_suffix(&password);
        let target = match Target::join(&config.base_url, &format!("range/{prefix}")) {
            Ok(target) => target,
            Err(error) => return BreachOutcome::Unknown(error),
        };
        let headers: [(&str, &[u8]); 2] = [
            ("add-padding", b"true"),
            ("user-agent", config.user_agent.as_bytes()),
        ];
        let request = Request {
            method: "GET",
            target: &target,
            headers: &headers,
            body: None,
            timeout_ms: Some(config.timeout_ms),
            max_body_bytes: MAX_RANGE_BYTES,
            read_headers: false,
        };
        let response = match guest_http::send(request) {
            Ok(response) => response,
            Err(error) => return BreachOutcome::Unknown(format!("range request failed: {error}")),
        };
        match lookup_in_response(response.status, &response.body, &suffix) {
            Lookup::Count(count) if count > config.max_breaches => BreachOutcome::Breached(count),
            Lookup::Count(_) => BreachOutcome::Clean,
            Lookup::Unknown(reason) => BreachOutcome::Unknown(reason),
        }
    }
}

export!(BreachCheck);
