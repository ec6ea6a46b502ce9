//! A worker whose envs fail makes them afresh and goes on: the unrolls in
//! progress are filled again from the fresh envs, the episodes finished
//! before the failure are kept, the ones in progress are counted as cut
//! short, and past `RestartLimit` the failure is the worker's error.

use std::sync::Arc;
use std::time::Duration;

mod common;

use cml_actors::{RestartLimit, VersionedPolicy, Worker};
use cml_envs::{Action, Env, EnvError, Space, Step, VecEnv, VectorEnv};
use cml_policy::NetConfig;
use parking_lot::Mutex;

/// Episodes of 3 steps; fails on its `fail_at`-th step since it was made
/// (a crashed env process). Records the seeds it is reset with.
struct Fragile {
    observation_space: Space,
    action_space: Space,
    steps_made: u32,
    fail_at: u32,
    in_episode: u32,
    seeds: Arc<Mutex<Vec<u64>>>,
}

impl Env for Fragile {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn action_space(&self) -> &Space {
        &self.action_space
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        if let Some(seed) = seed {
            self.seeds.lock().push(seed);
        }
        self.in_episode = 0;
        obs.fill(0.0);
        Ok(())
    }
    fn step(&mut self, _action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        self.steps_made += 1;
        if self.steps_made == self.fail_at {
            return Err(EnvError::Other {
                env: "Fragile-v0".into(),
                message: "the env process died".into(),
            });
        }
        self.in_episode += 1;
        obs.fill(self.in_episode as f32);
        Ok(Step {
            reward: 1.0,
            terminated: self.in_episode == 3,
            truncated: false,
        })
    }
}

const K: usize = 2;
const T: u32 = 5;

fn fragile_envs(seeds: &Arc<Mutex<Vec<u64>>>) -> Result<Box<dyn VectorEnv>, EnvError> {
    let envs = (0..K)
        .map(|_| Fragile {
            observation_space: Space::bounded(vec![-10.0; 2], vec![10.0; 2], vec![2]),
            action_space: Space::Discrete(2),
            steps_made: 0,
            fail_at: 8,
            in_episode: 0,
            seeds: Arc::clone(seeds),
        })
        .collect();
    Ok(Box::new(VecEnv::new(envs)?))
}

fn policy(worker: &Worker) -> VersionedPolicy {
    common::fresh_policy(worker, &[2], 2, &NetConfig::default())
}

#[test]
fn failed_envs_are_made_afresh_until_the_limit() {
    let seeds = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::new(Mutex::new(0u32));
    let first = fragile_envs(&seeds).unwrap();
    let (seeds_for_factory, made_for_factory) = (Arc::clone(&seeds), Arc::clone(&made));
    let limit = RestartLimit {
        limit: 2,
        window: Duration::from_secs(600),
    };
    let mut worker = Worker::new(0, first, T, 0, 100, &NetConfig::default(), None)
        .unwrap()
        .named("Fragile-v0")
        .restarting(
            Box::new(move || {
                *made_for_factory.lock() += 1;
                fragile_envs(&seeds_for_factory)
            }),
            limit,
        );
    let policy = policy(&worker);
    assert_eq!(*seeds.lock(), vec![100, 101], "the first envs are seeded seed + actor");
    let mut chunk = worker.new_chunk();

    // Steps 1..=5: one episode each, done at step 3.
    worker.fill(&policy, &mut chunk).unwrap();
    assert_eq!(
        (chunk.env_restarts, chunk.episodes_cut_short, chunk.episodes.len()),
        (0, 0, 2)
    );

    // Step 6 ends the second episodes, step 7 starts the third, step 8
    // fails: both third episodes are cut short, the fresh envs fill the
    // whole chunk (episodes done at their step 3).
    worker.fill(&policy, &mut chunk).unwrap();
    assert_eq!((chunk.env_restarts, chunk.episodes_cut_short), (1, 2));
    let lengths: Vec<u64> = chunk.episodes.iter().map(|e| e.length).collect();
    assert_eq!(lengths, vec![3, 3, 3, 3], "two before the failure, two after");
    assert_eq!(*made.lock(), 1);
    let fresh_seeds = seeds.lock()[2..].to_vec();
    assert_eq!(fresh_seeds.len(), K);
    assert_eq!(fresh_seeds[1], fresh_seeds[0].wrapping_add(1));
    assert!(
        !fresh_seeds.contains(&100) && !fresh_seeds.contains(&101),
        "{fresh_seeds:?}"
    );
    // The refilled unrolls start from the fresh envs' first observation:
    // x_0 is the reset observation (0) and x_1 the first step's (1).
    let observations = cml_proto::tensor::f32s(&chunk.frames[cml_proto::unroll::OBSERVATIONS]).collect::<Vec<_>>();
    assert_eq!(&observations[..4], &[0.0, 0.0, 1.0, 1.0]);

    // Chunk 3: the second restart, still within the limit of 2.
    worker.fill(&policy, &mut chunk).unwrap();
    assert_eq!(chunk.env_restarts, 1);
    assert_eq!(*made.lock(), 2);

    // Chunk 4: a third failure within the window is the error.
    let e = worker.fill(&policy, &mut chunk).unwrap_err().to_string();
    assert!(e.contains("the env process died"), "{e}");
    assert!(e.contains("actor.env_restart_limit = 2"), "{e}");
    assert_eq!(*made.lock(), 2, "no restart past the limit");
}

#[test]
fn without_restarting_the_first_failure_is_the_error() {
    let seeds = Arc::new(Mutex::new(Vec::new()));
    let mut worker = Worker::new(0, fragile_envs(&seeds).unwrap(), T, 0, 1, &NetConfig::default(), None).unwrap();
    let policy = policy(&worker);
    let mut chunk = worker.new_chunk();
    worker.fill(&policy, &mut chunk).unwrap();
    let e = worker.fill(&policy, &mut chunk).unwrap_err().to_string();
    assert!(e.contains("the env process died"), "{e}");
}
