//! Builds the test components: hostile and broken plugins, and a second version of the
//! password-policy plugin for the hot-swap tests.

use component_build::ComponentBuild;
use std::{env, fs, path::PathBuf};

/// Version the "next" build of the password-policy plugin reports.
const NEXT_VERSION: &str = "1.0.1-next";

fn main() {
    let mut code = String::new();
    let mut emit = |name: &str, path: &std::path::Path| {
        code.push_str(&format!(
            "/// Path of the `{name}` test component.\npub const {}: &str = {:?};\n",
            name.to_uppercase().replace('-', "_"),
            path.display().to_string()
        ));
    };
    for component in (ComponentBuild {
        packages: &[
            "hostile-policy",
            "trapping-policy",
            "live-trapping-policy",
            "wrong-world",
            "hostile-egress",
            "sleeping-policy",
            "sleeping-breach",
            "sleeping-captcha",
        ],
        target_subdir: "wasm-test-components",
        env: &[],
    })
    .run()
    {
        emit(&component.package, &component.path);
    }
    for component in (ComponentBuild {
        packages: &["password-policy"],
        target_subdir: "wasm-next-version",
        env: &[("PLUGIN_VERSION_OVERRIDE", NEXT_VERSION)],
    })
    .run()
    {
        emit("password-policy-next", &component.path);
    }
    code.push_str(&format!("/// Version reported by [`PASSWORD_POLICY_NEXT`].\npub const NEXT_VERSION: &str = {NEXT_VERSION:?};\n"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    fs::write(out.join("test_components.rs"), code).expect("write test_components.rs");
}
