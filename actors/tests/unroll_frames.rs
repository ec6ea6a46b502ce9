//! A worker's unroll frames are exactly what its envs did: observations in
//! the space's dtype (CartPole f32, MinAtar u8 planes), and one final
//! observation per truncated step, in (actor, step) order. Checked by
//! replaying every actor's recorded actions on a fresh single env.

use candle_core::Device;
use candle_nn::VarMap;
use cml_actors::{policy_from_weights, Worker};
use cml_envs::{Action, Env, Params};
use cml_policy::{ActionKind, NetConfig, PolicyNet};
use cml_proto::tensor::{f32s, u32s};
use cml_proto::DType;

const K: usize = 6;
const T: usize = 5;

fn check(id: &str, time_limit: u64, chunks: usize) -> usize {
    let venv = cml_envs::make_vec_with_time_limit(id, &Params::new(), K, Some(time_limit)).unwrap();
    let seed = 40;
    let mut worker = Worker::new(0, venv, T as u32, 0, seed, &NetConfig::default(), None)
        .unwrap()
        .named(id);
    let layout = worker.layout().clone();
    let shape = worker.observation_shape().to_vec();
    let varmap = VarMap::new();
    let actions = match layout.action {
        cml_proto::ActionLayout::Discrete { n } => n as usize,
        cml_proto::ActionLayout::Continuous { .. } => unreachable!("discrete envs only"),
    };
    PolicyNet::init(
        &varmap,
        shape.as_slice(),
        ActionKind::Categorical(actions),
        &NetConfig::default(),
        3,
        &Device::Cpu,
    )
    .unwrap();
    let weights = PolicyNet::to_safetensors(&varmap).unwrap();
    let policy = policy_from_weights(&weights, 1, &layout, &shape, &NetConfig::default()).unwrap();

    let d = layout.obs_dim();
    let values = |bytes: &[u8]| -> Vec<f32> {
        match layout.observation_dtype {
            DType::U8 => bytes.iter().map(|&v| f32::from(v)).collect(),
            _ => f32s(bytes).collect(),
        }
    };
    // One fresh env per actor, seeded as the worker seeds its vector env.
    let mut envs: Vec<_> = (0..K)
        .map(|a| {
            let mut env = cml_envs::make_with_time_limit(id, &Params::new(), Some(time_limit)).unwrap();
            let mut obs = vec![0f32; d];
            env.reset(Some(seed + a as u64), &mut obs).unwrap();
            (env, obs)
        })
        .collect();
    let mut truncations = 0;
    let mut chunk = worker.new_chunk();
    for _ in 0..chunks {
        worker.fill(&policy, &mut chunk).unwrap();
        let specs = layout.tensor_specs(K, layout.final_count(&chunk.frames));
        layout.check_payload(K, &specs, &chunk.frames).unwrap();
        let observations = values(&chunk.frames[0]);
        let finals = values(&chunk.frames[6]);
        let mut next_final = 0;
        for (a, (env, obs)) in envs.iter_mut().enumerate() {
            for t in 0..T {
                let at = (a * (T + 1) + t) * d;
                assert_eq!(&observations[at..at + d], obs.as_slice(), "{id}: x_{t} of actor {a}");
                let action = u32s(&chunk.frames[1][(a * T + t) * 4..(a * T + t + 1) * 4])
                    .next()
                    .unwrap();
                let step = env.step(Action::Discrete(i64::from(action)), obs).unwrap();
                assert_eq!(chunk.frames[4][a * T + t], u8::from(step.terminated));
                let truncated = step.truncated && !step.terminated;
                assert_eq!(chunk.frames[5][a * T + t], u8::from(truncated));
                if truncated {
                    assert_eq!(
                        &finals[next_final * d..(next_final + 1) * d],
                        obs.as_slice(),
                        "{id}: final of actor {a} at {t}"
                    );
                    next_final += 1;
                }
                if step.done() {
                    env.reset(None, obs).unwrap();
                }
            }
            let at = (a * (T + 1) + T) * d;
            assert_eq!(&observations[at..at + d], obs.as_slice(), "{id}: x_T of actor {a}");
        }
        assert_eq!(next_final * layout.observation_bytes(), chunk.frames[6].len());
        truncations += next_final;
    }
    truncations
}

#[test]
fn cartpole_frames_are_f32_with_sparse_finals() {
    // Time limit 7 with T = 5: truncations fall inside unrolls, several per
    // chunk, at different steps.
    let truncations = check("CartPole-v1", 7, 8);
    assert!(truncations >= 10, "only {truncations} truncations");
}

#[test]
fn minatar_frames_are_u8_planes() {
    let venv = cml_envs::make_vec("MinAtar/Breakout-v1", &Params::new(), 2).unwrap();
    let worker = Worker::new(0, venv, 4, 0, 1, &NetConfig::default(), None).unwrap();
    assert_eq!(worker.layout().observation_dtype, DType::U8);
    assert_eq!(worker.layout().observation_shape, vec![10, 10, 4]);
    assert_eq!(worker.layout().item_bytes(), 5 * 400 + 4 * 4 * 3 + 4 * 2);
    let truncations = check("MinAtar/Breakout-v1", 9, 6);
    assert!(truncations >= 6, "only {truncations} truncations");
}

/// Declares u8 observations but writes 0.5 at its second step.
struct HalfByte {
    observation_space: cml_envs::Space,
    action_space: cml_envs::Space,
    steps: u32,
}

impl Env for HalfByte {
    fn observation_space(&self) -> &cml_envs::Space {
        &self.observation_space
    }
    fn action_space(&self) -> &cml_envs::Space {
        &self.action_space
    }
    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> Result<(), cml_envs::EnvError> {
        self.steps = 0;
        obs.fill(1.0);
        Ok(())
    }
    fn step(&mut self, _action: Action<'_>, obs: &mut [f32]) -> Result<cml_envs::Step, cml_envs::EnvError> {
        self.steps += 1;
        obs.fill(if self.steps == 2 { 0.5 } else { 3.0 });
        Ok(cml_envs::Step {
            reward: 0.0,
            terminated: false,
            truncated: false,
        })
    }
}

#[test]
fn a_value_its_dtype_cannot_hold_is_an_error_naming_the_env() {
    let env = HalfByte {
        observation_space: cml_envs::Space::u8_box(0, 255, vec![2, 2]),
        action_space: cml_envs::Space::Discrete(2),
        steps: 0,
    };
    let venv = Box::new(cml_envs::VecEnv::new(vec![env]).unwrap());
    let mut worker = Worker::new(0, venv, 4, 0, 1, &NetConfig::default(), None)
        .unwrap()
        .named("HalfByte-v0");
    let varmap = VarMap::new();
    PolicyNet::init(
        &varmap,
        &[2usize, 2][..],
        ActionKind::Categorical(2),
        &NetConfig::default(),
        3,
        &Device::Cpu,
    )
    .unwrap();
    let weights = PolicyNet::to_safetensors(&varmap).unwrap();
    let layout = worker.layout().clone();
    let policy = policy_from_weights(&weights, 1, &layout, &[2, 2], &NetConfig::default()).unwrap();
    let mut chunk = worker.new_chunk();
    let e = worker.fill(&policy, &mut chunk).unwrap_err().to_string();
    assert_eq!(
        e,
        "env: HalfByte-v0: actor 0: observation element 0 is 0.5, but the observation space \
         Box(0, 255, [2, 2], u8) is u8 (integers 0..=255)"
    );
}
