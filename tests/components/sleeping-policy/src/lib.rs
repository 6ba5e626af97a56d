//! A password-policy plugin that waits instead of computing: on the password `sleep` it sleeps
//! 30 s in a `wasi:clocks` wait (which epoch interruption alone cannot stop), and with the
//! setting `sleep-in-info = "true"` its `info()` does the same. With the setting `nap-ms`, every
//! decision first sleeps that long (a slow policy, for the tests of concurrent checks).
//! Otherwise it allows.

wit_bindgen::generate!({ world: "password-policy", path: "../../../wit" });

use exports::user_service::policy::password_rules::{Guest, PasswordInput};
use std::time::Duration;
use user_service::policy::{
    settings,
    types::{Decision, PluginInfo, Verdict},
};

struct Sleeping;

/// Long enough to outlast any deadline a test sets.
const NAP: Duration = Duration::from_secs(30);

impl Guest for Sleeping {
    fn info() -> PluginInfo {
        if settings::get("sleep-in-info").as_deref() == Some("true") {
            std::thread::sleep(NAP);
        }
        PluginInfo {
            name: "sleeping-policy".to_owned(),
            version: "6.6.6-sleeping".to_owned(),
        }
    }

    fn evaluate(input: PasswordInput) -> Decision {
        if input.password == "sleep" {
            std::thread::sleep(NAP);
        }
        if let Some(nap) = settings::get("nap-ms").and_then(|ms| ms.parse().ok()) {
            std::thread::sleep(Duration::from_millis(nap));
        }
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            attributes: Vec::new(),
        }
    }
}

export!(Sleeping);
