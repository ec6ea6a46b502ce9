//! A user-defined environment: implement `cml_envs::Env`, register it by
//! name, and select it from a config file like any built-in env.
//!
//!     cargo run --example custom_env -- examples/custom_env.toml
//!
//! `LineWalk-v0`: an agent on the integers 0..=size starts in the middle and
//! steps left (0) or right (1); reaching `size` pays +1 and ends the episode,
//! reaching 0 pays −1 and ends it. Every step costs `step_cost`.

use std::path::Path;
use std::process::ExitCode;

use cml_envs::{Action, Env, EnvError, EnvSpec, ParamReader, Params, Space, Step};

/// The environment. Its observation is `[position / size]`.
pub struct LineWalk {
    size: i64,
    step_cost: f64,
    position: Option<i64>,
    observation_space: Space,
    action_space: Space,
}

impl LineWalk {
    pub const ID: &'static str = "LineWalk-v0";

    /// Built from the config's `[env.params]`: `size` (integer ≥ 2) and
    /// `step_cost` (number). Unknown keys are rejected.
    pub fn from_params(params: &Params) -> Result<Self, EnvError> {
        let p = ParamReader::new(Self::ID, params, &["size", "step_cost"])?;
        let size = p.u64_or("size", 10)?;
        if !(2..=1_000_000).contains(&size) {
            return Err(EnvError::InvalidParam {
                env: Self::ID.to_string(),
                key: "size".to_string(),
                reason: format!("must be between 2 and 1000000, got {size}"),
            });
        }
        Ok(LineWalk {
            size: size as i64,
            step_cost: p.f64_or("step_cost", 0.01)?,
            position: None,
            observation_space: Space::uniform_box(0.0, 1.0, 1),
            action_space: Space::Discrete(2),
        })
    }
}

impl Env for LineWalk {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        cml_envs::check_observation_buffer(Self::ID, &self.observation_space, obs)?;
        let start = self.size / 2;
        self.position = Some(start);
        obs[0] = start as f32 / self.size as f32;
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let a = cml_envs::discrete_action(Self::ID, &self.action_space, action)?;
        cml_envs::check_observation_buffer(Self::ID, &self.observation_space, obs)?;
        let pos = self
            .position
            .ok_or_else(|| EnvError::ResetNeeded { env: Self::ID.into() })?;
        let pos = if a == 1 { pos + 1 } else { pos - 1 };
        self.position = Some(pos);
        obs[0] = pos as f32 / self.size as f32;
        let (reward, terminated) = match pos {
            p if p >= self.size => (1.0, true),
            p if p <= 0 => (-1.0, true),
            _ => (0.0, false),
        };
        Ok(Step {
            reward: reward - self.step_cost,
            terminated,
            truncated: false,
        })
    }
}

/// Registers `LineWalk-v0` (with a time limit of 200 steps) and runs
/// random-policy episodes of the env the config selects.
pub fn run(config_path: &Path) -> anyhow::Result<cml_rl::rollout::RolloutReport> {
    // Registering twice (e.g. from a test calling `run` again) is an error
    // we can ignore here: the env is already there.
    match cml_envs::register_spec(EnvSpec::new(LineWalk::ID, LineWalk::from_params).with_max_episode_steps(200)) {
        Ok(()) | Err(EnvError::AlreadyRegistered { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let config = cml_rl::config::Config::load(config_path)?;
    let options = cml_rl::rollout::RolloutOptions {
        episodes: 50,
        ..Default::default()
    };
    cml_rl::rollout::run(&config, &options)
}

#[allow(dead_code)] // the test that includes this file calls `run` instead
fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/custom_env.toml".to_string());
    match run(Path::new(&path)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
