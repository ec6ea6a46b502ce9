//! `cml-rl train` end to end on loopback (CartPole, a short budget): the run
//! directory (config copy, metrics.csv, TensorBoard events, checkpoints,
//! logs), Ctrl-C with a final checkpoint, `--resume` with the same
//! counters, and `cml-rl eval` on the result.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, spawn, wait_exit, Reaped};

fn write_config(dir: &Path, total_frames: u64, metrics_port: u16) -> PathBuf {
    let (wp, wr, rp) = (free_port(), free_port(), free_port());
    let text = format!(
        "seed = 5\n[env]\nid = \"CartPole-v1\"\n\
         [actor]\nworkers = 1\nenvs_per_worker = 16\ninsert_batch = 16\nreport_interval_s = 1.0\n\
         [replay]\nmode = \"queue\"\ncapacity = 64\ncredit_window = 32\nbase_port = {rp}\n\
         [learner]\nbatch_size = 8\nreport_interval_s = 0.2\ncheckpoint_interval_s = 1.0\nmetrics_port = {metrics_port}\n\
         weights_endpoint = \"tcp://127.0.0.1:{wp}\"\nweights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n\
         [learner.optimizer]\nkind = \"adam\"\nlr = 0.0005\n\
         [train]\ntotal_frames = {total_frames}\nmax_seconds = 300\nruns_dir = \"{}\"\n",
        dir.join("runs").display()
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `promtool check metrics` (Prometheus's linter: HELP on every metric,
/// `_total` only on counters, no abbreviated units, ...) reports nothing on
/// `page`. CI installs promtool (Debian's `prometheus` package); elsewhere
/// a missing promtool skips this check with a note.
fn promtool_finds_nothing(page: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED the promtool check: {e} (install Debian's prometheus package)");
            return;
        }
        Err(e) => panic!("promtool: {e} (CI must install Debian's prometheus package)"),
    };
    // The body, without the HTTP status line and headers.
    let body = page.split_once("\r\n\r\n").map_or(page, |(_, body)| body);
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n{page}"
    );
}

/// `cml-rl eval CHECKPOINTS... --episodes N --json`, which must succeed.
fn eval_json(checkpoints: &[&Path], episodes: usize) -> serde_json::Value {
    let episodes = episodes.to_string();
    let mut args: Vec<&str> = vec!["eval"];
    args.extend(checkpoints.iter().map(|c| c.to_str().unwrap()));
    args.extend(["--episodes", &episodes, "--json"]);
    let out = Command::new(env!("CARGO_BIN_EXE_cml-rl")).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rows(run: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap_or_default();
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn checkpoints(run: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    all.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    all.sort();
    all
}

fn steps_of(checkpoint: &Path) -> u64 {
    let name = checkpoint.file_stem().unwrap().to_string_lossy().into_owned();
    name.trim_start_matches("ckpt-").parse().unwrap()
}

#[test]
fn train_interrupt_resume_and_eval() {
    let dir = std::env::temp_dir().join(format!("cml-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let metrics_port = free_port();
    let config = write_config(&dir, 120_000, metrics_port);
    let bin = env!("CARGO_BIN_EXE_cml-rl");
    let mut train = spawn(&["train", config.to_str().unwrap()], &dir, Stdio::piped());
    // Wait (bounded) for the run directory and two metric rows, then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        assert!(Instant::now() < deadline, "no metrics appeared");
        let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        if let Some(run) = runs.first() {
            if rows(run).len() >= 3 {
                break run.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Prometheus text format on /metrics, with replay stats per shard.
    let (code, page) = common::http_get(metrics_port, "/metrics");
    assert_eq!(code, 200, "{page}");
    for name in [
        "# TYPE cml_env_frames_total counter",
        "# TYPE cml_learner_steps_total counter",
        "# TYPE cml_episodes_total counter",
        "# TYPE cml_replay_inserted_total counter",
        "# TYPE cml_loss_policy gauge",
        "cml_replay_size{shard=\"0\"}",
    ] {
        assert!(page.contains(name), "{name} missing from /metrics:\n{page}");
    }
    assert!(page.contains("cml_replay_rejected_total{"), "{page}");
    for gone in ["_per_s", "# TYPE cml_loss_total gauge"] {
        assert!(!page.contains(gone), "{gone} on /metrics:\n{page}");
    }
    promtool_finds_nothing(&page);
    // Every metric the shipped Grafana dashboard queries is on the page.
    let grafana =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/cml-rl.json")).unwrap();
    let mut queried: Vec<&str> = grafana
        .match_indices("cml_")
        .map(|(at, _)| {
            let rest = &grafana[at..];
            &rest[..rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())]
        })
        .filter(|name| name.len() > "cml_".len())
        .collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 15, "{queried:?}");
    for name in queried {
        // The whole name: followed by its labels or its value.
        assert!(
            page.contains(&format!("\n{name} ")) || page.contains(&format!("\n{name}{{")),
            "the Grafana dashboard queries {name}, not on /metrics"
        );
    }
    let pid = train.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = wait_exit(&mut train, Duration::from_secs(20));
    assert!(status.success(), "train after SIGINT: {status:?}");
    let header = &rows(&run)[0];
    assert_eq!(header[0], "wall_s");
    assert!(header.contains(&"mean_return_100".to_string()) && header.contains(&"policy_lag".to_string()));
    assert!(run.join("config.toml").exists() && run.join("logs/actor.log").exists());
    let tb: Vec<_> = std::fs::read_dir(run.join("tensorboard")).unwrap().collect();
    assert_eq!(tb.len(), 1, "one TensorBoard event file");
    let first = checkpoints(&run);
    let interrupted_at = steps_of(first.last().expect("a final checkpoint after Ctrl-C"));
    assert!(interrupted_at > 0);
    let rows_before = rows(&run).len();

    // Resume: the counters continue from the checkpoint, to total_frames.
    let out = Command::new(bin)
        .args(["train", "--resume", run.to_str().unwrap()])
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("trained on"), "{stdout}");
    let after = rows(&run);
    assert!(after.len() > rows_before, "resume wrote no metrics");
    let resumed_steps: u64 = after[rows_before][2].parse().unwrap();
    assert!(
        resumed_steps > interrupted_at,
        "steps restarted: {resumed_steps} after {interrupted_at}"
    );
    // Episodes and wall seconds go on counting too.
    let (before, resumed) = (&after[rows_before - 1], &after[rows_before]);
    let episodes = |row: &Vec<String>| row[3].parse::<u64>().unwrap();
    let wall = |row: &Vec<String>| row[0].parse::<f64>().unwrap();
    assert!(
        episodes(resumed) >= episodes(before) && episodes(before) > 0,
        "episodes restarted: {resumed:?} after {before:?}"
    );
    assert!(
        wall(resumed) > wall(before),
        "wall_s restarted: {resumed:?} after {before:?}"
    );

    // The run directory is taken: a new learner there without --resume
    // would overwrite its checkpoints, so it is refused.
    let out = Command::new(bin)
        .args(["learner", "--config", run.join("config.toml").to_str().unwrap()])
        .args(["--run-dir", run.to_str().unwrap()])
        .env("CML_KEY_FILE", run.join("run.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already holds a run") && stderr.contains("--resume"),
        "{stderr}"
    );
    // train.total_frames counts env frames the actors produced (column 1);
    // frames_consumed (column 5) is what the learner trained on: B·T a step.
    let frames: u64 = after.last().unwrap()[1].parse().unwrap();
    let consumed: u64 = after.last().unwrap()[5].parse().unwrap();
    let last = checkpoints(&run).last().cloned().unwrap();
    assert!(frames >= 120_000, "{frames}");
    assert_eq!(consumed, steps_of(&last) * 8 * 20);

    // Eval the final checkpoint.
    let report = eval_json(&[&last], 3);
    assert_eq!(report["episodes"], 3);
    assert_eq!(report["returns"].as_array().unwrap().len(), 3);
    assert!(report["mean_return"].as_f64().unwrap() >= 1.0);

    // Two checkpoints side by side, on the same seeds.
    let first = checkpoints(&run).first().cloned().unwrap();
    let c = eval_json(&[&first, &last], 4);
    let (reports, diffs) = (c["reports"].as_array().unwrap(), c["differences"].as_array().unwrap());
    assert_eq!((reports.len(), diffs.len(), c["episodes"].as_u64()), (2, 1, Some(4)));
    let returns = |i: usize| -> Vec<f64> {
        reports[i]["returns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect()
    };
    let paired: f64 = returns(1).iter().zip(returns(0)).map(|(b, a)| b - a).sum::<f64>() / 4.0;
    let d = &diffs[0];
    assert!((d["mean"].as_f64().unwrap() - paired).abs() < 1e-9, "{c}");
    assert!(
        d["low"].as_f64().unwrap() <= paired && paired <= d["high"].as_f64().unwrap(),
        "{c}"
    );
    // The same checkpoint twice: the same episodes, a zero difference.
    let c = eval_json(&[&last, &last], 3);
    assert_eq!(c["reports"][0]["returns"], c["reports"][1]["returns"]);
    assert_eq!(c["differences"][0]["mean"].as_f64(), Some(0.0));
    // A checkpoint of another env is refused before anything is played.
    let other = dir.join("other-run");
    std::fs::create_dir_all(other.join("checkpoints")).unwrap();
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(other.join("config.toml"), text.replace("CartPole-v1", "Acrobot-v1")).unwrap();
    let foreign = other.join("checkpoints").join(last.file_name().unwrap());
    std::fs::copy(&last, &foreign).unwrap();
    let out = Command::new(bin)
        .args(["eval", last.to_str().unwrap(), foreign.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("checkpoints of different envs") && stderr.contains("Acrobot-v1"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pids whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// Running: present in /proc and not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[test]
fn children_stop_when_train_is_killed() {
    let dir = std::env::temp_dir().join(format!("cml-train-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(&dir, 10_000_000, free_port());
    let mut train = spawn(&["train", config.to_str().unwrap()], &dir, Stdio::null());
    let pid = train.0.id();
    // The shard and the actor host, once both are up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let children = loop {
        let children = children_of(pid);
        if children.len() >= 2 {
            break children;
        }
        assert!(Instant::now() < deadline, "train started {children:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // SIGKILL: no chance to stop them itself.
    train.0.kill().unwrap();
    train.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.iter().any(|&c| running(c)) {
        assert!(
            Instant::now() < deadline,
            "children {children:?} still running 20 s after train was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `train.max_seconds` holds while the learner waits for data: a learner
/// whose shard never receives an unroll (no actor host) still stops.
#[test]
fn learner_without_data_stops_at_max_seconds() {
    let (wp, wr) = (free_port(), free_port());
    // `setup`'s extra text lands in its [replay] table; later tables follow.
    let (dir, config, _) = common::setup(
        "no-data",
        &format!(
            "[learner]\nweights_endpoint = \"tcp://127.0.0.1:{wp}\"\n\
             weights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n[train]\nmax_seconds = 3.0\n"
        ),
    );
    let config_arg = config.to_str().unwrap();
    let _shard = spawn(&["replay", "--config", config_arg, "--shard", "0"], &dir, Stdio::null());
    let started = Instant::now();
    let mut learner = Reaped(
        Command::new(env!("CARGO_BIN_EXE_cml-rl"))
            .args(["learner", "--config", config_arg, "--run-dir"])
            .arg(dir.join("run"))
            .current_dir(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_exit(&mut learner, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(learner.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("reached max_seconds = 3"), "{stdout}");
    assert!(started.elapsed() >= Duration::from_secs(3), "stopped early: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prioritized mode samples with replacement, so frames consumed and frames
/// produced differ; each is counted where it happens, and the replay ratio
/// is their quotient.
#[test]
fn prioritized_mode_counts_produced_and_consumed_frames_apart() {
    let dir = std::env::temp_dir().join(format!("cml-train-prio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (wp, wr, rp) = (free_port(), free_port(), free_port());
    let text = format!(
        "seed = 3\n[env]\nid = \"CartPole-v1\"\n\
         [actor]\nworkers = 1\nenvs_per_worker = 16\ninsert_batch = 16\n\
         [replay]\nmode = \"prioritized\"\ncapacity = 512\nbase_port = {rp}\n\
         [learner]\nbatch_size = 16\nreport_interval_s = 0.2\n\
         weights_endpoint = \"tcp://127.0.0.1:{wp}\"\nweights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n\
         [train]\ntotal_frames = 40000\nmax_seconds = 120\nruns_dir = \"{}\"\n",
        dir.join("runs").display()
    );
    let config = dir.join("prio.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cml-rl"))
        .args(["train", config.to_str().unwrap()])
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("trained on"), "stopped by total_frames: {stdout}");
    let run = common::only_run(&dir);
    let all = rows(&run);
    let header = &all[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name}: {header:?}"))
    };
    let last = all.last().unwrap();
    let num = |name: &str| last[col(name)].parse::<f64>().unwrap();
    let (produced, consumed, steps) = (num("env_frames"), num("frames_consumed"), num("learner_steps"));
    assert!(produced >= 40_000.0, "{last:?}");
    assert_eq!(produced % 20.0, 0.0, "whole unrolls of T = 20: {produced}");
    assert_eq!(consumed, steps * 16.0 * 20.0, "B·T per step");
    assert_ne!(produced, consumed, "prioritized replay reuses and skips unrolls");
    assert!((num("replay_ratio") - consumed / produced).abs() < 1e-3, "{last:?}");
    assert!(num("train_importance_weight_mean") > 0.0 && num("train_importance_weight_mean") <= 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}
