//! `Worker`: one thread's K env actors, stepped together.
//!
//! An actor is an index into the worker's vector env plus its own RNG
//! stream, its episode statistics and its rows of the unroll buffers — no
//! thread or task of its own. Each tick: one batched forward pass over all K
//! observations, K action draws, one vector-env step, K rows written. After
//! T ticks the K unrolls are complete, already in the wire layout
//! (batch-major frames, `cml_proto::unroll`), and go to the I/O thread.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use cml_envs::{BoxDtype, EnvError, Space, VecActions, VectorEnv};
use cml_policy::lstm_core::LstmCore;
use cml_policy::q_values::dueling_q;
use cml_policy::{ActionKind, Core, NetConfig, PolicyNet, PolicyParams};
use cml_proto::unroll::{
    ACTIONS, BEHAVIOUR_LOG_PROBS, FINAL_OBSERVATIONS, INITIAL_RECURRENT_STATE, OBSERVATIONS, REWARDS, TERMINATED,
    TRUNCATED,
};
use cml_proto::{ActionLayout, DType, Episode, UnrollLayout};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::exploration::{ApexActing, EpsilonGreedyActors};
use crate::frame_stack::FrameStacks;
use crate::sampler::{sample_categorical, sample_gaussian};
use crate::ActorError;

/// Policy weights of one version, shared by every worker of a host.
pub struct VersionedPolicy {
    pub version: u64,
    pub net: PolicyNet,
}

/// K complete unrolls of one worker, in the wire layout.
#[derive(Clone, Debug)]
pub struct UnrollChunk {
    pub worker: usize,
    /// Actor ids `first_actor .. first_actor + count`.
    pub first_actor: u64,
    pub count: usize,
    /// The policy version that chose every action of these unrolls.
    pub policy_version: u64,
    /// The frames of `UnrollLayout::tensor_specs(count, finals)`;
    /// `final_observations` holds one observation per truncated step.
    pub frames: Vec<Vec<u8>>,
    /// Episodes that ended during these unrolls.
    pub episodes: Vec<Episode>,
    /// Each unroll's first replay priority (Ape-X actors); empty: none.
    pub priorities: Vec<f64>,
    /// Times the worker's envs failed and were made afresh while these
    /// unrolls were filled, and the episodes that failure cut short.
    pub env_restarts: u64,
    pub episodes_cut_short: u64,
}

/// Makes a worker's vector env afresh after it failed (a crashed or hung
/// Python worker process, an env that returned an error).
pub type EnvFactory = Box<dyn FnMut() -> Result<Box<dyn VectorEnv>, EnvError> + Send>;

/// How often a worker may make its envs afresh: at most `limit` times
/// within any `window`; one failure more stops the worker with the error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestartLimit {
    pub limit: u32,
    pub window: Duration,
}

struct Restarter {
    make: EnvFactory,
    limit: RestartLimit,
    /// When recent restarts happened (within `limit.window`).
    recent: Vec<Instant>,
    /// Restarts since the worker started (each fresh set of envs is seeded
    /// apart from the earlier ones with it).
    total: u64,
}

/// Nanoseconds spent per phase (for the time breakdown).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerTimings {
    pub inference_ns: u64,
    pub sampling_ns: u64,
    pub env_ns: u64,
    pub unroll_ns: u64,
    pub ticks: u64,
}

