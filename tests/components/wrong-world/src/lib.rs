//! A valid component of the wrong world (`breach-check`): a password-policy slot must refuse it.

wit_bindgen::generate!({ world: "breach-check", path: "../../../wit", generate_all });

use exports::user_service::policy::breach_lookup::{BreachOutcome, Guest};
use user_service::policy::types::PluginInfo;

struct WrongWorld;

impl Guest for WrongWorld {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "password-policy".to_owned(),
            version: "9.9.9-wrong-world".to_owned(),
        }
    }

    fn check(_password: String) -> BreachOutcome {
        BreachOutcome::Clean
    }
}

export!(WrongWorld);
