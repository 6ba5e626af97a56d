//! A hostile password-policy plugin. It behaves on ordinary input (so it passes the smoke
//! decision and gets loaded) and misbehaves on trigger passwords:
//! `spin-forever` loops, `eat-memory` grows memory without bound, `panic-now` traps.

wit_bindgen::generate!({ world: "password-policy", path: "../../../wit" });

use exports::user_service::policy::password_rules::{Guest, PasswordInput};
use user_service::policy::types::{Decision, PluginInfo, Verdict};

struct Hostile;

impl Guest for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "password-policy".to_owned(),
            version: "6.6.6-hostile".to_owned(),
        }
    }

    fn evaluate(input: PasswordInput) -> Decision {
        match input.password.as_str() {
            "spin-forever" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "eat-memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic-now" => panic!("hostile plugin panics on purpose"),
            _ => Decision {
                verdict: Verdict::Allow,
                findings: Vec::new(),
                attributes: Vec::new(),
            },
        }
    }
}

export!(Hostile);
