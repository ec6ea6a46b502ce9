//! With a fixed seed, the same weights and one worker, an actor host's
//! worker produces the same unrolls run after run; a different seed does not.

use candle_core::Device;
use candle_nn::VarMap;
use cml_actors::{policy_from_weights, UnrollChunk, Worker};
use cml_policy::{ActionKind, NetConfig, PolicyNet};

fn weights() -> Vec<u8> {
    let varmap = VarMap::new();
    PolicyNet::init(
        &varmap,
        4,
        ActionKind::Categorical(2),
        &NetConfig::default(),
        7,
        &Device::Cpu,
    )
    .unwrap();
    PolicyNet::to_safetensors(&varmap).unwrap()
}

fn run(seed: u64, env: &str, unrolls: usize) -> Vec<UnrollChunk> {
    let venv = cml_envs::make_vec(env, &cml_envs::Params::new(), 64).unwrap();
    let mut worker = Worker::new(0, venv, 20, 0, seed, &NetConfig::default(), None).unwrap();
    let net = match env {
        "Pendulum-v1" => {
            let varmap = VarMap::new();
            PolicyNet::init(
                &varmap,
                3,
                ActionKind::Gaussian(1),
                &NetConfig::default(),
                7,
                &Device::Cpu,
            )
            .unwrap();
            PolicyNet::to_safetensors(&varmap).unwrap()
        }
        _ => weights(),
    };
    let policy = policy_from_weights(
        &net,
        1,
        worker.layout(),
        worker.observation_shape(),
        &NetConfig::default(),
    )
    .unwrap();
    (0..unrolls)
        .map(|_| {
            let mut chunk = worker.new_chunk();
            worker.fill(&policy, &mut chunk).unwrap();
            chunk
        })
        .collect()
}

fn same(a: &[UnrollChunk], b: &[UnrollChunk]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.frames == y.frames && x.episodes == y.episodes)
}

#[test]
fn same_seed_same_weights_same_unrolls() {
    for env in ["CartPole-v1", "Pendulum-v1"] {
        let first = run(11, env, 30);
        let second = run(11, env, 30);
        assert!(same(&first, &second), "{env}: two runs differ");
        let other = run(12, env, 30);
        assert!(!same(&first, &other), "{env}: the seed changes nothing");
        // The layout holds real trajectories: episodes end, and x_{t+1} of
        // an unroll is the next unroll's x_0.
        assert!(first.iter().map(|c| c.episodes.len()).sum::<usize>() > 0, "{env}");
        let d = if env == "Pendulum-v1" { 3 } else { 4 };
        let obs = |c: &UnrollChunk, actor: usize, t: usize| -> Vec<u8> {
            let at = ((actor * 21 + t) * d) * 4;
            c.frames[0][at..at + d * 4].to_vec()
        };
        for w in first.windows(2) {
            for actor in [0, 17, 63] {
                assert_eq!(obs(&w[0], actor, 20), obs(&w[1], actor, 0), "{env}: actor {actor}");
            }
        }
    }
}
