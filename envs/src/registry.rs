//! The env registry: `make("CartPole-v1", &params)` and
//! `register("MyEnv-v0", factory)`, with Gymnasium's time limits.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::classic::{Acrobot, CartPole, CartPoleVec, MountainCar, MountainCarContinuous, Pendulum};
use crate::env::{check_observation_buffer, continuous_action, discrete_action, Action, Env, EnvError, Step};
use crate::params::Params;
use crate::space::Space;
use crate::vector::{VecEnv, VectorEnv};

/// Builds an env from its parameters (the config's `[env.params]` table).
pub type EnvFactory = Arc<dyn Fn(&Params) -> Result<Box<dyn Env>, EnvError> + Send + Sync>;

/// Builds a native vectorized env: parameters, number of envs, time limit.
pub type VecFactory = Arc<dyn Fn(&Params, usize, Option<u64>) -> Result<Box<dyn VectorEnv>, EnvError> + Send + Sync>;

/// A registered env: its id, its default time limit and its factory
/// (Gymnasium's `EnvSpec`).
#[derive(Clone)]
pub struct EnvSpec {
    id: String,
    max_episode_steps: Option<u64>,
    factory: EnvFactory,
    vector_factory: Option<VecFactory>,
}

impl std::fmt::Debug for EnvSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSpec")
            .field("id", &self.id)
            .field("max_episode_steps", &self.max_episode_steps)
            .finish_non_exhaustive()
    }
}

impl EnvSpec {
    /// A spec with no time limit.
    pub fn new<E, F>(id: impl Into<String>, factory: F) -> Self
    where
        E: Env + 'static,
        F: Fn(&Params) -> Result<E, EnvError> + Send + Sync + 'static,
    {
        EnvSpec {
            id: id.into(),
            max_episode_steps: None,
            factory: Arc::new(move |p: &Params| factory(p).map(|e| Box::new(e) as Box<dyn Env>)),
            vector_factory: None,
        }
    }

    /// A native vectorized implementation for [`make_vec`] (Gymnasium's
    /// `vector_entry_point`). It must behave exactly as a [`VecEnv`] of the
    /// single env with the same seeds.
    pub fn with_vector_factory<V, F>(mut self, factory: F) -> Self
    where
        V: VectorEnv + 'static,
        F: Fn(&Params, usize, Option<u64>) -> Result<V, EnvError> + Send + Sync + 'static,
    {
        self.vector_factory = Some(Arc::new(move |p: &Params, n: usize, limit: Option<u64>| {
            factory(p, n, limit).map(|v| Box::new(v) as Box<dyn VectorEnv>)
        }));
        self
    }

    /// Episodes are truncated after `steps` steps (Gymnasium's `TimeLimit`).
    pub fn with_max_episode_steps(mut self, steps: u64) -> Self {
        self.max_episode_steps = Some(steps);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn max_episode_steps(&self) -> Option<u64> {
        self.max_episode_steps
    }
}

/// A set of registered envs. Most code uses the process-wide registry
/// through [`make`] and [`register`]; a `Registry` value is for code that
/// wants its own.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    specs: BTreeMap<String, EnvSpec>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the built-in envs: the five classic-control ones,
    /// with Gymnasium's time limits, and the ten MinAtar ids.
    pub fn with_builtins() -> Self {
        let mut r = Registry::new();
        let builtins = [
            EnvSpec::new(CartPole::ID, CartPole::from_params)
                .with_max_episode_steps(CartPole::MAX_EPISODE_STEPS)
                .with_vector_factory(CartPoleVec::from_params),
            EnvSpec::new(Acrobot::ID, Acrobot::from_params).with_max_episode_steps(Acrobot::MAX_EPISODE_STEPS),
            EnvSpec::new(MountainCar::ID, MountainCar::from_params)
                .with_max_episode_steps(MountainCar::MAX_EPISODE_STEPS),
            EnvSpec::new(MountainCarContinuous::ID, MountainCarContinuous::from_params)
                .with_max_episode_steps(MountainCarContinuous::MAX_EPISODE_STEPS),
            EnvSpec::new(Pendulum::ID, Pendulum::from_params).with_max_episode_steps(Pendulum::MAX_EPISODE_STEPS),
        ];
        for spec in builtins.into_iter().chain(crate::minatar::registry_specs()) {
            r.specs.insert(spec.id.clone(), spec);
        }
        r
    }

    /// Adds `spec`; an id can be registered once.
    pub fn register(&mut self, spec: EnvSpec) -> Result<(), EnvError> {
        if self.specs.contains_key(&spec.id) {
            return Err(EnvError::AlreadyRegistered { id: spec.id });
        }
        self.specs.insert(spec.id.clone(), spec);
        Ok(())
    }

