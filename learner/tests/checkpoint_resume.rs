//! Checkpoints: resume is bit-exact, old ones are pruned, corrupt files are
//! refused clearly and the previous checkpoint stays usable.

mod common;

use candle_core::Device;
use cml_learner::checkpoint::{config_fingerprint, Checkpointer, Counters};
use cml_learner::optim::{AdamConfig, RmsPropConfig};
use cml_learner::{ImpalaLearner, LearnerConfig, OptimizerConfig};
use cml_policy::{ActionKind, NetConfig};
use common::synthetic_batch;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cml-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn learner(seed: u64, optimizer: OptimizerConfig) -> ImpalaLearner {
    let config = LearnerConfig {
        seed,
        optimizer,
        total_frames: 20_000,
        ..Default::default()
    };
    ImpalaLearner::new(4, ActionKind::Categorical(2), &NetConfig::default(), config).expect("learner")
}

fn params(l: &ImpalaLearner) -> Vec<(String, Vec<f32>)> {
    l.parameters()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn resume_is_exact(optimizer: OptimizerConfig, tag: &str) {
    let dir = temp_dir(tag);
    let ck = Checkpointer::new(&dir, 3).unwrap();
    let fp = config_fingerprint("test config");
    let batches: Vec<_> = (0..8).map(|i| synthetic_batch(i, 20, 8, 4, 2)).collect();

    // Uninterrupted: 8 steps.
    let mut a = learner(1, optimizer);
    for batch in &batches {
        a.step(batch).unwrap();
    }
    // Interrupted: 5 steps, checkpoint, a fresh learner (other init) resumes.
    let mut b = learner(1, optimizer);
    for batch in &batches[..5] {
        b.step(batch).unwrap();
    }
    let counters = Counters {
        env_frames: 5 * 20 * 8,
        frames_consumed: b.frames(),
        ..Default::default()
    };
    let path = ck.save(&b, &fp, counters).unwrap();
    drop(b);
    let mut c = learner(99, optimizer);
    let loaded = Checkpointer::load(&path, &Device::Cpu).unwrap();
    assert_eq!(loaded.manifest.learner_steps, 5);
    assert_eq!(loaded.manifest.env_frames, 5 * 20 * 8);
    assert_eq!(loaded.counters(), counters);
    assert_eq!(loaded.manifest.algorithm, "impala");
    Checkpointer::restore(&mut c, &loaded, Some(&fp)).unwrap();
    for batch in &batches[5..] {
        c.step(batch).unwrap();
    }
    assert_eq!((c.steps(), c.frames()), (a.steps(), a.frames()));
    assert_eq!(params(&c), params(&a), "{tag}: resumed parameters differ bit-wise");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn resume_is_bit_exact_with_rmsprop() {
    resume_is_exact(
        OptimizerConfig::Rmsprop(RmsPropConfig {
            lr: 1e-3,
            decay: 0.99,
            epsilon: 0.01,
        }),
        "rmsprop",
    );
}

#[test]
fn resume_is_bit_exact_with_adam() {
    resume_is_exact(
        OptimizerConfig::Adam(AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }),
        "adam",
    );
}

#[test]
fn keeps_the_last_k_and_refuses_corrupt_files() {
    let dir = temp_dir("prune");
    let ck = Checkpointer::new(&dir, 2).unwrap();
    let fp = config_fingerprint("cfg");
    let mut l = learner(3, OptimizerConfig::default());
    let mut saved = Vec::new();
    for i in 0..4 {
        l.step(&synthetic_batch(i, 5, 4, 4, 2)).unwrap();
        saved.push(ck.save(&l, &fp, Counters::default()).unwrap());
    }
    assert_eq!(ck.list().unwrap(), saved[2..].to_vec(), "only the newest two remain");

    // Truncate the newest: a clear error naming it; the previous one loads.
    let newest = saved[3].clone();
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let e = Checkpointer::load(&newest, &Device::Cpu)
        .err()
        .expect("truncated file refused");
    let msg = e.to_string();
    assert!(
        msg.contains(&newest.display().to_string()) && msg.contains("truncated or corrupt"),
        "{msg}"
    );
    let previous = Checkpointer::load(&saved[2], &Device::Cpu).expect("previous checkpoint intact");
    assert_eq!(previous.manifest.learner_steps, 3);

    // Garbage, and a checkpoint of another config.
    std::fs::write(&newest, b"not a checkpoint at all").unwrap();
    assert!(Checkpointer::load(&newest, &Device::Cpu).is_err());
    let mut other = learner(4, OptimizerConfig::default());
    let e = Checkpointer::restore(&mut other, &previous, Some("0000000000000000")).expect_err("fingerprint");
    assert!(e.to_string().contains("written for config"), "{e}");

    // A checkpoint of another optimizer changes nothing.
    let adam = OptimizerConfig::Adam(AdamConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    });
    let mut l2 = learner(5, adam);
    let before = params(&l2);
    assert!(Checkpointer::restore(&mut l2, &previous, None).is_err());
    assert_eq!(params(&l2), before);
    std::fs::remove_dir_all(&dir).ok();
}
