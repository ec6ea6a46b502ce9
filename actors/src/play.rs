//! Playing whole episodes with a policy outside training (`cml-rl eval`):
//! one env, one observation at a time, the policy's most likely action or a
//! sample from it.

use candle_core::{Device, Tensor};
use cml_envs::{Action, Env, EnvError};
use cml_policy::q_values::argmax;
use cml_policy::{PolicyNet, PolicyParams};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::frame_stack::FrameStacks;
use crate::sampler::{sample_categorical, sample_gaussian};

/// Errors while playing: the env's or the network's.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("policy: {0}")]
    Policy(#[from] cml_policy::PolicyError),
    #[error("policy: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One finished episode: its undiscounted return and its length in steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    pub score: f64,
    pub length: u64,
}

/// Plays `episodes` episodes of `env` with `net`, resetting episode `i`
/// with seed `seed + i`: the most likely action at each step (the Gaussian's
/// mean), or with `sample` a draw from the policy (RNG seeded from `seed`).
/// The env must end its episodes (a time limit). With `frame_stack` k > 1
/// the network sees the last k observations, stacked as the actors stack
/// them (`crate::frame_stack`).
pub fn play_episodes(
    net: &PolicyNet,
    env: &mut dyn Env,
    episodes: usize,
    seed: u64,
    sample: bool,
    frame_stack: usize,
) -> Result<Vec<Episode>, PlayError> {
    let obs_dim = env.observation_space().flat_dim();
    let mut obs = vec![0.0f32; obs_dim];
    let frame_shape = env
        .observation_space()
        .box_shape()
        .map_or_else(|| vec![obs_dim], <[usize]>::to_vec);
    let mut stack = (frame_stack > 1).then(|| FrameStacks::new(1, &frame_shape, frame_stack));
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut continuous = Vec::new();
    let mut played = Vec::with_capacity(episodes);
    for episode in 0..episodes {
        env.reset(Some(seed.wrapping_add(episode as u64)), &mut obs)?;
        if let Some(stack) = &mut stack {
            stack.start(0, &obs);
        }
        let mut done = Episode { score: 0.0, length: 0 };
        // A recurrent policy starts every episode from the zero state.
        let mut state = net.core().map(|core| core.zero_state(1, &Device::Cpu)).transpose()?;
        loop {
            let input = match &stack {
                Some(stack) => Tensor::from_slice(stack.stacked(), (1, stack.stack_dim()), &Device::Cpu)?,
                None => Tensor::from_slice(&obs, (1, obs_dim), &Device::Cpu)?,
            };
            let (out, hc) = match &state {
                Some(s) => {
                    let (out, hc) = net.forward_step(&input, s)?;
                    (out, Some(hc))
                }
                None => (net.forward(&input)?, None),
            };
            let action = match out.policy {
                PolicyParams::Logits(logits) => {
                    let logits = logits.flatten_all()?.to_vec1::<f32>()?;
                    let a = if sample {
                        sample_categorical(&logits, &mut rng).0 as usize
                    } else {
                        // The most likely action: the first largest logit (for an
                        // Ape-X network, also the greedy action of Q).
                        argmax(&logits)
                    };
                    Action::Discrete(a as i64)
                }
                PolicyParams::Gaussian { mean, log_std } => {
                    let mean = mean.flatten_all()?.to_vec1::<f32>()?;
                    continuous.resize(mean.len(), 0.0);
                    if sample {
                        sample_gaussian(&mean, &log_std.to_vec1::<f32>()?, &mut rng, &mut continuous);
                    } else {
                        continuous.copy_from_slice(&mean);
                    }
                    Action::Continuous(&continuous)
                }
            };
            // The action as `next_state` takes it, before `env.step` borrows it.
            let taken = hc.as_ref().map(|_| action_tensor(action)).transpose()?;
            let step = env.step(action, &mut obs)?;
            if let (Some(core), Some(hc), Some(taken)) = (net.core(), &hc, &taken) {
                // The actors' carry: [h, c, action, reward]; no reset needed,
                // a done step ends the loop and the next episode starts at zero.
                let reward = Tensor::full(step.reward as f32, 1, &Device::Cpu)?;
                let not_done = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?;
                state = Some(core.next_state(hc, taken, &reward, &not_done)?);
            }
            if let Some(stack) = &mut stack {
                stack.push(0, &obs);
            }
            done.score += step.reward;
            done.length += 1;
            if step.terminated || step.truncated {
                break;
            }
        }
        played.push(done);
    }
    Ok(played)
}

/// The action as `next_state` takes it: `[1]` u32, or `[1, A]` f32.
fn action_tensor(action: Action<'_>) -> Result<Tensor, PlayError> {
    Ok(match action {
        Action::Discrete(a) => Tensor::from_vec(vec![a as u32], 1, &Device::Cpu)?,
        Action::Continuous(v) => Tensor::from_slice(v, (1, v.len()), &Device::Cpu)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_largest_logit() {
        assert_eq!(argmax(&[0.1, 2.0, -1.0, 2.0]), 1);
        assert_eq!(argmax(&[-3.0]), 0);
    }
}
