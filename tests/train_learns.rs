//! `configs/cartpole.toml` (IMPALA) and `configs/cartpole-apex.toml` (Ape-X
//! DQN) as shipped learn: `cml-rl train` (a debug build, so a lower target
//! than the configs' 475) reaches a mean return of 150 over 100 training
//! episodes, and the final checkpoint's greedy policy is far above a random
//! one (~22) when `cml-rl eval` plays it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, spawn, wait_exit};

#[test]
fn shipped_cartpole_config_learns() {
    shipped_config_learns("cartpole.toml");
}

#[test]
fn shipped_cartpole_apex_config_learns() {
    shipped_config_learns("cartpole-apex.toml");
}

/// Gymnasium's CartPole in a Python worker (needs `CML_PYTHON` with
/// gymnasium; CI sets it): training and the checkpoint's eval both step it
/// through shared memory.
#[test]
fn shipped_gymnasium_cartpole_config_learns() {
    if cml_pyenvs::test_python(&["gymnasium"]).is_none() {
        return;
    }
    let before = gym_shm_files();
    shipped_config_learns("cartpole-gymnasium.toml");
    let left: Vec<_> = gym_shm_files().into_iter().filter(|f| !before.contains(f)).collect();
    assert!(left.is_empty(), "shared memory left behind: {left:?}");
}

fn gym_shm_files() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with("cml-rl-gym-"))
                .collect()
        })
        .unwrap_or_default()
}

/// One training run at a time: each wants the machine's cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn shipped_config_learns(name: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("cml-learns-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(format!("{}/configs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // Same settings; free ports, a temp run directory, a reachable target.
    let (wp, wr, rp) = (free_port(), free_port(), free_port());
    let text = shipped
        .replace(
            "[learner]\n",
            &format!(
                "[learner]\nweights_endpoint = \"tcp://127.0.0.1:{wp}\"\n\
                 weights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n"
            ),
        )
        .replace("[replay]\n", &format!("[replay]\nbase_port = {rp}\n"))
        .replace("target_return = 475.0", "target_return = 150.0")
        .replace(
            "max_seconds = 120.0",
            &format!("max_seconds = 240.0\nruns_dir = \"{}\"", dir.join("runs").display()),
        );
    for (key, why) in [
        ("base_port", "replay"),
        ("target_return = 150.0", "train"),
        ("runs_dir", "train"),
    ] {
        assert!(text.contains(key), "configs/{name} changed shape ({why}): {text}");
    }
    let config = dir.join(name);
    std::fs::write(&config, &text).unwrap();

    let bin = env!("CARGO_BIN_EXE_cml-rl");
    let mut train = spawn(&["train", config.to_str().unwrap()], &dir, Stdio::piped());
    let status = wait_exit(&mut train, Duration::from_secs(300));
    let mut stdout = String::new();
    std::io::Read::read_to_string(train.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{status:?}: {stdout}");
    assert!(stdout.contains("reached 150"), "stopped before learning: {stdout}");

    let run = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    // The row of the step that met the target is the last one in metrics.csv.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    let mean_return: f64 = last[4].parse().unwrap();
    assert!(mean_return >= 150.0, "last metrics.csv row: {last:?}");
    let mut checkpoints: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    checkpoints.sort();
    let out = Command::new(bin)
        .args([
            "eval",
            checkpoints.last().unwrap().to_str().unwrap(),
            "--episodes",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mean = report["mean_return"].as_f64().unwrap();
    // Well clear of a random policy (~22), with room for a run that stopped
    // on a lucky window (README, Learning).
    assert!(mean >= 50.0, "greedy return of the final policy: {mean}");
    let _ = std::fs::remove_dir_all(&dir);
}