/// The layout of unrolls of length `unroll_length` for these spaces and
/// this network: the observation `Box`'s shape and dtype, and the recurrent
/// state size of `net`'s core (0 without one).
pub fn layout_for(
    observation: &Space,
    action: &Space,
    unroll_length: u32,
    net: &NetConfig,
) -> Result<UnrollLayout, ActorError> {
    let (observation_shape, observation_dtype) = match observation {
        Space::Box { shape, dtype, .. } => {
            let shape = shape
                .iter()
                .map(|&d| u32::try_from(d).map_err(|_| ActorError::Config(format!("observation shape {shape:?}"))))
                .collect::<Result<Vec<u32>, _>>()?;
            let dtype = match dtype {
                BoxDtype::F32 => DType::F32,
                BoxDtype::U8 => DType::U8,
            };
            (shape, dtype)
        }
        Space::Discrete(_) => {
            return Err(ActorError::Config(
                "discrete observations are not supported (use a Box observation)".into(),
            ))
        }
    };
    let action = match action {
        Space::Discrete(n) => ActionLayout::Discrete {
            n: u32::try_from(*n).map_err(|_| ActorError::Config(format!("{n} actions")))?,
        },
        Space::Box { shape, .. } => ActionLayout::Continuous {
            dim: shape.iter().product::<usize>() as u32,
        },
    };
    let recurrent_state_size = match (net.core, action) {
        (Core::None, _) => 0,
        (Core::Lstm, ActionLayout::Discrete { n }) => {
            LstmCore::state_size_for(net.core_size, ActionKind::Categorical(n as usize))
        }
        (Core::Lstm, ActionLayout::Continuous { dim }) => {
            LstmCore::state_size_for(net.core_size, ActionKind::Gaussian(dim as usize))
        }
    };
    let layout = UnrollLayout {
        unroll_length,
        observation_shape,
        observation_dtype,
        action,
        recurrent_state_size: u32::try_from(recurrent_state_size)
            .map_err(|_| ActorError::Config(format!("recurrent state of {recurrent_state_size} values")))?,
        frame_stack: u32::try_from(net.frame_stack)
            .map_err(|_| ActorError::Config(format!("frame_stack {}", net.frame_stack)))?,
    };
    layout.validate().map_err(ActorError::Config)?;
    Ok(layout)
}

fn put_f32s(dst: &mut [u8], src: &[f32]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&s.to_le_bytes());
    }
}

/// Writes one observation in the layout's dtype. A `u8` space takes only
/// the integers 0..=255; anything else is returned as (element, value).
fn put_observation(dst: &mut [u8], src: &[f32], dtype: DType) -> Result<(), (usize, f32)> {
    match dtype {
        DType::U8 => {
            for (i, (d, &v)) in dst.iter_mut().zip(src).enumerate() {
                // `as` saturates (NaN to 0): the byte reads back as `v`
                // exactly when `v` is an integer in 0..=255.
                let byte = v as u8;
                if f32::from(byte) != v {
                    return Err((i, v));
                }
                *d = byte;
            }
            Ok(())
        }
        _ => {
            put_f32s(dst, src);
            Ok(())
        }
    }
}

/// One worker's actors.
pub struct Worker {
    index: usize,
    /// The env id, for errors.
    env_name: String,
    venv: Box<dyn VectorEnv>,
    layout: UnrollLayout,
    first_actor: u64,
    num_actors: usize,
    rngs: Vec<SmallRng>,
    episode_returns: Vec<f64>,
    episode_lengths: Vec<u64>,
    discrete_actions: Vec<i64>,
    continuous_actions: Vec<f32>,
    log_probs: Vec<f32>,
    /// Ape-X: ε-greedy on Q-values, and first priorities; None: sample
    /// from the policy (IMPALA).
    greedy: Option<EpsilonGreedyActors>,
    /// Recurrent policies: each actor's state (`[K, S]`, row-major), zeros
    /// at the start of an episode; empty without a core.
    states: Vec<f32>,
    timings: WorkerTimings,
    /// The base seed (envs are reset with `seed + first_actor`).
    seed: u64,
    /// Makes the envs afresh when they fail; None: a failure is an error.
    restarter: Option<Restarter>,
    /// The env error of the tick that failed, which a restart may cure.
    env_failure: Option<String>,
    /// `[model] frame_stack` > 1: each actor's last k frames, the network's
    /// input; None: the observation itself is.
    stacks: Option<FrameStacks>,
    /// One frame, for copying the earlier frames of a stack into unrolls.
    frame: Vec<f32>,
    /// The tick whose env step is in flight (started, not finished).
    stepping: Option<usize>,
    /// Recurrent policies: that tick's `[h, c]`, carried when it finishes.
    pending_hc: Option<Tensor>,
}

