//! `./dev`'s portable helpers (tests/dev_portable.sh) on this machine's tools and on the
//! fallbacks macOS takes (no /proc, setsid, flock or GNU timeout), forced with
//! `DEV_PORTABLE_FALLBACKS=1`. Starts nothing of the stack: it only sources `./dev`.

use std::process::Command;

fn run(fallbacks: bool) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dev_portable.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("DEV_PORTABLE_FALLBACKS", if fallbacks { "1" } else { "0" })
        .output()
        .expect("run bash tests/dev_portable.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let mode = if fallbacks { "fallbacks" } else { "native" };
    for check in [
        "proc_cmdline",
        "detach, is_ours",
        "with_timeout",
        "lock_fd9",
    ] {
        assert!(text.contains(&format!("ok   ({mode}): {check}")), "{text}");
    }
}

#[test]
fn dev_helpers_with_this_machine_s_tools() {
    run(false);
}

#[test]
fn dev_helpers_with_the_macos_fallbacks() {
    run(true);
}
