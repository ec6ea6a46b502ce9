//! Runs any [`gymnasium_rs`] env (`gymnasium_rs::core::Env<Array1<f32>, i32>`)
//! as a cml-rl [`Env`], unchanged. Enabled by the `gymnasium-rs` feature.
//!
//! gymnasium-rs returns a fresh `Array1` and an info `HashMap` from every
//! call, so stepping through this adapter allocates inside the wrapped env
//! (the adapter itself copies into the caller's buffer and allocates nothing).
//! Its seeds are `i32`; our seeds are `u64` (actor seeds carry
//! `host_id << 32`), so seeds up to `i32::MAX` pass unchanged and larger
//! ones are mixed into `0..=i32::MAX` ([`gymnasium_rs_seed`]): every u64
//! seed works, deterministically. Its spaces are read once, when the
//! adapter is made.

use gymnasium_rs::core::{Env as GymEnv, Space as GymSpace};
use ndarray::Array1;

use crate::env::{check_observation_buffer, discrete_action, Action, Env, EnvError, Step};
use crate::registry::{register_spec, EnvSpec};
use crate::space::Space;

/// A gymnasium-rs env seen through our [`Env`] trait.
pub struct GymnasiumRsEnv<E> {
    name: String,
    env: E,
    observation_space: Space,
    action_space: Space,
}

fn convert_space(name: &str, space: GymSpace) -> Result<Space, EnvError> {
    match space {
        GymSpace::Discrete(n) if n > 0 => Ok(Space::Discrete(n as usize)),
        GymSpace::Discrete(n) => Err(EnvError::Other {
            env: name.to_string(),
            message: format!("gymnasium-rs space Discrete({n}) is empty"),
        }),
        GymSpace::Box { low, high } if low.len() == high.len() => {
            let n = low.len();
            Ok(Space::bounded(low.to_vec(), high.to_vec(), vec![n]))
        }
        GymSpace::Box { low, high } => Err(EnvError::Other {
            env: name.to_string(),
            message: format!(
                "gymnasium-rs Box bounds differ in length ({} vs {})",
                low.len(),
                high.len()
            ),
        }),
    }
}

impl<E: GymEnv<Array1<f32>, i32>> GymnasiumRsEnv<E> {
    /// Wraps `env`; `name` is used in error messages. Fails if its action
    /// space is not `Discrete` (gymnasium-rs actions are `i32`).
    pub fn new(name: impl Into<String>, env: E) -> Result<Self, EnvError> {
        let name = name.into();
        let observation_space = convert_space(&name, env.observation_space())?;
        let action_space = convert_space(&name, env.action_space())?;
        if !action_space.is_discrete() {
            return Err(EnvError::Other {
                env: name,
                message: format!(
                    "gymnasium-rs actions are i32, so the action space must be Discrete, not {action_space}"
                ),
            });
        }
        Ok(GymnasiumRsEnv {
            name,
            env,
            observation_space,
            action_space,
        })
    }

    /// The wrapped env.
    pub fn inner(&self) -> &E {
        &self.env
    }

    fn copy_obs(&self, value: &Array1<f32>, obs: &mut [f32]) -> Result<(), EnvError> {
        if value.len() != obs.len() {
            return Err(EnvError::Other {
                env: self.name.clone(),
                message: format!(
                    "gymnasium-rs env returned an observation of length {}, its space {} says {}",
                    value.len(),
                    self.observation_space,
                    obs.len()
                ),
            });
        }
        for (o, v) in obs.iter_mut().zip(value.iter()) {
            *o = *v;
        }
        Ok(())
    }
}

/// A u64 seed as the i32 gymnasium-rs takes: unchanged up to `i32::MAX`,
/// else SplitMix64's finalizer of the seed folded into `0..=i32::MAX` (so
/// seeds that differ only above bit 31, such as two hosts' actor seeds,
/// still differ).
pub fn gymnasium_rs_seed(seed: u64) -> i32 {
    if let Ok(small) = i32::try_from(seed) {
        return small;
    }
    let mut z = seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // 31 bits: always a valid non-negative i32.
    (z & 0x7fff_ffff) as i32
}