impl Worker {
    /// Worker `index` with actors `first_actor .. first_actor + venv.num_envs()`;
    /// env i is reset with seed `seed + first_actor + i`, and actor i's RNG
    /// stream is derived from the same number. With `acting`, the actors
    /// are Ape-X's (ε-greedy, first priorities); their global indices start
    /// at `acting.first_actor_index` plus this worker's offset in its host.
    pub fn new(
        index: usize,
        mut venv: Box<dyn VectorEnv>,
        unroll_length: u32,
        first_actor: u64,
        seed: u64,
        net: &NetConfig,
        acting: Option<&ApexActing>,
    ) -> Result<Worker, ActorError> {
        let layout = layout_for(venv.observation_space(), venv.action_space(), unroll_length, net)?;
        if acting.is_some() && layout.frame_stack > 1 {
            return Err(ActorError::Config(
                "Ape-X actors take unstacked observations only (model.frame_stack = 1)".into(),
            ));
        }
        if acting.is_some() && layout.recurrent_state_size > 0 {
            return Err(ActorError::Config(
                "Ape-X actors take feed-forward networks only (model.core = \"none\")".into(),
            ));
        }
        let num_actors = venv.num_envs();
        let state_size = layout.recurrent_state_size as usize;
        venv.reset(Some(seed.wrapping_add(first_actor)))
            .map_err(|e| ActorError::Env(e.to_string()))?;
        let action_dim = match layout.action {
            ActionLayout::Discrete { .. } => 1,
            ActionLayout::Continuous { dim } => dim as usize,
        };
        let greedy = match (acting, layout.action) {
            (None, _) => None,
            (Some(acting), ActionLayout::Discrete { n }) => Some(EpsilonGreedyActors::new(
                acting,
                acting.first_actor_index + (first_actor & u64::from(u32::MAX)),
                num_actors,
                unroll_length as usize,
                n as usize,
                layout.obs_dim(),
            )),
            (Some(_), ActionLayout::Continuous { .. }) => {
                return Err(ActorError::Config(
                    "Ape-X actors need a discrete action space (ε-greedy on Q-values)".into(),
                ))
            }
        };
        let frame = vec![0.0; layout.obs_dim()];
        let stacks = (layout.frame_stack > 1).then(|| {
            let shape: Vec<usize> = layout.observation_shape.iter().map(|&d| d as usize).collect();
            FrameStacks::new(num_actors, &shape, layout.frame_stack as usize)
        });
        let mut worker = Worker {
            index,
            env_name: "env".to_string(),
            venv,
            layout,
            first_actor,
            num_actors,
            rngs: (0..num_actors as u64)
                .map(|i| {
                    // An independent stream per actor: SplitMix-style spread of the id.
                    let id = seed.wrapping_add(first_actor + i);
                    SmallRng::seed_from_u64(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_DEAD_BEEF)
                })
                .collect(),
            episode_returns: vec![0.0; num_actors],
            episode_lengths: vec![0; num_actors],
            discrete_actions: vec![0; num_actors],
            continuous_actions: vec![0.0; num_actors * action_dim],
            log_probs: vec![0.0; num_actors],
            greedy,
            states: vec![0.0; num_actors * state_size],
            timings: WorkerTimings::default(),
            seed,
            restarter: None,
            env_failure: None,
            stacks,
            frame,
            stepping: None,
            pending_hc: None,
        };
        worker.start_stacks();
        Ok(worker)
    }

    /// Starts every actor's frame stack at its current observation (after
    /// a reset).
    fn start_stacks(&mut self) {
        if let Some(stacks) = &mut self.stacks {
            let d = self.layout.obs_dim();
            for (a, frame) in self.venv.observations().chunks_exact(d).enumerate() {
                stacks.start(a, frame);
            }
        }
    }

    /// After a step: each actor's stack takes its new observation, or
    /// starts afresh with it where an episode (or a life) ended.
    fn push_stacks(&mut self) {
        if let Some(stacks) = &mut self.stacks {
            let d = self.layout.obs_dim();
            let (terminated, truncated) = (self.venv.terminated(), self.venv.truncated());
            for (a, frame) in self.venv.observations().chunks_exact(d).enumerate() {
                if terminated[a] || truncated[a] {
                    stacks.start(a, frame);
                } else {
                    stacks.push(a, frame);
                }
            }
        }
    }

    /// When the envs fail (an error from `step`), the worker
    /// makes them afresh with `make` and goes on, up to `limit`.
    pub fn restarting(mut self, make: EnvFactory, limit: RestartLimit) -> Worker {
        self.restarter = Some(Restarter {
            make,
            limit,
            recent: Vec::new(),
            total: 0,
        });
        self
    }

    /// Names the env in errors (its id).
    pub fn named(mut self, env: &str) -> Worker {
        self.env_name = env.to_string();
        self
    }

    pub fn layout(&self) -> &UnrollLayout {
        &self.layout
    }

    /// The shape of one observation (the env's `Box` shape), which the
    /// inference network is built for.
    pub fn observation_shape(&self) -> &[usize] {
        // `layout_for` refused anything but a `Box` when the worker was made.
        self.venv.observation_space().box_shape().unwrap_or(&[])
    }

    pub fn num_actors(&self) -> usize {
        self.num_actors
    }

