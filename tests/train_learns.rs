//! `configs/cartpole.toml` (IMPALA) and `configs/cartpole-apex.toml` (Ape-X
//! DQN) as shipped learn: `cml-rl train` (a debug build, so a lower target
//! than the configs' 475) reaches a mean return of 150 over 100 training
//! episodes, and the final checkpoint's greedy policy is far above a random
//! one (~22) when `cml-rl eval` plays it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, spawn, wait_exit};

#[test]
fn shipped_cartpole_config_learns() {
    shipped_config_learns("cartpole.toml", |text| text, |_, _| {});
}

#[test]
fn shipped_cartpole_apex_config_learns() {
    shipped_config_learns("cartpole-apex.toml", |text| text, |_, _| {});
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
    shipped_config_learns("cartpole-gymnasium.toml", |text| text, |_, _| {});
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

/// A Python worker process killed mid-run (SIGKILL, as a segfault or the
/// OOM killer would): its actor worker makes its envs afresh, the host's
/// other worker and the learner go on, and the run still reaches its
/// target, hundreds of learner steps later.
#[test]
fn training_goes_on_when_a_python_worker_is_killed() {
    if cml_pyenvs::test_python(&["gymnasium"]).is_none() {
        return;
    }
    let before = gym_shm_files();
    let two_workers =
        |text: String| text.replace("workers = 1\nenvs_per_worker = 64", "workers = 2\nenvs_per_worker = 32");
    let kill_one = |train: &common::Reaped, dir: &Path| {
        let deadline = Instant::now() + Duration::from_secs(120);
        // Both Python workers up and the learner stepping.
        let (workers, steps) = loop {
            assert!(
                Instant::now() < deadline,
                "no Python workers and learner steps within 120 s"
            );
            let workers = python_workers_under(train.0.id());
            let steps = last_learner_step(dir);
            if workers.len() == 2 && steps.is_some_and(|s| s >= 20) {
                break (workers, steps.unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let killed = Command::new("kill")
            .args(["-KILL", &workers[0].to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        // A fresh worker replaces it; the other one is untouched.
        let replaced = loop {
            assert!(Instant::now() < deadline, "the killed Python worker was not replaced");
            let now = python_workers_under(train.0.id());
            if now.len() == 2 && !now.contains(&workers[0]) {
                break now;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(replaced.contains(&workers[1]), "{workers:?} -> {replaced:?}");
        let run = run_dir(dir).unwrap();
        let log = std::fs::read_to_string(run.join("logs").join("actor.log")).unwrap_or_default();
        assert!(log.contains("making the worker's envs afresh"), "actor.log: {log}");
        // Training goes on: hundreds of learner steps after the kill.
        loop {
            assert!(
                Instant::now() < deadline,
                "the learner stopped after the kill at step {steps}"
            );
            if last_learner_step(dir).is_some_and(|s| s >= steps + 300) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    shipped_config_learns("cartpole-gymnasium.toml", two_workers, kill_one);
    let left: Vec<_> = gym_shm_files().into_iter().filter(|f| !before.contains(f)).collect();
    assert!(left.is_empty(), "shared memory left behind: {left:?}");
}

/// Python worker processes (`python -u -c ...`) whose parent is a child of
/// `pid` (the actor host under `train`).
fn python_workers_under(pid: u32) -> Vec<u32> {
    let parent_of = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces, so after ')'.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default();
    found.retain(|&p| {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        args.get(1..3) == Some(&[b"-u".as_slice(), b"-c".as_slice()][..])
            && parent_of(p).and_then(parent_of) == Some(pid)
    });
    found.sort_unstable();
    found
}

/// The one run directory under `dir`/runs.
fn run_dir(dir: &Path) -> Option<std::path::PathBuf> {
    Some(std::fs::read_dir(dir.join("runs")).ok()?.flatten().next()?.path())
}

/// The learner step of the last metrics.csv row of the run under `dir`.
fn last_learner_step(dir: &Path) -> Option<u64> {
    let run = run_dir(dir)?;
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).ok()?;
    let header: Vec<&str> = metrics.lines().next()?.split(',').collect();
    let column = header.iter().position(|&c| c == "learner_steps")?;
    metrics.lines().last()?.split(',').nth(column)?.parse().ok()
}

/// One training run at a time: each wants the machine's cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains `configs/NAME` (edited by `edit`) to a mean return of 150 while
/// `during` looks at the running `train` and its run directory; checks the
/// final checkpoint's greedy return.
fn shipped_config_learns(name: &str, edit: impl FnOnce(String) -> String, during: impl FnOnce(&common::Reaped, &Path)) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("cml-learns-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(format!("{}/configs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // Same settings; free ports, a temp run directory, a reachable target.
    let (wp, wr, rp) = (free_port(), free_port(), free_port());
    let text = edit(shipped)
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

    let mut train = spawn(&["train", config.to_str().unwrap()], &dir, Stdio::piped());
    during(&train, &dir);
    let status = wait_exit(&mut train, Duration::from_secs(300));
    let mut stdout = String::new();
    std::io::Read::read_to_string(train.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{status:?}: {stdout}");
    assert!(stdout.contains("reached 150"), "stopped before learning: {stdout}");

    let run = run_dir(&dir).unwrap();
    // The row of the step that met the target is the last one in metrics.csv.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    let mean_return: f64 = last[4].parse().unwrap();
    assert!(mean_return >= 150.0, "last metrics.csv row: {last:?}");
    let report = common::eval_report(&common::latest_checkpoint(&run), 10);
    let mean = report["mean_return"].as_f64().unwrap();
    // Well clear of a random policy (~22), with room for a run that stopped
    // on a lucky window (README, Learning).
    assert!(mean >= 50.0, "greedy return of the final policy: {mean}");
    let _ = std::fs::remove_dir_all(&dir);
}
