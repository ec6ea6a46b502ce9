//! `[actor] worker_splits`: a worker thread's splits fill their chunks
//! with ticks interleaved (split i's env step is in flight while split
//! i + 1's inference runs), produce exactly the unrolls each would alone,
//! and a failure of one split's envs restarts those envs only.

use std::sync::Arc;
use std::time::Duration;

mod common;

use cml_actors::{RestartLimit, UnrollChunk, VersionedPolicy, Worker};
use cml_envs::{EnvError, Space, VecActions, VecStepOutput, VectorEnv};
use cml_policy::NetConfig;
use parking_lot::Mutex;

/// What the deferred envs were asked, in order: (split, "start" | "finish").
type Log = Arc<Mutex<Vec<(usize, &'static str)>>>;

/// A vector env whose step runs when it is finished, as a Python worker
/// process's runs while the caller goes on; it notes every start and
/// finish and every reset, refuses to be read with a step in flight, and
/// fails on its `fail_at`-th step (a crashed worker process; 0: never).
struct Deferred {
    inner: Box<dyn VectorEnv>,
    split: usize,
    actions: Vec<i64>,
    in_flight: bool,
    log: Log,
    steps: u32,
    fail_at: u32,
    resets: Arc<Mutex<u32>>,
}

impl Deferred {
    fn new(split: usize, log: &Log, fail_at: u32, resets: &Arc<Mutex<u32>>) -> Deferred {
        Deferred {
            inner: cartpoles(),
            split,
            actions: Vec::new(),
            in_flight: false,
            log: Arc::clone(log),
            steps: 0,
            fail_at,
            resets: Arc::clone(resets),
        }
    }
}

impl VectorEnv for Deferred {
    fn num_envs(&self) -> usize {
        self.inner.num_envs()
    }
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }
    fn action_space(&self) -> &Space {
        self.inner.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError> {
        assert!(!self.in_flight, "reset with a step in flight");
        *self.resets.lock() += 1;
        self.inner.reset(seed)
    }
    fn step(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        self.step_start(actions)?;
        self.step_finish()
    }
    fn step_start(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        let VecActions::Discrete(actions) = actions else {
            panic!("discrete actions")
        };
        assert!(!self.in_flight, "a second step started before the first finished");
        self.actions.clear();
        self.actions.extend_from_slice(actions);
        self.in_flight = true;
        self.log.lock().push((self.split, "start"));
        Ok(())
    }
    fn step_finish(&mut self) -> Result<(), EnvError> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        self.log.lock().push((self.split, "finish"));
        self.steps += 1;
        let result = self.inner.step(VecActions::Discrete(&self.actions));
        if self.steps == self.fail_at {
            return Err(EnvError::Other {
                env: "CartPole-v1".into(),
                message: "the worker process died".into(),
            });
        }
        result
    }
    fn output(&self) -> &VecStepOutput {
        assert!(!self.in_flight, "results read with a step in flight");
        self.inner.output()
    }
}

const K: usize = 16;
const T: u32 = 20;
const SEED: u64 = 5;

fn cartpoles() -> Box<dyn VectorEnv> {
    cml_envs::make_vec("CartPole-v1", &cml_envs::Params::new(), K).unwrap()
}

/// Split `split` of a worker thread: actors `split·K ..`, on deferred
/// CartPoles logging into `log`.
fn split_worker(split: usize, log: &Log) -> Worker {
    let venv = Box::new(Deferred::new(split, log, 0, &Arc::default()));
    Worker::new(split, venv, T, (split * K) as u64, SEED, &NetConfig::default(), None).unwrap()
}

fn policy(worker: &Worker) -> VersionedPolicy {
    common::fresh_policy(worker, &[4], 2, &NetConfig::default())
}