    pub fn timings(&self) -> WorkerTimings {
        self.timings
    }

    /// Buffers for one chunk of this worker's unrolls.
    pub fn new_chunk(&self) -> UnrollChunk {
        let mut frames = vec![Vec::new(); self.layout.frame_count()];
        for f in self.layout.fields() {
            frames[f.frame] = vec![0u8; f.bytes() * self.num_actors];
        }
        // Room for one truncation per actor and unroll (time limits are
        // longer than unrolls); more grows the buffer once.
        frames[FINAL_OBSERVATIONS] = Vec::with_capacity(self.num_actors * self.layout.observation_bytes());
        UnrollChunk {
            worker: self.index,
            first_actor: self.first_actor,
            count: self.num_actors,
            policy_version: 0,
            frames,
            episodes: Vec::new(),
            priorities: Vec::with_capacity(self.num_actors),
            env_restarts: 0,
            episodes_cut_short: 0,
        }
    }

    /// Runs T ticks with `policy` and writes the K unrolls into `chunk`.
    /// When the envs fail and the worker is `restarting`, the unrolls in
    /// progress are dropped, the envs are made afresh and the K unrolls are
    /// filled from their first observations (the episodes finished before
    /// the failure are kept).
    pub fn fill(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        Worker::fill_together(std::slice::from_mut(self), policy, std::slice::from_mut(chunk))
    }

    /// [`Worker::fill`] for several workers on one thread (one chunk
    /// each), their ticks interleaved round the workers: worker i's env
    /// step is started, then worker i + 1's step is finished and its next
    /// tick's inference runs while worker i's envs step (in their own
    /// processes, for Python envs), and so on. With one worker it is tick
    /// after tick. A failure of one worker's envs restarts those envs (if
    /// `restarting`) and fills that worker's chunk again from the fresh
    /// envs; the others go on where they are.
    pub fn fill_together(
        workers: &mut [Worker],
        policy: &VersionedPolicy,
        chunks: &mut [UnrollChunk],
    ) -> Result<(), ActorError> {
        if workers.len() != chunks.len() {
            return Err(ActorError::Config(format!(
                "{} workers given {} chunks",
                workers.len(),
                chunks.len()
            )));
        }
        for chunk in chunks.iter_mut() {
            chunk.episodes.clear();
            chunk.env_restarts = 0;
            chunk.episodes_cut_short = 0;
        }
        let result = Worker::interleave(workers, policy, chunks);
        if result.is_err() {
            // The steps still in flight are answered, so every worker's
            // envs and bookkeeping agree again.
            for (worker, chunk) in workers.iter_mut().zip(chunks.iter_mut()) {
                let _ = worker.finish_tick(policy, chunk);
            }
        }
        result
    }

    fn interleave(
        workers: &mut [Worker],
        policy: &VersionedPolicy,
        chunks: &mut [UnrollChunk],
    ) -> Result<(), ActorError> {
        for (worker, chunk) in workers.iter_mut().zip(chunks.iter_mut()) {
            if let Err(error) = worker.begin(policy, chunk) {
                worker.recover(policy, chunk, error)?;
            }
        }
        // A worker with no step in flight has finished its chunk.
        while workers.iter().any(|w| w.stepping.is_some()) {
            for (worker, chunk) in workers.iter_mut().zip(chunks.iter_mut()) {
                if worker.stepping.is_none() {
                    continue;
                }
                if let Err(error) = worker.advance(policy, chunk) {
                    worker.recover(policy, chunk, error)?;
                }
            }
        }
        Ok(())
    }

    /// Starts the chunk's unrolls at the current observations: tick 0's
    /// step in flight.
    fn begin(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        self.begin_unrolls(policy, chunk)?;
        self.start_tick(policy, chunk, 0)
    }

    /// Finishes the tick in flight and starts the next, or, after the
    /// last, completes the unrolls.
    fn advance(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        let Some(t) = self.stepping else {
            return Ok(());
        };
        self.finish_tick(policy, chunk)?;
        if t + 1 < self.layout.unroll_length as usize {
            self.start_tick(policy, chunk, t + 1)
        } else {
            self.end_unrolls(policy, chunk)
        }
    }

