//! Build-script helper: compiles workspace crates to `wasm32-wasip2` WASI 0.2 components.
//!
//! Used by `host/bundled-plugins/build.rs` (the plugins in `plugin/`) and `tests/build.rs` (the
//! hostile and broken test components). It runs a nested `cargo build` into its own target
//! directory beside the outer one, so the outer build's lock is never contended, and makes
//! sure the `wasm32-wasip2` target is installed first.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The Rust target every plugin is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile plugins are built with (see the workspace `Cargo.toml`).
pub const PROFILE: &str = "wasm-plugin";

/// Shadow-stack size of the plugin components, in bytes.
pub const PLUGIN_STACK_BYTES: usize = 128 << 10;

/// Initial linear memory of the plugin components, in bytes (a multiple of 64 KiB).
pub const PLUGIN_INITIAL_MEMORY_BYTES: usize = 1 << 20;

/// One nested build: some workspace packages, with optional extra environment.
pub struct ComponentBuild<'a> {
    /// Workspace package names to build; each must be a `cdylib`.
    pub packages: &'a [&'a str],
    /// Name of the target sub-directory, so differently configured builds don't thrash.
    pub target_subdir: &'a str,
    /// Extra environment for the nested build (e.g. a version override).
    pub env: &'a [(&'a str, &'a str)],
}

/// A built component: the package it came from and where its `.wasm` is.
pub struct BuiltComponent {
    /// The cargo package that builds it.
    pub package: String,
    /// Where the built `.wasm` file is.
    pub path: PathBuf,
}

impl ComponentBuild<'_> {
    /// Builds the packages and returns their component files. Panics with an actionable
    /// message on failure: this only runs inside build scripts, where a panic is the report.
    pub fn run(&self) -> Vec<BuiltComponent> {
        ensure_wasm_target();
        let workspace = workspace_root();
        let target_dir = outer_target_dir().join(self.target_subdir);
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command
            .current_dir(&workspace)
            .args(["build", "--target", WASM_TARGET, "--profile", PROFILE])
            .arg("--target-dir")
            .arg(&target_dir);
        for package in self.packages {
            command.args(["-p", package]);
        }
        // The outer build's flags are for the host, not for wasm: don't leak them in.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            command.env_remove(var);
        }
        // A 128 KiB shadow stack instead of Rust's default 1 MiB: wasm-ld puts the stack first,
        // so a small one keeps a decision's stack, data and heap within the few pages the
        // host's pooling allocator keeps resident between instances.
        // And an initial memory with room for a decision's heap, so that a fresh instance never
        // needs `memory.grow` (a syscall, and pages to reset afterwards); untouched pages of a
        // copy-on-write image cost nothing.
        // And wasm SIMD (on by default in wasmtime), so byte scans such as the breach check's
        // range search are vectorised.
        command.env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            format!(
                "-C link-arg=-zstack-size={PLUGIN_STACK_BYTES} -C link-arg=--initial-memory={PLUGIN_INITIAL_MEMORY_BYTES} -C target-feature=+simd128"
            ),
        );
        for (key, value) in self.env {
            command.env(key, value);
        }
        let status = command
            .status()
            .unwrap_or_else(|error| panic!("could not run cargo to build plugins: {error}"));
        assert!(
            status.success(),
            "building the wasm components {:?} failed (see the cargo output above)",
            self.packages
        );

        println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("Cargo.lock").display()
        );
        println!("cargo:rerun-if-env-changed=PLUGIN_VERSION_OVERRIDE");
        self.packages
            .iter()
            .map(|package| {
                let manifest = package_dir(&workspace, package);
                println!("cargo:rerun-if-changed={}", manifest.display());
                let file = format!("{}.wasm", package.replace('-', "_"));
                let path = target_dir.join(WASM_TARGET).join(PROFILE).join(file);
                assert!(
                    path.exists(),
                    "cargo said it built {package} but {} is missing",
                    path.display()
                );
                BuiltComponent {
                    package: (*package).to_owned(),
                    path,
                }
            })
            .collect()
    }
}

/// The workspace root: two levels above the calling crate (`host/x`, `tests/` is one level).
fn workspace_root() -> PathBuf {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"));
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("wit").is_dir() && dir.join("Cargo.toml").is_file())
        .expect("the workspace root (with wit/ and Cargo.toml) is above this crate")
        .to_path_buf()
}

/// Finds a workspace package's directory by looking where this workspace keeps them.
fn package_dir(workspace: &Path, package: &str) -> PathBuf {
    ["plugin", "tests/components", "host"]
        .iter()
        .map(|parent| workspace.join(parent).join(package))
        .find(|dir| dir.join("Cargo.toml").is_file())
        .unwrap_or_else(|| panic!("no crate directory for package {package}"))
}

/// The outer build's target directory, derived from `OUT_DIR`
/// (`<target>/[<triple>/]<profile>/build/<pkg>-<hash>/out`).
fn outer_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let build_dir = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .expect("OUT_DIR lies under a build/ directory");
    let profile_dir = build_dir.parent().expect("build/ has a parent");
    let mut target = profile_dir
        .parent()
        .expect("the profile directory has a parent")
        .to_path_buf();
    // `cargo build --target <triple>` adds one level: `<target>/<triple>/<profile>`.
    if env::var("TARGET").is_ok_and(|triple| {
        target
            .file_name()
            .is_some_and(|name| name == triple.as_str())
    }) {
        target.pop();
    }
    target
}

/// Makes sure the `wasm32-wasip2` standard library is installed, installing it through rustup
/// when it is missing (this machine has `RUSTUP_AUTO_INSTALL=0`, so nothing else will).
fn ensure_wasm_target() {
    if wasm_target_installed() {
        return;
    }
    println!(
        "cargo:warning=installing the {WASM_TARGET} target with rustup (needed to build the plugins)"
    );
    let installed = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        installed && wasm_target_installed(),
        "the {WASM_TARGET} target is missing and could not be installed: \
         run `rustup target add {WASM_TARGET}`"
    );
}

fn wasm_target_installed() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .is_some_and(|sysroot| {
            sysroot
                .join("lib/rustlib")
                .join(WASM_TARGET)
                .join("lib")
                .is_dir()
        })
}
