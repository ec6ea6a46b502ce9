//! [`PythonVecEnv`] (K envs with same-step autoreset) and [`PythonEnv`]
//! (one env, reset by its caller), both over a [`WorkerProcess`].

use cml_envs::{
    continuous_action, discrete_action, Action, Env, EnvError, Space, Step, VecActions, VecStepOutput, VectorEnv,
};

use crate::worker_process::{Regions, WorkerProcess};
use crate::GymnasiumEnv;

/// K Gymnasium envs in one Python worker, stepped together. An env whose
/// episode ends is reset in the same step: its observation row is the first
/// of the next episode, and `final_observation(i)` is the true last one.
/// `reset(Some(seed))` seeds env i with `seed + i` (any u64).
pub struct PythonVecEnv {
    worker: WorkerProcess,
    output: VecStepOutput,
    has_reset: bool,
    /// Whether the worker resets finished envs itself (and keeps their
    /// final observations); [`PythonEnv`] leaves that to its caller.
    autoreset: bool,
    /// A `step` sent and not yet answered (`step_start` without
    /// `step_finish`).
    stepping: bool,
}

impl PythonVecEnv {
    /// Starts a worker with `num_envs` envs; `max_episode_steps` (if set)
    /// is handed to `gymnasium.make`.
    pub fn start(
        env: &GymnasiumEnv,
        num_envs: usize,
        max_episode_steps: Option<u64>,
    ) -> Result<PythonVecEnv, EnvError> {
        PythonVecEnv::start_with(env, num_envs, true, max_episode_steps)
    }

    fn start_with(
        env: &GymnasiumEnv,
        num_envs: usize,
        autoreset: bool,
        max_episode_steps: Option<u64>,
    ) -> Result<PythonVecEnv, EnvError> {
        let worker = WorkerProcess::start(env, num_envs, autoreset, max_episode_steps)?;
        let output = VecStepOutput::new(num_envs, worker.observation_space.flat_dim());
        Ok(PythonVecEnv {
            worker,
            output,
            has_reset: false,
            autoreset,
            stepping: false,
        })
    }

    /// The worker's shared-memory file (removed when this is dropped).
    pub fn shared_memory_path(&self) -> std::path::PathBuf {
        self.worker.shared_memory_path().to_path_buf()
    }

    /// The worker's process id.
    pub fn worker_pid(&self) -> u32 {
        self.worker.pid()
    }
}

impl VectorEnv for PythonVecEnv {
    fn num_envs(&self) -> usize {
        self.worker.num_envs
    }

    fn observation_space(&self) -> &Space {
        &self.worker.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.worker.action_space
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError> {
        // A step in flight is answered first (its results are dropped).
        self.step_finish()?;
        let command = match seed {
            Some(seed) => format!("reset {seed}"),
            None => "reset none".to_string(),
        };
        self.worker.call_step(&command)?;
        read_results(&self.worker, &mut self.output, false);
        self.has_reset = true;
        Ok(())
    }

    fn step(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        self.step_start(actions)?;
        self.step_finish()
    }

    /// Writes the actions and sends `step`: the worker process steps while
    /// the caller goes on.
    fn step_start(&mut self, actions: VecActions<'_>) -> Result<(), EnvError> {
        if !self.has_reset {
            return Err(EnvError::ResetNeeded {
                env: self.worker.name.clone(),
            });
        }
        self.step_finish()?;
        write_actions(&mut self.worker, actions)?;
        self.worker.send("step")?;
        self.stepping = true;
        Ok(())
    }

    /// Waits for the worker's answer (within `step_timeout` from here)
    /// and reads its results.
    fn step_finish(&mut self) -> Result<(), EnvError> {
        if !std::mem::take(&mut self.stepping) {
            return Ok(());
        }
        self.worker.wait_ok("step")?;
        read_results(&self.worker, &mut self.output, self.autoreset);
        Ok(())
    }

    fn output(&self) -> &VecStepOutput {
        &self.output
    }
}

/// One Gymnasium env in its own worker, reset by its caller (the `Env`
/// contract): used by `eval` and wherever one env is made.
pub struct PythonEnv {
    inner: PythonVecEnv,
}

impl PythonEnv {
    /// Episodic life is off here: one env plays whole games (`eval`
    /// measures the game's score; the `Env` contract has no lives).
    pub fn start(env: &GymnasiumEnv, max_episode_steps: Option<u64>) -> Result<PythonEnv, EnvError> {
        let whole_games = GymnasiumEnv {
            episodic_life: false,
            ..env.clone()
        };
        Ok(PythonEnv {
            inner: PythonVecEnv::start_with(&whole_games, 1, false, max_episode_steps)?,
        })
    }