    /// After `error`: if the envs failed and the worker is `restarting`,
    /// makes them afresh and begins the chunk again (the unrolls in
    /// progress dropped, the episodes finished before kept); otherwise the
    /// error.
    fn recover(
        &mut self,
        policy: &VersionedPolicy,
        chunk: &mut UnrollChunk,
        mut error: ActorError,
    ) -> Result<(), ActorError> {
        loop {
            let Some(failure) = self.env_failure.take() else {
                return Err(error);
            };
            if self.restarter.is_none() {
                return Err(error);
            }
            // Bounded: past `RestartLimit`, `restart_envs` is the error.
            chunk.episodes_cut_short += self.restart_envs(&failure)?;
            chunk.env_restarts += 1;
            match self.begin(policy, chunk) {
                Ok(()) => return Ok(()),
                Err(again) => error = again,
            }
        }
    }

    /// The error for a failed `step` or `reset`, noted for `fill`.
    fn env_failed(&mut self, e: EnvError) -> ActorError {
        let message = e.to_string();
        self.env_failure = Some(message.clone());
        ActorError::Env(message)
    }

    /// Makes the envs afresh after `failure` and resets them (seeded apart
    /// from every earlier set); returns the episodes cut short. An error
    /// when the restart limit is spent or the new envs cannot be made.
    fn restart_envs(&mut self, failure: &str) -> Result<u64, ActorError> {
        let Some(restarter) = &mut self.restarter else {
            return Err(ActorError::Env(failure.to_string()));
        };
        let now = Instant::now();
        let RestartLimit { limit, window } = restarter.limit;
        restarter.recent.retain(|&t| now.duration_since(t) < window);
        if restarter.recent.len() >= limit as usize {
            return Err(ActorError::Env(format!(
                "{failure} (worker {}: the envs failed {} times within {:.0} s, more than \
                 actor.env_restart_limit = {limit} allows)",
                self.index,
                limit + 1,
                window.as_secs_f64()
            )));
        }
        restarter.recent.push(now);
        restarter.total += 1;
        let cut_short = self.episode_lengths.iter().filter(|&&n| n > 0).count() as u64;
        tracing::warn!(
            worker = self.index,
            restart = restarter.total,
            episodes_cut_short = cut_short,
            "{failure}; making the worker's envs afresh"
        );
        let venv = (restarter.make)().map_err(|e| ActorError::Env(format!("restarting the envs: {e}")))?;
        if venv.num_envs() != self.num_actors
            || venv.observation_space() != self.venv.observation_space()
            || venv.action_space() != self.venv.action_space()
        {
            return Err(ActorError::Env(format!(
                "{}: the restarted envs differ from the first ones ({} envs, observations {}, actions {})",
                self.env_name,
                venv.num_envs(),
                venv.observation_space(),
                venv.action_space()
            )));
        }
        // Restart r seeds env i with seed + first_actor + i + r·φ·2⁶⁴ (mod
        // 2⁶⁴): apart from the first set, and far from other hosts' seeds
        // (which differ in the bits from 32 up).
        let seed = self
            .seed
            .wrapping_add(self.first_actor)
            .wrapping_add(restarter.total.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.venv = venv;
        self.venv
            .reset(Some(seed))
            .map_err(|e| ActorError::Env(format!("restarted envs: {e}")))?;
        self.episode_returns.fill(0.0);
        self.episode_lengths.fill(0);
        self.states.fill(0.0);
        self.start_stacks();
        Ok(cut_short)
    }

    /// Before tick 0: the chunk's policy version, flags cleared, the
    /// initial recurrent states and the frames before x_0.
    fn begin_unrolls(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        chunk.policy_version = policy.version;
        chunk.frames[FINAL_OBSERVATIONS].clear();
        // Steps not yet taken count as not truncated (`truncations_before`).
        chunk.frames[TRUNCATED].fill(0);
        chunk.priorities.clear();
        if let Some(greedy) = &mut self.greedy {
            greedy.begin();
        }
        let s = self.layout.recurrent_state_size as usize;
        if s > 0 {
            // The state each unroll starts from.
            put_f32s(&mut chunk.frames[INITIAL_RECURRENT_STATE], &self.states);
        }
        self.write_stack_history(chunk)?;
        Ok(())
    }

    /// Tick t's first half: x_t into the unrolls, one forward pass, the
    /// actions drawn, and the env step started.
    fn start_tick(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk, t: usize) -> Result<(), ActorError> {
        let t_len = self.layout.unroll_length as usize;
        let d = self.layout.obs_dim();
        let k = self.num_actors;
        let s = self.layout.recurrent_state_size as usize;
        let started = Instant::now();
        // x_t of every actor; the network's input is x_t or its stack.
        self.write_observations(chunk, t)?;
        let input = match &self.stacks {
            Some(stacks) => Tensor::from_slice(stacks.stacked(), (k, stacks.stack_dim()), &Device::Cpu)?,
            None => Tensor::from_slice(self.venv.observations(), (k, d), &Device::Cpu)?,
        };
        let (out, hc) = if s > 0 {
            let state = Tensor::from_slice(&self.states, (k, s), &Device::Cpu)?;
            let (out, hc) = policy.net.forward_step(&input, &state)?;
            (out, Some(hc))
        } else {
            (policy.net.forward(&input)?, None)
        };
        let inferred = Instant::now();
        self.timings.inference_ns += (inferred - started).as_nanos() as u64;
        match (&out.policy, &mut self.greedy) {
            (PolicyParams::Logits(_), Some(greedy)) => {
                let q = dueling_q(&out)?.flatten_all()?.to_vec1::<f32>()?;
                greedy.keep_q(t, &q);
                for a in 0..k {
                    let (action, log_prob) = greedy.choose(a, t, &mut self.rngs[a]);
                    self.discrete_actions[a] = action as i64;
                    self.log_probs[a] = log_prob;
                    let at = (a * t_len + t) * 4;
                    chunk.frames[ACTIONS][at..at + 4].copy_from_slice(&(action as u32).to_le_bytes());
                }
            }
            (PolicyParams::Logits(logits), None) => {
                let n = logits.dim(1)?;
                let logits = logits.flatten_all()?.to_vec1::<f32>()?;
                for a in 0..k {
                    let (action, log_prob) = sample_categorical(&logits[a * n..(a + 1) * n], &mut self.rngs[a]);
                    self.discrete_actions[a] = i64::from(action);
                    self.log_probs[a] = log_prob;
                    let at = (a * t_len + t) * 4;
                    chunk.frames[ACTIONS][at..at + 4].copy_from_slice(&action.to_le_bytes());
                }
            }
            (PolicyParams::Gaussian { mean, log_std }, _) => {
                let dim = mean.dim(1)?;
                let mean = mean.flatten_all()?.to_vec1::<f32>()?;
                let log_std = log_std.to_vec1::<f32>()?;
                for a in 0..k {
                    let action = &mut self.continuous_actions[a * dim..(a + 1) * dim];
                    self.log_probs[a] =
                        sample_gaussian(&mean[a * dim..(a + 1) * dim], &log_std, &mut self.rngs[a], action);
                    let at = ((a * t_len + t) * dim) * 4;
                    put_f32s(&mut chunk.frames[ACTIONS][at..at + dim * 4], action);
                }
            }
        }
        let sampled = Instant::now();
        self.timings.sampling_ns += (sampled - inferred).as_nanos() as u64;
        let actions = match self.layout.action {
            ActionLayout::Discrete { .. } => VecActions::Discrete(&self.discrete_actions),
            ActionLayout::Continuous { .. } => VecActions::Continuous(&self.continuous_actions),
        };
        if let Err(e) = self.venv.step_start(actions) {
            return Err(self.env_failed(e));
        }
        self.stepping = Some(t);
        self.pending_hc = hc;
        self.timings.env_ns += sampled.elapsed().as_nanos() as u64;
        Ok(())
    }

    /// The started tick's second half: wait for the env step, then the
    /// rewards, flags, final observations and episodes into the unrolls.
    fn finish_tick(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        let Some(t) = self.stepping.take() else {
            return Ok(());
        };
        let t_len = self.layout.unroll_length as usize;
        let (dtype, ob) = (self.layout.observation_dtype, self.layout.observation_bytes());
        let k = self.num_actors;
        let waiting = Instant::now();
        let hc = self.pending_hc.take();
        if let Err(e) = self.venv.step_finish() {
            return Err(self.env_failed(e));
        }
        let stepped = Instant::now();
        self.timings.env_ns += (stepped - waiting).as_nanos() as u64;
        self.push_stacks();
        if let (Some(hc), Some(core)) = (&hc, policy.net.core()) {
            self.carry_states(core, hc)?;
        }
        let (rewards, terminated, truncated) = (self.venv.rewards(), self.venv.terminated(), self.venv.truncated());
        let life_lost = self.venv.life_lost();
        for a in 0..k {
            let i = a * t_len + t;
            chunk.frames[BEHAVIOUR_LOG_PROBS][i * 4..i * 4 + 4].copy_from_slice(&self.log_probs[a].to_le_bytes());
            chunk.frames[REWARDS][i * 4..i * 4 + 4].copy_from_slice(&(rewards[a] as f32).to_le_bytes());
            chunk.frames[TERMINATED][i] = u8::from(terminated[a]);
            chunk.frames[TRUNCATED][i] = u8::from(truncated[a] && !terminated[a]);
            self.episode_returns[a] += rewards[a];
            self.episode_lengths[a] += 1;
            let final_observation = if truncated[a] && !terminated[a] {
                self.venv.final_observation(a)
            } else {
                None
            };
            if let Some(greedy) = &mut self.greedy {
                greedy.record(a, t, rewards[a] as f32, terminated[a], final_observation);
            }
            if terminated[a] || truncated[a] {
                if let Some(last) = final_observation {
                    // Sparse, in (actor, step) order as the wire wants:
                    // placed at its rank among this chunk's truncations.
                    let rank = truncations_before(&chunk.frames[TRUNCATED], a, t, t_len);
                    let at = rank * ob;
                    let finals = &mut chunk.frames[FINAL_OBSERVATIONS];
                    let end = finals.len();
                    finals.resize(end + ob, 0);
                    finals.copy_within(at..end, at + ob);
                    put_observation(&mut finals[at..at + ob], last, dtype).map_err(|bad| self.wrong_value(a, bad))?;
                }
                // A life lost (episodic life) ends the unroll's episode
                // for learning; the game, and the return reported, go on.
                if !life_lost.get(a).copied().unwrap_or(false) {
                    chunk.episodes.push(Episode {
                        actor_id: self.first_actor + a as u64,
                        episode_return: self.episode_returns[a],
                        length: self.episode_lengths[a],
                    });
                    self.episode_returns[a] = 0.0;
                    self.episode_lengths[a] = 0;
                }
            }
        }
        self.timings.unroll_ns += stepped.elapsed().as_nanos() as u64;
        self.timings.ticks += 1;
        Ok(())
    }

    /// After tick T − 1: x_T, and (Ape-X) the first priorities.
    fn end_unrolls(&mut self, policy: &VersionedPolicy, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        let t_len = self.layout.unroll_length as usize;
        let d = self.layout.obs_dim();
        let k = self.num_actors;
        // x_T: the observation after the last step bootstraps the unroll.
        self.write_observations(chunk, t_len)?;
        let obs = self.venv.observations();
        if let Some(greedy) = &mut self.greedy {
            // Q of x_T and of the truncations' final observations: the
            // bootstrap values of the first priorities.
            let started = Instant::now();
            let input = Tensor::from_slice(obs, (k, d), &Device::Cpu)?;
            let q = dueling_q(&policy.net.forward(&input)?)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            greedy.keep_q(t_len, &q);
            let final_q = match greedy.truncation_count() {
                0 => Vec::new(),
                m => {
                    let finals = Tensor::from_slice(greedy.final_observations(), (m, greedy.obs_dim()), &Device::Cpu)?;
                    dueling_q(&policy.net.forward(&finals)?)?
                        .flatten_all()?
                        .to_vec1::<f32>()?
                }
            };
            greedy.priorities(&final_q, &mut chunk.priorities)?;
            self.timings.inference_ns += started.elapsed().as_nanos() as u64;
        }
        Ok(())
    }

    /// Writes every actor's current observation as x_t of its unroll, in
    /// the layout's dtype (frame t + k − 1 of the unroll's T + k).
    fn write_observations(&self, chunk: &mut UnrollChunk, t: usize) -> Result<(), ActorError> {
        let (t_len, d) = (self.layout.unroll_length as usize, self.layout.obs_dim());
        let (dtype, ob) = (self.layout.observation_dtype, self.layout.observation_bytes());
        let k = self.layout.frame_stack as usize;
        let obs = self.venv.observations();
        for a in 0..self.num_actors {
            let at = (a * (t_len + k) + t + k - 1) * ob;
            put_observation(
                &mut chunk.frames[OBSERVATIONS][at..at + ob],
                &obs[a * d..(a + 1) * d],
                dtype,
            )
            .map_err(|bad| self.wrong_value(a, bad))?;
        }
        Ok(())
    }

    /// Frame stacks: the k − 1 frames before x_0 (the older ones of each
    /// actor's current stack, padded at an episode start) as the first
    /// frames of its unroll.
    fn write_stack_history(&mut self, chunk: &mut UnrollChunk) -> Result<(), ActorError> {
        let Some(stacks) = &self.stacks else {
            return Ok(());
        };
        let (t_len, k) = (self.layout.unroll_length as usize, self.layout.frame_stack as usize);
        let (dtype, ob) = (self.layout.observation_dtype, self.layout.observation_bytes());
        for a in 0..self.num_actors {
            for j in 0..k - 1 {
                stacks.frame(a, j, &mut self.frame);
                let at = (a * (t_len + k) + j) * ob;
                put_observation(&mut chunk.frames[OBSERVATIONS][at..at + ob], &self.frame, dtype)
                    .map_err(|bad| ActorError::Env(format!("stacked frame of actor {a}: value {bad:?}")))?;
            }
        }
        Ok(())
    }

    /// Recurrent policies: each actor's next state from this tick's
    /// `[h, c]`, action and reward, zeros where the episode ended (the
    /// policy's own `next_state`, which the learner replays).
    fn carry_states(&mut self, core: &LstmCore, hc: &Tensor) -> Result<(), ActorError> {
        let k = self.num_actors;
        let device = &Device::Cpu;
        let actions = match self.layout.action {
            ActionLayout::Discrete { .. } => {
                let a: Vec<u32> = self.discrete_actions.iter().map(|&a| a as u32).collect();
                Tensor::from_vec(a, k, device)?
            }
            ActionLayout::Continuous { dim } => {
                Tensor::from_slice(&self.continuous_actions, (k, dim as usize), device)?
            }
        };
        let rewards: Vec<f32> = self.venv.rewards().iter().map(|&r| r as f32).collect();
        let done: Vec<f32> = (0..k)
            .map(|a| f32::from(u8::from(self.venv.terminated()[a] || self.venv.truncated()[a])))
            .collect();
        let next = core.next_state(
            hc,
            &actions,
            &Tensor::from_vec(rewards, k, device)?,
            &Tensor::from_vec(done, k, device)?,
        )?;
        self.states = next.flatten_all()?.to_vec1::<f32>()?;
        Ok(())
    }

    /// The error for an observation value its space's dtype cannot hold.
    fn wrong_value(&self, actor: usize, (element, value): (usize, f32)) -> ActorError {
        ActorError::Env(format!(
            "{}: actor {}: observation element {element} is {value}, but the observation space {} is u8 \
             (integers 0..=255)",
            self.env_name,
            self.first_actor + actor as u64,
            self.venv.observation_space()
        ))
    }

    /// Each actor's ε (Ape-X actors), in actor order; empty otherwise.
    pub fn epsilons(&self) -> &[f64] {
        self.greedy.as_ref().map_or(&[], |g| g.epsilons())
    }
}

/// Truncated steps of actors `0..a` (all their steps), and of actor `a`
/// before step `t`: the rank of (a, t) among the chunk's final observations.
/// Flags are written tick by tick into a zeroed frame, so steps not yet
/// taken count as 0.
fn truncations_before(truncated: &[u8], a: usize, t: usize, t_len: usize) -> usize {
    let earlier = truncated[..a * t_len].iter().filter(|&&f| f == 1).count();
    earlier + truncated[a * t_len..a * t_len + t].iter().filter(|&&f| f == 1).count()
}

/// Builds the inference network from broadcast safetensors bytes, for
/// observations of `observation_shape` (the env's; its product is
/// `layout.obs_dim`).
pub fn policy_from_weights(
    bytes: &[u8],
    version: u64,
    layout: &UnrollLayout,
    observation_shape: &[usize],
    net: &cml_policy::NetConfig,
) -> Result<VersionedPolicy, ActorError> {
    if observation_shape.iter().product::<usize>() != layout.obs_dim() {
        return Err(ActorError::Config(format!(
            "observation shape {observation_shape:?} does not hold the layout's {} values",
            layout.obs_dim()
        )));
    }
    let action = match layout.action {
        ActionLayout::Discrete { n } => cml_policy::ActionKind::Categorical(n as usize),
        ActionLayout::Continuous { dim } => cml_policy::ActionKind::Gaussian(dim as usize),
    };
    // With `frame_stack` k, the network takes k frames along the channels.
    let input_shape = net.input_shape(observation_shape);
    let net = PolicyNet::from_safetensors(bytes, input_shape.as_slice(), action, net, &Device::Cpu)
        .map_err(|e| ActorError::Weights(format!("version {version}: {e}")))?;
    Ok(VersionedPolicy { version, net })
}
