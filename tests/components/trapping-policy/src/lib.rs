//! A broken password-policy plugin: every decision traps, so the catalog must reject it at its
//! smoke decision and keep the previous version serving.

wit_bindgen::generate!({ world: "password-policy", path: "../../../wit" });

use exports::user_service::policy::password_rules::{Guest, PasswordInput};
use user_service::policy::types::{Decision, PluginInfo};

struct Trapping;

impl Guest for Trapping {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "password-policy".to_owned(),
            version: "0.0.1-broken".to_owned(),
        }
    }

    fn evaluate(_input: PasswordInput) -> Decision {
        unreachable!("this plugin is broken on purpose")
    }
}

export!(Trapping);
