//! Frame stacks: the actors' network sees the last k observations of each
//! episode (the first one repeated at an episode start), the unrolls carry
//! each frame once (k − 1 before x_0, then x_0 … x_T), and the learner
//! rebuilds exactly the stacks the actors saw, across unrolls and episodes.

mod common;

use candle_core::Device;
use cml_actors::Worker;
use cml_envs::{Action, Env, EnvError, Space, Step, VecEnv};
use cml_learner::UnrollBatch;
use cml_policy::NetConfig;

/// Episodes of 3 steps; the observation is `offset + 10·episode + step`.
struct Counting {
    observation_space: Space,
    action_space: Space,
    offset: f32,
    episode: u32,
    step: u32,
}

impl Counting {
    fn observation(&self) -> f32 {
        self.offset + 10.0 * self.episode as f32 + self.step as f32
    }
}

impl Env for Counting {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn action_space(&self) -> &Space {
        &self.action_space
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        match seed {
            Some(seed) => self.offset = 1000.0 * seed as f32,
            None => self.episode += 1,
        }
        self.step = 0;
        obs[0] = self.observation();
        Ok(())
    }
    fn step(&mut self, _action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        self.step += 1;
        obs[0] = self.observation();
        Ok(Step {
            reward: 0.0,
            terminated: self.step == 3,
            truncated: false,
        })
    }
}

/// What the actor's network saw at global step n of actor a (seed a): the
/// last 3 observations of the episode, its first one repeated before it.
fn expected_stack(a: usize, n: usize) -> Vec<f32> {
    let (episode, step) = (n / 3, n % 3);
    (0..3)
        .map(|j| {
            let s = (step + j).saturating_sub(2);
            1000.0 * a as f32 + 10.0 * episode as f32 + s as f32
        })
        .collect()
}

#[test]
fn the_learner_rebuilds_the_stacks_the_actors_saw() {
    let (k_actors, t) = (2usize, 4u32);
    let envs = (0..k_actors)
        .map(|_| Counting {
            observation_space: Space::bounded(vec![0.0], vec![1e6], vec![1]),
            action_space: Space::Discrete(2),
            offset: 0.0,
            episode: 0,
            step: 0,
        })
        .collect();
    let net = NetConfig {
        frame_stack: 3,
        ..NetConfig::default()
    };
    let mut worker = Worker::new(0, Box::new(VecEnv::new(envs).unwrap()), t, 0, 0, &net, None).unwrap();
    assert_eq!(worker.layout().frame_stack, 3);
    // The network takes the 3 stacked observations: input [3].
    assert_eq!(net.input_shape(&[1]), vec![3]);
    let policy = common::fresh_policy(&worker, &[1], 2, &net);
    let mut chunk = worker.new_chunk();
    for c in 0..3usize {
        worker.fill(&policy, &mut chunk).unwrap();
        // T + k = 7 frames per unroll, each a single f32 observation.
        assert_eq!(chunk.frames[0].len(), k_actors * 7 * 4);
        let batch = UnrollBatch::from_wire(worker.layout(), k_actors, &chunk.frames, &Device::Cpu).unwrap();
        let obs = batch.observations.to_vec3::<f32>().unwrap();
        for (step, row) in obs.iter().enumerate() {
            for (a, stacked) in row.iter().enumerate() {
                let n = c * t as usize + step;
                assert_eq!(stacked, &expected_stack(a, n), "chunk {c}, x_{step}, actor {a}");
            }
        }
    }
}