impl<E: GymEnv<Array1<f32>, i32> + Send> Env for GymnasiumRsEnv<E> {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(&self.name, &self.observation_space, obs)?;
        let seed = seed.map(gymnasium_rs_seed);
        let (value, _info) = self.env.reset(seed, Default::default());
        self.copy_obs(&value, obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let a = discrete_action(&self.name, &self.action_space, action)?;
        check_observation_buffer(&self.name, &self.observation_space, obs)?;
        // Fits: the space was Discrete(n) with n an i32.
        let (value, reward, terminated, truncated, _info) = self.env.step(a as i32);
        self.copy_obs(&value, obs)?;
        Ok(Step {
            reward: f64::from(reward),
            terminated,
            truncated,
        })
    }
}

/// Registers gymnasium-rs's environments under `gymnasium-rs/<id>`:
/// `gymnasium-rs/CartPole-v1` (time limit 500, as Gymnasium registers it).
pub fn register_gymnasium_rs_envs() -> Result<(), EnvError> {
    const ID: &str = "gymnasium-rs/CartPole-v1";
    register_spec(
        EnvSpec::new(ID, |params: &crate::params::Params| {
            crate::params::ParamReader::new(ID, params, &[])?;
            GymnasiumRsEnv::new(ID, gymnasium_rs::envs::cartpole::CartPole::new())
        })
        .with_max_episode_steps(500),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{make, Params, VecActions, VecEnv, VectorEnv};

    #[test]
    fn gymnasium_rs_cartpole_runs_as_our_env() {
        register_gymnasium_rs_envs().expect("register once");
        let id = "gymnasium-rs/CartPole-v1";
        let mut env = make(id, &Params::new()).expect("make");
        assert_eq!(env.action_space(), &Space::Discrete(2));
        assert_eq!(env.observation_space().flat_dim(), 4);
        let mut obs = [9.0f32; 4];
        env.reset(Some(3), &mut obs).expect("reset");
        assert!(obs.iter().all(|x| x.abs() <= 0.05), "reset state in ±0.05: {obs:?}");
        // Same seed, same start.
        let mut again = [0.0f32; 4];
        env.reset(Some(3), &mut again).expect("reset");
        assert_eq!(obs, again);
        // Pushing right always makes the pole fall: the episode terminates.
        let mut steps = 0;
        loop {
            let s = env.step(Action::Discrete(1), &mut obs).expect("step");
            steps += 1;
            if s.terminated {
                break;
            }
            assert_eq!(s.reward, 1.0);
            assert!(steps < 100, "pole never fell");
        }
        assert!(obs[0].abs() > 2.4 || obs[2].abs() > 0.2);
        // Bad input is refused by the adapter, not passed on.
        let err = env.step(Action::Discrete(2), &mut obs).unwrap_err();
        assert!(err.to_string().contains("gymnasium-rs/CartPole-v1: action 2"), "{err}");
        // Seeds above i32::MAX (host_id << 32 | index) work, deterministically.
        let host1 = (1u64 << 32) | 5;
        env.reset(Some(host1), &mut obs).expect("a seed above i32::MAX");
        env.reset(Some(host1), &mut again).expect("reset");
        assert_eq!(obs, again, "same big seed, same start");
        env.reset(Some(u64::MAX), &mut obs).expect("u64::MAX");
        assert_eq!(gymnasium_rs_seed(7), 7);
        let seeds: std::collections::HashSet<i32> = (0..4u64)
            .flat_map(|h| (0..64u64).map(move |i| gymnasium_rs_seed(h << 32 | i)))
            .collect();
        assert_eq!(seeds.len(), 256, "hosts' actor seeds stay distinct");

        // And it runs in a vector with autoreset.
        let mut venv = VecEnv::make(id, &Params::new(), 8).expect("vector");
        venv.reset(Some(0)).expect("reset");
        let mut finished = 0;
        for _ in 0..100 {
            venv.step(VecActions::Discrete(&[1; 8])).expect("step");
            finished += venv.terminated().iter().filter(|t| **t).count();
        }
        assert!(finished >= 8, "{finished}");
    }
}
