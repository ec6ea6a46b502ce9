//! Gymnasium environments written in Python, as cml-rl envs.
//!
//! `[env] id = "gymnasium:LunarLander-v3"` names any id `gymnasium.make`
//! knows. Each vector env of K envs is one Python worker process running
//! `python/cml_gymnasium_worker.py` (shipped in this crate, needing only
//! `gymnasium` and `numpy`). Observations, rewards, flags, final
//! observations and actions live in a file in `/dev/shm` mapped by both
//! sides; one short line crosses a pipe per call. Nothing is pickled.
//!
//! [`register`] puts such an env into the process-wide registry, so every
//! role (actor hosts, `eval`, `rollout`) makes it like a Rust env.

mod python_env;
mod worker_process;

use std::sync::Arc;
use std::time::Duration;

use cml_envs::{EnvError, EnvSpec, Params};

pub use python_env::{PythonEnv, PythonVecEnv};
pub use worker_process::{remove_stale_shared_memory, SHM_PREFIX};

/// The environment variable naming the default interpreter (when the
/// config has no `[env] python`); without it, `python3` on PATH.
pub const PYTHON_VAR: &str = "CML_PYTHON";

/// The prefix of ids that name Gymnasium envs.
pub const GYMNASIUM_PREFIX: &str = "gymnasium:";

/// How to make one Gymnasium env in Python (the config's `[env]` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct GymnasiumEnv {
    /// The id `gymnasium.make` takes (without `gymnasium:`).
    pub id: String,
    /// `[env.kwargs]`, handed to `gymnasium.make`.
    pub kwargs: toml::Table,
    /// Wrappers from `gymnasium.wrappers`, applied in order: name, arguments.
    pub wrappers: Vec<(String, toml::Table)>,
    /// The Python interpreter (`[env] python`; default `$CML_PYTHON`, else
    /// `python3` on PATH).
    pub python: String,
    /// Modules imported before `gymnasium.make`, e.g. `ale_py` (`[env] import`).
    pub import: Vec<String>,
    /// The longest a worker may take to answer one call before it counts
    /// as hung and is killed.
    pub step_timeout: Duration,
    /// How a worker makes its K envs (`[env] vectorization`).
    pub vectorization: Vectorization,
    /// The order of the env's observation axes (`[env] observation_layout`).
    pub observation_layout: ObservationLayout,
    /// Episodic life (`[env] episodic_life`): a life lost (`info["lives"]`
    /// falls) while the game goes on ends the episode for learning
    /// (`terminated`, [`cml_envs::VectorEnv::life_lost`]) but not the game
    /// or the return the actors report.
    pub episodic_life: bool,
}

/// How a worker makes its K envs (`[env] vectorization`, named after
/// `gymnasium.make_vec`'s `vectorization_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vectorization {
    /// K envs from `gymnasium.make`, each with `[env] wrappers`, stepped
    /// one after another in the worker.
    #[default]
    None,
    /// One vector env from the id's own batched implementation
    /// (`gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`):
    /// for `ALE/...` ids, ale_py's C++ `AtariVectorEnv`, which steps in
    /// threads without the GIL and preprocesses frames itself (its options
    /// go in `[env.kwargs]`). It takes no wrappers and seeds below 2³¹
    /// (larger seeds are folded into that range).
    VectorEntryPoint,
}

/// The order of an env's observation axes (`[env] observation_layout`).
/// cml-rl's networks take `[H, W, C]`; a `"chw"` env's `[C, H, W]` frames
/// (Gymnasium's frame stacks, ale_py's vector env) are transposed as the
/// worker writes them, and the space is reported as `[H, W, C]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationLayout {
    /// Channels last (or not an image): written as the env makes it.
    #[default]
    Hwc,
    /// Channels first: written as `[H, W, C]`.
    Chw,
}

impl Vectorization {
    fn as_str(self) -> &'static str {
        match self {
            Vectorization::None => "none",
            Vectorization::VectorEntryPoint => "vector_entry_point",
        }
    }
}

impl ObservationLayout {
    fn as_str(self) -> &'static str {
        match self {
            ObservationLayout::Hwc => "hwc",
            ObservationLayout::Chw => "chw",
        }
    }
}

impl GymnasiumEnv {
    /// `gymnasium:<id>` with the defaults.
    pub fn new(id: impl Into<String>) -> GymnasiumEnv {
        GymnasiumEnv {
            id: id.into(),
            kwargs: toml::Table::new(),
            wrappers: Vec::new(),
            python: default_python(),
            import: Vec::new(),
            step_timeout: Duration::from_secs(60),
            vectorization: Vectorization::None,
            observation_layout: ObservationLayout::Hwc,
            episodic_life: false,
        }
    }

