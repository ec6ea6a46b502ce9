//! Helpers for tests that run `cml-rl` processes on loopback.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kills the child when dropped, so a failing test leaves no process behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

pub fn spawn(args: &[&str], dir: &Path, stdout: Stdio) -> Reaped {
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_cml-rl"))
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cml-rl starts"),
    )
}

/// Waits (bounded) for `child` to exit.
pub fn wait_exit(child: &mut Reaped, limit: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cml-rl did not finish in {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A new temp dir `{prefix}-{pid}` holding a fresh shared key, `run.key`.
pub fn dir_with_key(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cml-rl"))
        .args(["keygen", "run.key"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// A temp dir with a fresh key and a CartPole config whose single shard
/// listens on a free loopback port; returns (dir, config, endpoint).
pub fn setup(name: &str, extra: &str) -> (PathBuf, PathBuf, String) {
    setup_env(name, "CartPole-v1", extra)
}

/// As [`setup`], for the env `env_id`.
#[allow(dead_code)]
pub fn setup_env(name: &str, env_id: &str, extra: &str) -> (PathBuf, PathBuf, String) {
    let dir = dir_with_key(&format!("cml-replay-{name}"));
    let port = free_port();
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 3\n[env]\nid = \"{env_id}\"\n[transport]\nkey_file = \"run.key\"\n\
             [replay]\nbase_port = {port}\nstats_interval_s = 0.5\n{extra}"
        ),
    )
    .unwrap();
    (dir, config, format!("tcp://127.0.0.1:{port}"))
}

/// `GET path` from `127.0.0.1:port` (bounded by a 5 s read timeout):
/// the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("port open");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (
        code,
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default(),
    )
}

/// The run directory `train` made under `dir/runs` (the first, for a test
/// that ran one).
pub fn only_run(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("runs"))
        .expect("a runs directory")
        .flatten()
        .next()
        .expect("a run directory")
        .path()
}

/// The run's newest checkpoint (`<run>/checkpoints/*.safetensors`, by name).
pub fn latest_checkpoint(run: &Path) -> PathBuf {
    let mut checkpoints: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    checkpoints.sort();
    checkpoints.pop().expect("a checkpoint")
}

/// `cml-rl eval <checkpoint> --episodes n --json`: its report.
pub fn eval_report(checkpoint: &Path, episodes: usize) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cml-rl"))
        .args([
            "eval",
            checkpoint.to_str().unwrap(),
            "--episodes",
            &episodes.to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
