//! A password-policy plugin that passes the host's smoke decision and traps on every other
//! password: a candidate that loads fine and then fails on live traffic (the rollout tests'
//! canary that must be aborted automatically).

wit_bindgen::generate!({ world: "password-policy", path: "../../../wit" });

use exports::user_service::policy::password_rules::{Guest, PasswordInput};
use user_service::policy::types::{Decision, PluginInfo, Verdict};

struct LiveTrapping;

impl Guest for LiveTrapping {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "password-policy".to_owned(),
            version: "0.0.2-traps-live".to_owned(),
        }
    }

    fn evaluate(input: PasswordInput) -> Decision {
        // The host's smoke input starts like this; everything else is live traffic.
        if !input.password.starts_with("smoke test:") {
            unreachable!("this plugin traps on live traffic on purpose")
        }
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            attributes: Vec::new(),
        }
    }
}

export!(LiveTrapping);