    /// The registry id: `gymnasium:<id>`.
    pub fn registry_id(&self) -> String {
        format!("{GYMNASIUM_PREFIX}{}", self.id)
    }

    /// The worker's spec line: what it makes, how many, whether it resets
    /// finished envs itself.
    fn spec_json(&self, num_envs: usize, autoreset: bool, max_episode_steps: Option<u64>) -> String {
        let mut make_kwargs = serde_json::to_value(&self.kwargs).unwrap_or_default();
        if let (Some(steps), Some(map)) = (max_episode_steps, make_kwargs.as_object_mut()) {
            map.insert("max_episode_steps".into(), steps.into());
        }
        let wrappers: Vec<serde_json::Value> = self
            .wrappers
            .iter()
            .map(|(name, args)| serde_json::json!({"name": name, "args": args}))
            .collect();
        serde_json::json!({
            "id": self.id,
            "make_kwargs": make_kwargs,
            "wrappers": wrappers,
            "import": self.import,
            "num_envs": num_envs,
            "autoreset": autoreset,
            "vectorization": self.vectorization.as_str(),
            "observation_layout": self.observation_layout.as_str(),
            "episodic_life": self.episodic_life,
        })
        .to_string()
    }
}

/// Registers `env` as `gymnasium:<id>` in the process-wide registry (again
/// is a no-op: every role loads the same config). Its time limit is
/// Gymnasium's own (`gymnasium.make` applies the registered one); a
/// configured `max_episode_steps` is handed to `gymnasium.make`. The env
/// takes no `[env.params]`.
pub fn register(env: &GymnasiumEnv) -> Result<(), EnvError> {
    let id = env.registry_id();
    if cml_envs::registered_ids().contains(&id) {
        return Ok(());
    }
    let single = Arc::new(env.clone());
    let vector = Arc::clone(&single);
    let spec = EnvSpec::new(id.clone(), move |params: &Params| {
        no_params(&single, params)?;
        PythonEnv::start(&single, None)
    })
    .with_vector_factory(move |params: &Params, n, limit| {
        no_params(&vector, params)?;
        PythonVecEnv::start(&vector, n, limit)
    });
    match cml_envs::register_spec(spec) {
        Ok(()) | Err(EnvError::AlreadyRegistered { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `python` runs and can import every module of `modules` (e.g.
/// `["gymnasium", "numpy"]`): for tests and diagnostics.
pub fn python_can_import(python: &str, modules: &[&str]) -> bool {
    std::process::Command::new(python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The interpreter used when none is named: `$CML_PYTHON`, else `python3`.
pub fn default_python() -> String {
    std::env::var(PYTHON_VAR).unwrap_or_else(|_| "python3".to_string())
}

/// What `python` (after importing `imports`, which register envs) can
/// make with `gymnasium.make`: each registered id and its
/// `max_episode_steps` (None: no time limit), sorted by id.
pub fn gymnasium_ids(python: &str, imports: &[String]) -> Result<Vec<(String, Option<u64>)>, EnvError> {
    const LIST: &str = "import importlib, json, sys\n\
        for m in sys.argv[1:]:\n    importlib.import_module(m)\n\
        import gymnasium\n\
        print(json.dumps(sorted([k, v.max_episode_steps] for k, v in gymnasium.registry.items())))\n";
    let failed = |message: String| EnvError::Other {
        env: GYMNASIUM_PREFIX.trim_end_matches(':').to_string(),
        message,
    };
    let out = std::process::Command::new(python)
        .args(["-c", LIST])
        .args(imports)
        .output()
        .map_err(|e| failed(format!("running `{python}`: {e} (give --python, or set ${PYTHON_VAR})")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("no output");
        return Err(failed(format!(
            "`{python}` could not list gymnasium's envs: {last} (pip install gymnasium, and the packages of --import)"
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| failed(format!("`{python}` listed envs unreadably: {e}")))
}

/// The interpreter the tests use: `$CML_PYTHON`, else `python3`, if it has
/// `modules`. Under CI (`CI` set) a missing one is a failure, not a skip.
pub fn test_python(modules: &[&str]) -> Option<String> {
    let python = default_python();
    if python_can_import(&python, modules) {
        return Some(python);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must provide {PYTHON_VAR} with {} (.ci/run does)",
        modules.join(", ")
    );
    eprintln!("SKIPPED: no Python with {} (set {PYTHON_VAR})", modules.join(", "));
    None
}

fn no_params(env: &GymnasiumEnv, params: &Params) -> Result<(), EnvError> {
    match params.keys().next() {
        None => Ok(()),
        Some(key) => Err(EnvError::UnknownParam {
            env: env.registry_id(),
            key: key.clone(),
            known: vec!["(Gymnasium envs take [env.kwargs], handed to gymnasium.make)".to_string()],
        }),
    }
}
