//! Builds the built-in step plugins (and the test plugins `probe`, `rogue` and `greet`) for
//! wasm32-wasip2, so that `runbookd` can embed them and stay one self-contained binary.
//!
//! The nested cargo gets its own target directory: sharing ours would deadlock on cargo's
//! build lock, which the outer build holds while this script runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest crates to build, by package name.
const GUESTS: [&str; 9] = [
    "runbook-plugin-shell",
    "runbook-plugin-wait",
    "runbook-plugin-instruction",
    "runbook-plugin-http",
    "runbook-plugin-graphql",
    "runbook-plugin-database",
    "runbook-probe-plugin",
    "runbook-rogue-plugin",
    "runbook-greet-plugin",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the daemon crate lives one level below the workspace root");
    for watched in [
        "plugins",
        "plugin-sdk",
        "daemon/sql-classify",
        "tests/guests",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let target_dir = guest_target_dir(&PathBuf::from(env("OUT_DIR")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in GUESTS {
        build.args(["-p", guest]);
    }
    // The outer build's flags and wrappers (clippy's, coverage's) are for the host crates.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .expect("cannot run cargo to build the wasm32-wasip2 plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed; is the target installed? \
             run `rustup target add wasm32-wasip2`"
        );
    }
    let guest_dir = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=RUNBOOKD_GUEST_DIR={}", guest_dir.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// `<target>/wasm-plugins`, found from OUT_DIR (`<target>[/<triple>]/<profile>/build/<pkg>/out`)
/// so that check, clippy, build and test share one guest build.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    let build_dir = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .expect("OUT_DIR is inside a `build` directory");
    let profile_dir = build_dir.parent().expect("`build` has a parent");
    let target_root = profile_dir.parent().expect("the profile dir has a parent");
    target_root.join("wasm-plugins")
}
