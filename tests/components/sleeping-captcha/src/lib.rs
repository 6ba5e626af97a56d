//! A captcha plugin that waits: on the token `sleep` its `verify` sleeps 30 s in a
//! `wasi:clocks` wait; with the setting `sleep-in-info = "true"` its `info()` does the same.
//! Otherwise it allows.

wit_bindgen::generate!({ world: "captcha", path: "../../../wit", generate_all });

use exports::user_service::policy::captcha_verifier::{CaptchaInput, Guest};
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
            name: "sleeping-captcha".to_owned(),
            version: "6.6.6-sleeping".to_owned(),
        }
    }

    fn verify(input: CaptchaInput) -> Decision {
        if input.token == "sleep" {
            std::thread::sleep(NAP);
        }
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            attributes: Vec::new(),
        }
    }
}

export!(Sleeping);
