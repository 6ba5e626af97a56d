//! Builds every plugin in `plugin/` as a WASI 0.2 component, so that building the host is
//! enough: no manual wasm step.

use component_build::ComponentBuild;
use std::{env, fs, path::PathBuf};

/// The bundled plugins; each package name is also the plugin's name and world.
const PLUGINS: &[&str] = &["password-policy", "breach-check", "captcha"];

fn main() {
    let built = ComponentBuild {
        packages: PLUGINS,
        target_subdir: "wasm-components",
        env: &[],
    }
    .run();
    let mut code = String::new();
    for component in built {
        let ident = component.package.to_uppercase().replace('-', "_");
        code.push_str(&format!(
            "/// The `{name}` plugin component.\npub const {ident}: BundledPlugin = BundledPlugin {{ name: {name:?}, path: {path:?}, bytes: include_bytes!({path:?}) }};\n",
            name = component.package,
            path = component.path.display().to_string(),
        ));
    }
    code.push_str(&format!(
        "/// Every bundled plugin.\npub const ALL: &[BundledPlugin] = &[{}];\n",
        PLUGINS
            .iter()
            .map(|p| p.to_uppercase().replace('-', "_"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    fs::write(out.join("bundled.rs"), code).expect("write bundled.rs");
}