    /// The registered ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.specs.keys().cloned().collect()
    }

    /// The spec registered under `id`.
    pub fn spec(&self, id: &str) -> Result<&EnvSpec, EnvError> {
        self.specs.get(id).ok_or_else(|| EnvError::UnknownEnv {
            id: id.to_string(),
            registered: self.ids(),
        })
    }

    /// Makes the env `id` with its registered time limit.
    pub fn make(&self, id: &str, params: &Params) -> Result<EnvHandle, EnvError> {
        let spec = self.spec(id)?;
        self.make_with_time_limit(id, params, spec.max_episode_steps)
    }

    /// Makes the env `id` with the given time limit instead of the
    /// registered one (`None`: no limit).
    pub fn make_with_time_limit(
        &self,
        id: &str,
        params: &Params,
        max_episode_steps: Option<u64>,
    ) -> Result<EnvHandle, EnvError> {
        let spec = self.spec(id)?;
        let env = (spec.factory)(params)?;
        Ok(EnvHandle::new(spec.id.clone(), env, max_episode_steps))
    }

    /// `num_envs` envs `id` stepped together, with the given time limit:
    /// the env's native vectorized implementation if it registered one,
    /// else a [`VecEnv`] of single envs.
    pub fn make_vec_with_time_limit(
        &self,
        id: &str,
        params: &Params,
        num_envs: usize,
        max_episode_steps: Option<u64>,
    ) -> Result<Box<dyn VectorEnv>, EnvError> {
        let spec = self.spec(id)?;
        if let Some(factory) = &spec.vector_factory {
            return factory(params, num_envs, max_episode_steps);
        }
        let envs = (0..num_envs)
            .map(|_| self.make_with_time_limit(id, params, max_episode_steps))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(VecEnv::new(envs)?))
    }
}

fn global() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Registry::with_builtins()))
}

/// Makes a registered env by id, with its registered time limit; `params` is
/// the env's own table from the config (`[env.params]`).
pub fn make(id: &str, params: &Params) -> Result<EnvHandle, EnvError> {
    global().read().make(id, params)
}

/// As [`make`], with the given time limit (`None`: no limit) in place of the
/// registered one.
pub fn make_with_time_limit(id: &str, params: &Params, max_episode_steps: Option<u64>) -> Result<EnvHandle, EnvError> {
    global().read().make_with_time_limit(id, params, max_episode_steps)
}

/// `num_envs` envs `id` stepped together with automatic reset and the
/// registered time limit (the env's native vectorized implementation where
/// it has one, e.g. CartPole-v1).
pub fn make_vec(id: &str, params: &Params, num_envs: usize) -> Result<Box<dyn VectorEnv>, EnvError> {
    let registry = global().read();
    let limit = registry.spec(id)?.max_episode_steps;
    registry.make_vec_with_time_limit(id, params, num_envs, limit)
}

/// As [`make_vec`], with the given time limit (`None`: no limit).
pub fn make_vec_with_time_limit(
    id: &str,
    params: &Params,
    num_envs: usize,
    max_episode_steps: Option<u64>,
) -> Result<Box<dyn VectorEnv>, EnvError> {
    global()
        .read()
        .make_vec_with_time_limit(id, params, num_envs, max_episode_steps)
}

/// Registers a user env under `id`, with no time limit. The factory gets the
/// env's `[env.params]` table.
pub fn register<E, F>(id: &str, factory: F) -> Result<(), EnvError>
where
    E: Env + 'static,
    F: Fn(&Params) -> Result<E, EnvError> + Send + Sync + 'static,
{
    register_spec(EnvSpec::new(id, factory))
}

/// Registers a full spec (e.g. with a time limit) in the process-wide registry.
pub fn register_spec(spec: EnvSpec) -> Result<(), EnvError> {
    global().write().register(spec)
}

/// The ids in the process-wide registry, sorted.
pub fn registered_ids() -> Vec<String> {
    global().read().ids()
}

/// The registered default time limit of `id`.
pub fn max_episode_steps(id: &str) -> Result<Option<u64>, EnvError> {
    global().read().spec(id).map(|s| s.max_episode_steps)
}

/// What [`make`] returns: the env inside Gymnasium's `make` wrappers. It
/// checks every action and observation buffer against the spaces (errors name
/// the env id), refuses `step` before the first `reset` (`OrderEnforcing`),
/// and sets `truncated` once `max_episode_steps` steps have been taken since
/// the last reset (`TimeLimit`).
pub struct EnvHandle {
    id: String,
    env: Box<dyn Env>,
    max_episode_steps: Option<u64>,
    elapsed_steps: u64,
    has_reset: bool,
}

impl EnvHandle {
    /// Wraps `env`, registered as `id`.
    pub fn new(id: String, env: Box<dyn Env>, max_episode_steps: Option<u64>) -> Self {
        EnvHandle {
            id,
            env,
            max_episode_steps,
            elapsed_steps: 0,
            has_reset: false,
        }
    }

    /// The id it was made from.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The time limit in force, if any.
    pub fn max_episode_steps(&self) -> Option<u64> {
        self.max_episode_steps
    }

    /// Steps taken since the last reset.
    pub fn elapsed_steps(&self) -> u64 {
        self.elapsed_steps
    }

    /// The wrapped env.
    pub fn inner(&self) -> &dyn Env {
        self.env.as_ref()
    }
}

impl Env for EnvHandle {
    fn observation_space(&self) -> &Space {
        self.env.observation_space()
    }

    fn action_space(&self) -> &Space {
        self.env.action_space()
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(&self.id, self.env.observation_space(), obs)?;
        self.env.reset(seed, obs)?;
        self.elapsed_steps = 0;
        self.has_reset = true;
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        if !self.has_reset {
            return Err(EnvError::ResetNeeded { env: self.id.clone() });
        }
        let space = self.env.action_space();
        if space.is_discrete() {
            discrete_action(&self.id, space, action)?;
        } else {
            continuous_action(&self.id, space, action)?;
        }
        check_observation_buffer(&self.id, self.env.observation_space(), obs)?;
        let mut step = self.env.step(action, obs)?;
        self.elapsed_steps += 1;
        if self.max_episode_steps.is_some_and(|limit| self.elapsed_steps >= limit) {
            step.truncated = true;
        }
        Ok(step)
    }
}
