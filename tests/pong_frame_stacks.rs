//! `configs/pong.toml` end to end, made small: ale_py's C++ vector env
//! making single frames, the network stacking 4 (`[model] frame_stack`),
//! through real processes (actor host, replay shard, learner) on loopback.
//! Every unroll travels as T + 3 frames; the shard checks them, the learner
//! steps on the stacks it rebuilds, and `cml-rl eval` plays a whole game
//! from the final checkpoint with the same stacks.
//!
//! Needs `CML_PYTHON` with gymnasium and ale-py (CI sets it).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{free_port, spawn, wait_exit};

#[test]
fn pong_trains_on_frames_carried_once_and_its_checkpoint_plays_a_game() {
    if cml_pyenvs::test_python(&["gymnasium", "ale_py"]).is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cml-pong-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pong.toml")).unwrap();
    let (wp, wr, rp) = (free_port(), free_port(), free_port());
    // The shipped config stacks in the network, not in the env.
    for kept in [
        "frame_stack = 4",
        "stack_num = 1",
        "vectorization = \"vector_entry_point\"",
    ] {
        assert!(shipped.contains(kept), "configs/pong.toml: no `{kept}`");
    }
    let mut text = shipped;
    // Same env and network; fewer envs, shorter unrolls, smaller batches,
    // 40 s, free ports and a temp run directory.
    for (from, to) in [
        ("envs_per_worker = 32", "envs_per_worker = 4".to_string()),
        ("unroll_length = 32", "unroll_length = 8".to_string()),
        ("insert_batch = 16", "insert_batch = 4".to_string()),
        ("batch_size = 16", "batch_size = 2".to_string()),
        (
            "[learner]\n",
            format!(
                "[learner]\nweights_endpoint = \"tcp://127.0.0.1:{wp}\"\n\
                 weights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n"
            ),
        ),
        ("[replay]\n", format!("[replay]\nbase_port = {rp}\n")),
        (
            "max_seconds = 1800.0",
            format!("max_seconds = 40.0\nruns_dir = \"{}\"", dir.join("runs").display()),
        ),
    ] {
        assert!(text.contains(from), "configs/pong.toml changed shape: no `{from}`");
        text = text.replacen(from, &to, 1);
    }
    let config = dir.join("pong.toml");
    std::fs::write(&config, &text).unwrap();

    let mut train = spawn(&["train", config.to_str().unwrap()], &dir, Stdio::piped());
    let status = wait_exit(&mut train, Duration::from_secs(180));
    let mut stdout = String::new();
    std::io::Read::read_to_string(train.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{status:?}: {stdout}");
    assert!(stdout.contains("reached max_seconds"), "{stdout}");

    let run = common::only_run(&dir);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    let column = |name: &str| -> f64 {
        let i = header.iter().position(|&c| c == name).unwrap();
        last[i].parse().unwrap()
    };
    assert!(column("learner_steps") >= 3.0, "{metrics}");
    assert!(column("env_frames") >= 3.0 * 2.0 * 8.0, "{metrics}");

    let report = common::eval_report(&common::latest_checkpoint(&run), 1);
    // A whole game: someone reached 21 points.
    let score = report["mean_return"].as_f64().unwrap();
    assert!((-21.0..=21.0).contains(&score) && score.abs() >= 1.0, "{report}");
    assert!(report["mean_length"].as_f64().unwrap() > 100.0, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
