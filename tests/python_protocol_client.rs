//! An independent Python client (pyzmq + msgpack + blake3), written from
//! docs/PROTOCOL.md alone, talks to a real shard process: hello, insert,
//! sample with byte-exact contents, priorities, stats, and bad input.
//!
//! Needs a Python with those packages: `CML_PYTHON` (set by `.ci/run`),
//! else `python3` if it has them. Under CI the test fails without one.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{setup_env, spawn};

fn python() -> Option<String> {
    if let Ok(python) = std::env::var("CML_PYTHON") {
        return Some(python);
    }
    let has_modules = Command::new("python3")
        .args(["-c", "import zmq, msgpack, blake3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    has_modules.then(|| "python3".to_string())
}

#[test]
fn independent_python_client_speaks_the_protocol() {
    let Some(python) = python() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide CML_PYTHON with pyzmq, msgpack and blake3 (.ci/run does)"
        );
        eprintln!("SKIPPED: no Python with pyzmq, msgpack and blake3 (set CML_PYTHON)");
        return;
    };
    // f32 observations of shape [4], and u8 planes of shape [10, 10, 4].
    for env in ["CartPole-v1", "MinAtar/Breakout-v1"] {
        run_client(&python, env);
    }
}

fn run_client(python: &str, env: &str) {
    let (dir, config, endpoint) = setup_env("python", env, "");
    let _shard = spawn(
        &["replay", "--config", config.to_str().unwrap(), "--shard", "0"],
        &dir,
        Stdio::null(),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/protocol_client.py");
    let mut child = Command::new(python)
        .args([script, "--endpoint", &endpoint, "--key-file"])
        .arg(dir.join("run.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the Python client did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "python client failed on {env}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