#[test]
fn splits_interleave_their_ticks_and_fill_what_each_fills_alone() {
    let log: Log = Arc::default();
    let mut splits = vec![split_worker(0, &log), split_worker(1, &log)];
    let policy = policy(&splits[0]);
    let mut together: Vec<Vec<UnrollChunk>> = vec![Vec::new(), Vec::new()];
    for _ in 0..6 {
        let mut chunks: Vec<UnrollChunk> = splits.iter().map(|w| w.new_chunk()).collect();
        Worker::fill_together(&mut splits, &policy, &mut chunks).unwrap();
        for (i, chunk) in chunks.into_iter().enumerate() {
            together[i].push(chunk);
        }
    }
    // Each split alone, on its own thread of ticks.
    let alone_log: Log = Arc::default();
    for (split, chunks) in together.iter().enumerate() {
        let mut worker = split_worker(split, &alone_log);
        for (n, expected) in chunks.iter().enumerate() {
            let mut chunk = worker.new_chunk();
            worker.fill(&policy, &mut chunk).unwrap();
            assert_eq!(chunk.frames, expected.frames, "split {split}, chunk {n}");
            assert_eq!(chunk.episodes, expected.episodes, "split {split}, chunk {n}");
            assert_eq!(chunk.first_actor, (split * K) as u64);
        }
    }
    assert!(
        together.iter().flatten().map(|c| c.episodes.len()).sum::<usize>() > 0,
        "episodes end in 6 × 20 CartPole steps"
    );
    // The order the envs saw: split 1's step starts (after its inference)
    // while split 0's is in flight, and each split's next step starts
    // only after its last finished.
    let log = log.lock();
    let per_chunk: Vec<(usize, &str)> = std::iter::once([(0, "start"), (1, "start")])
        .flatten()
        .chain((0..T - 1).flat_map(|_| [(0, "finish"), (0, "start"), (1, "finish"), (1, "start")]))
        .chain([(0, "finish"), (1, "finish")])
        .collect();
    assert_eq!(log.len(), 6 * per_chunk.len());
    for (n, chunk) in log.chunks(per_chunk.len()).enumerate() {
        assert_eq!(chunk, per_chunk.as_slice(), "chunk {n}");
    }
    // Alone: start, finish, start, finish ...
    let alone = alone_log.lock();
    assert!(alone
        .chunks(2)
        .all(|p| p[0].1 == "start" && p[1].1 == "finish" && p[0].0 == p[1].0));
}

fn failing_split(split: usize, fail_at: u32, resets: &Arc<Mutex<u32>>) -> Result<Box<dyn VectorEnv>, EnvError> {
    Ok(Box::new(Deferred::new(split, &Arc::default(), fail_at, resets)))
}

#[test]
fn a_failed_split_restarts_its_envs_and_the_other_split_goes_on() {
    let (resets_0, resets_1) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let limit = RestartLimit {
        limit: 3,
        window: Duration::from_secs(600),
    };
    let make = |split: usize, fail_at: u32, resets: &Arc<Mutex<u32>>| {
        let resets = Arc::clone(resets);
        Worker::new(
            split,
            failing_split(split, fail_at, &resets).unwrap(),
            T,
            (split * K) as u64,
            SEED,
            &NetConfig::default(),
            None,
        )
        .unwrap()
        // Made afresh: healthy envs.
        .restarting(Box::new(move || failing_split(split, 0, &resets)), limit)
    };
    // Split 0 fails on its 30th step: in the second chunk, tick 9.
    let mut splits = vec![make(0, 30, &resets_0), make(1, 0, &resets_1)];
    let policy = policy(&splits[0]);
    let mut previous: Option<Vec<UnrollChunk>> = None;
    let mut restarts = [0u64; 2];
    for n in 0..4 {
        let mut chunks: Vec<UnrollChunk> = splits.iter().map(|w| w.new_chunk()).collect();
        Worker::fill_together(&mut splits, &policy, &mut chunks).unwrap();
        for (i, chunk) in chunks.iter().enumerate() {
            restarts[i] += chunk.env_restarts;
        }
        if let Some(previous) = &previous {
            // Split 1 never lost its envs: each unroll starts where its
            // last one ended, across the other split's failure too.
            let d = 4 * 4;
            for actor in [0, 7, 15] {
                let x_t =
                    |c: &UnrollChunk, t: usize| c.frames[0][(actor * 21 + t) * d..(actor * 21 + t + 1) * d].to_vec();
                assert_eq!(x_t(&previous[1], 20), x_t(&chunks[1], 0), "chunk {n}, actor {actor}");
            }
        }
        assert_eq!(chunks[0].env_restarts, u64::from(n == 1), "chunk {n}");
        previous = Some(chunks);
    }
    assert_eq!(restarts, [1, 0]);
    // Split 0: the first envs' reset and the fresh envs'; split 1: one.
    assert_eq!((*resets_0.lock(), *resets_1.lock()), (2, 1));
}