    fn copy_observation(&self, obs: &mut [f32]) -> Result<(), EnvError> {
        let (name, space) = (&self.inner.worker.name, &self.inner.worker.observation_space);
        cml_envs::check_observation_buffer(name, space, obs)?;
        obs.copy_from_slice(self.inner.observations());
        Ok(())
    }
}

impl Env for PythonEnv {
    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }

    fn action_space(&self) -> &Space {
        self.inner.action_space()
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        self.inner.reset(seed)?;
        self.copy_observation(obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let (name, space) = (&self.inner.worker.name, &self.inner.worker.action_space);
        let discrete;
        let actions = match space {
            Space::Discrete(_) => {
                discrete = [discrete_action(name, space, action)? as i64];
                VecActions::Discrete(&discrete)
            }
            Space::Box { .. } => VecActions::Continuous(continuous_action(name, space, action)?),
        };
        self.inner.step(actions)?;
        let step = Step {
            reward: self.inner.rewards()[0],
            terminated: self.inner.terminated()[0],
            truncated: self.inner.truncated()[0],
        };
        if step.done() {
            // The caller resets; until then the env refuses to step.
            self.inner.has_reset = false;
        }
        self.copy_observation(obs)?;
        Ok(step)
    }
}

/// Puts the actions into shared memory (checked: count, range, finite).
fn write_actions(worker: &mut WorkerProcess, actions: VecActions<'_>) -> Result<(), EnvError> {
    let k = worker.num_envs;
    let Regions { actions: at, .. } = worker.regions;
    let (name, space) = (&worker.name, &worker.action_space);
    match (space, actions) {
        (Space::Discrete(_), VecActions::Discrete(a)) if a.len() == k => {
            for (i, &action) in a.iter().enumerate() {
                discrete_action(name, space, Action::Discrete(action)).map_err(|e| in_vector(e, i, k))?;
                worker.memory[at + i * 8..at + i * 8 + 8].copy_from_slice(&action.to_le_bytes());
            }
        }
        (Space::Box { .. }, VecActions::Continuous(a)) if a.len() == k * space.flat_dim() => {
            let dim = space.flat_dim();
            for (i, row) in a.chunks_exact(dim).enumerate() {
                continuous_action(name, space, Action::Continuous(row)).map_err(|e| in_vector(e, i, k))?;
            }
            for (i, v) in a.iter().enumerate() {
                worker.memory[at + i * 4..at + i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            let got = match actions {
                VecActions::Discrete(a) => format!("{} discrete actions", a.len()),
                VecActions::Continuous(a) => format!("{} continuous action values", a.len()),
            };
            return Err(EnvError::Other {
                env: name.clone(),
                message: format!("got {got} for {k} envs of action space {space}"),
            });
        }
    }
    Ok(())
}

fn in_vector(e: EnvError, index: usize, count: usize) -> EnvError {
    EnvError::InVector {
        index,
        count,
        source: Box::new(e),
    }
}

/// Copies what the worker wrote into `output` (no allocation).
fn read_results(worker: &WorkerProcess, output: &mut VecStepOutput, finals: bool) {
    let r = worker.regions;
    let memory = &worker.memory[..];
    let k = worker.num_envs;
    let d = worker.observation_space.flat_dim();
    let size = worker.observation_bytes();
    let out = output.buffers_mut();
    read_observations(
        &memory[r.observations..r.observations + k * d * size],
        size,
        out.observations,
    );
    for i in 0..k {
        out.rewards[i] = f64::from_le_bytes(
            memory[r.rewards + i * 8..r.rewards + i * 8 + 8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        out.terminated[i] = memory[r.terminated + i] != 0;
        out.truncated[i] = memory[r.truncated + i] != 0;
        out.life_lost[i] = out.terminated[i] && memory[r.life_lost + i] != 0;
    }
    if finals {
        for i in 0..k {
            if out.terminated[i] || out.truncated[i] {
                let (from, to) = (r.final_observations + i * d * size, i * d);
                read_observations(
                    &memory[from..from + d * size],
                    size,
                    &mut out.final_observations[to..to + d],
                );
            }
        }
    }
}

/// Observation values from shared memory: uint8 (`size` 1) or
/// little-endian f32 (`size` 4).
fn read_observations(bytes: &[u8], size: usize, dst: &mut [f32]) {
    if size == 1 {
        for (d, &b) in dst.iter_mut().zip(bytes) {
            *d = f32::from(b);
        }
    } else {
        for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}
