//! The learner on a GPU, in a build with `--features cuda`:
//! - the same IMPALA steps on CUDA and on the CPU, from the same parameters
//!   and batches, end with the same parameters and report the same scalars
//!   (to float tolerance);
//! - `cml-rl train` with `learner.device = "cuda"` trains on the GPU.
//!
//! Where no NVIDIA driver or device is present each test says so on stderr
//! (`SKIPPED ...`) and checks only that the binary refuses the device with
//! a clear error. CI has no GPU: there this proves that the CUDA build
//! compiles, links and fails cleanly.
#![cfg(feature = "cuda")]

#[path = "../learner/tests/common.rs"]
mod batches;
mod common;

use std::collections::HashMap;
use std::process::Stdio;

use cml_learner::{ImpalaLearner, LearnerConfig};
use cml_policy::{ActionKind, NetConfig};

fn learner(device: &str) -> ImpalaLearner {
    let config = LearnerConfig {
        device: device.to_string(),
        ..LearnerConfig::default()
    };
    ImpalaLearner::new(4, ActionKind::Categorical(2), &NetConfig::default(), config).unwrap()
}

fn host(l: &ImpalaLearner) -> Vec<(String, Vec<f32>)> {
    l.parameters()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn cuda_steps_match_cpu_steps() {
    if let Err(why) = cml_learner::cuda_available(0) {
        eprintln!("SKIPPED cuda_steps_match_cpu_steps: {why}");
        return;
    }
    let mut cpu = learner("cpu");
    let mut gpu = learner("cuda");
    // Same starting point: the CPU learner's parameters and optimizer state.
    let mut state: HashMap<String, candle_core::Tensor> = cpu.parameters().into_iter().collect();
    state.extend(cpu.optimizer_state().unwrap());
    gpu.restore(&state, 0, 0).unwrap();
    assert!(gpu.device().is_cuda());
    for seed in 1..=5 {
        let batch = batches::synthetic_batch(seed, 20, 32, 4, 2);
        let (a, b) = (cpu.step(&batch).unwrap(), gpu.step(&batch).unwrap());
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-3 * (1.0 + x.abs());
        assert!(
            close(a.total_loss, b.total_loss),
            "step {seed}: loss {} vs {}",
            a.total_loss,
            b.total_loss
        );
        assert!(
            close(a.grad_norm, b.grad_norm),
            "step {seed}: grad norm {} vs {}",
            a.grad_norm,
            b.grad_norm
        );
        for (p, q) in a.priorities.iter().zip(&b.priorities) {
            assert!(close(*p, *q), "step {seed}: priority {p} vs {q}");
        }
    }
    for ((name, x), (_, y)) in host(&cpu).iter().zip(host(&gpu)) {
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name}: CPU and CUDA parameters differ by {worst}");
    }
}

#[test]
fn train_runs_the_learner_on_cuda() {
    let dir = std::env::temp_dir().join(format!("cml-cuda-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (wp, wr, rp) = (common::free_port(), common::free_port(), common::free_port());
    let config = dir.join("train.toml");
    std::fs::write(
        &config,
        format!(
            "[env]\nid = \"CartPole-v1\"\n[actor]\nworkers = 1\nenvs_per_worker = 8\n\
             [replay]\nbase_port = {rp}\n\
             [learner]\ndevice = \"cuda\"\nbatch_size = 8\n\
             weights_endpoint = \"tcp://127.0.0.1:{wp}\"\nweights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n\
             [train]\nmax_seconds = 4\nruns_dir = \"{}\"\n",
            dir.join("runs").display()
        ),
    )
    .unwrap();
    // `timeout` bounds the run (a hung learner fails the test, not CI).
    let output = std::process::Command::new("timeout")
        .args(["60", env!("CARGO_BIN_EXE_cml-rl"), "train", config.to_str().unwrap()])
        .current_dir(&dir)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("cml-rl starts");
    let status = output.status;
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match cml_learner::cuda_available(0) {
        Err(why) => {
            eprintln!("SKIPPED train_runs_the_learner_on_cuda (checked the refusal only): {why}");
            assert!(!status.success(), "{out}");
            assert!(out.contains("learner: device `cuda`: no usable CUDA device"), "{out}");
        }
        Ok(()) => assert!(status.success() && out.contains("reached max_seconds"), "{out}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
