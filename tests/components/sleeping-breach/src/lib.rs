//! A breach-check plugin that waits: on the password `sleep` its `check` sleeps 30 s in a
//! `wasi:clocks` wait; with the setting `sleep-in-info = "true"` its `info()` does the same.
//! Otherwise it answers `clean`.

wit_bindgen::generate!({ world: "breach-check", path: "../../../wit", generate_all });

use exports::user_service::policy::breach_lookup::{BreachOutcome, Guest};
use std::time::Duration;
use user_service::policy::{settings, types::PluginInfo};

struct Sleeping;

/// Long enough to outlast any deadline a test sets.
const NAP: Duration = Duration::from_secs(30);

impl Guest for Sleeping {
    fn info() -> PluginInfo {
        if settings::get("sleep-in-info").as_deref() == Some("true") {
            std::thread::sleep(NAP);
        }
        PluginInfo {
            name: "sleeping-breach".to_owned(),
            version: "6.6.6-sleeping".to_owned(),
        }
    }

    fn check(password: String) -> BreachOutcome {
        if password == "sleep" {
            std::thread::sleep(NAP);
        }
        BreachOutcome::Clean
    }
}

export!(Sleeping);
