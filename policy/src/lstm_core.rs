//! The recurrent core (`[model] core = "lstm"`): an LSTM cell after the
//! torso, fed as IMPALA feeds it (Espeholt et al. 2018, fig. 3) with the
//! torso's features, the previous action (one-hot for discrete actions, the
//! values for continuous ones) and the previous reward.
//!
//! The state one actor carries between steps is one flat f32 vector of
//! S = 2H + A + 1 values, `[h (H), c (H), previous action (A), previous
//! reward (1)]`: what the cell needs besides the observation. It is all
//! zeros at the start of an episode, and it is what an unroll's
//! `initial_recurrent_state` carries, so a learner can replay the core from
//! it. [`LstmCore::next_state`] is the one place that builds the next state
//! from a step, for actors and learner alike.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::rnn::{LSTMConfig, LSTMState, LSTM, RNN};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;

use crate::{ActionKind, PolicyError, Result};

/// An LSTM cell over `[features, previous action, previous reward]`.
pub struct LstmCore {
    lstm: LSTM,
    hidden: usize,
    action: ActionKind,
}

/// Values of the action part of the state.
fn action_inputs(action: ActionKind) -> usize {
    match action {
        ActionKind::Categorical(n) | ActionKind::Gaussian(n) => n,
    }
}

impl LstmCore {
    /// S for an LSTM of `hidden` units after actions of `action`.
    pub fn state_size_for(hidden: usize, action: ActionKind) -> usize {
        2 * hidden + action_inputs(action) + 1
    }

    /// Adds the cell's weights to `varmap`, initialised as PyTorch's
    /// `nn.LSTM` (uniform in ±1/√H), from the seeded generator: `core.weight_ih_l0`
    /// `[4H, F + A + 1]`, `core.weight_hh_l0` `[4H, H]`, `core.bias_ih_l0`,
    /// `core.bias_hh_l0` `[4H]`; gates in PyTorch's order (input, forget,
    /// cell, output).
    pub fn init(
        varmap: &VarMap,
        features: usize,
        hidden: usize,
        action: ActionKind,
        rng: &mut rand::rngs::StdRng,
        device: &Device,
    ) -> Result<()> {
        let input = features + action_inputs(action) + 1;
        let bound = 1.0 / (hidden as f32).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let tensors = [
            (
                "core.weight_ih_l0",
                Tensor::from_vec(uniform(4 * hidden * input), (4 * hidden, input), device)?,
            ),
            (
                "core.weight_hh_l0",
                Tensor::from_vec(uniform(4 * hidden * hidden), (4 * hidden, hidden), device)?,
            ),
            (
                "core.bias_ih_l0",
                Tensor::from_vec(uniform(4 * hidden), 4 * hidden, device)?,
            ),
            (
                "core.bias_hh_l0",
                Tensor::from_vec(uniform(4 * hidden), 4 * hidden, device)?,
            ),
        ];
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| PolicyError::Weights("variable map lock poisoned".into()))?;
        for (name, tensor) in tensors {
            data.insert(name.to_string(), Var::from_tensor(&tensor)?);
        }
        Ok(())
    }

    pub fn build(vb: VarBuilder, features: usize, hidden: usize, action: ActionKind) -> Result<LstmCore> {
        let input = features + action_inputs(action) + 1;
        let lstm = candle_nn::rnn::lstm(input, hidden, LSTMConfig::default(), vb.pp("core"))?;
        Ok(LstmCore { lstm, hidden, action })
    }

    /// S: values of one actor's state.
    pub fn state_size(&self) -> usize {
        Self::state_size_for(self.hidden, self.action)
    }

    /// H: the features the heads read.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// One step: `features` `[N, F]` and `state` `[N, S]` give the output
    /// h `[N, H]` and the new `[h, c]` `[N, 2H]`.
    pub fn step(&self, features: &Tensor, state: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, s) = state.dims2()?;
        if s != self.state_size() || n != features.dim(0)? {
            return Err(PolicyError::Config(format!(
                "recurrent state has shape {:?}; the LSTM core needs [{}, {}] (2·{} + actions + 1)",
                state.dims(),
                features.dim(0)?,
                self.state_size(),
                self.hidden
            )));
        }
        let h = state.narrow(1, 0, self.hidden)?;
        let c = state.narrow(1, self.hidden, self.hidden)?;
        let previous = state.narrow(1, 2 * self.hidden, s - 2 * self.hidden)?;
        let input = Tensor::cat(&[features, &previous], 1)?;
        let next = self.lstm.step(&input, &LSTMState::new(h, c))?;
        let hc = Tensor::cat(&[next.h(), next.c()], 1)?;
        Ok((next.h().clone(), hc))
    }

    /// The state after a step: `[h, c, action, reward]`, or zeros where the
    /// episode ended (`done` = 1). `actions`: `[N]` integers (categorical)
    /// or `[N, A]` values (Gaussian); `rewards`, `done`: `[N]` f32.
    pub fn next_state(&self, hc: &Tensor, actions: &Tensor, rewards: &Tensor, done: &Tensor) -> Result<Tensor> {
        let n = hc.dim(0)?;
        let action = match self.action {
            ActionKind::Categorical(a) => {
                let index = actions.to_dtype(DType::U32)?.reshape((n, 1))?;
                let classes = Tensor::arange(0u32, a as u32, hc.device())?.reshape((1, a))?;
                classes.broadcast_eq(&index)?.to_dtype(DType::F32)?
            }
            ActionKind::Gaussian(a) => actions.to_dtype(DType::F32)?.reshape((n, a))?,
        };
        let reward = rewards.to_dtype(DType::F32)?.reshape((n, 1))?;
        let state = Tensor::cat(&[hc, &action, &reward], 1)?;
        let keep = (1.0 - done.to_dtype(DType::F32)?.reshape((n, 1))?)?;
        Ok(state.broadcast_mul(&keep)?)
    }

    /// Zero states for `n` actors, `[n, S]`.
    pub fn zero_state(&self, n: usize, device: &Device) -> Result<Tensor> {
        Ok(Tensor::zeros((n, self.state_size()), DType::F32, device)?)
    }
}
