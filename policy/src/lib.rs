//! `cml-policy`: the policy/value network that actor hosts run for inference
//! and the learner trains, and the action distributions on top of it.
//!
//! Kept apart from `cml-learner` so actor hosts get the network without the
//! optimizer, loss or checkpoint code. Weights travel as safetensors bytes
//! ([`PolicyNet::to_safetensors`], [`PolicyNet::from_safetensors`]).
//!
//! [`q_values`] reads the same network as a dueling Q-network and has the
//! n-step double-Q targets Ape-X's learner and actors share.
//!
//! Shapes: observations `[N, obs_dim]` (callers flatten time-major `[T, B]`
//! batches to `N = T·B`); outputs `[N, …]`. The network knows the shape of
//! one observation ([`ObservationShape`], HWC for images) and reshapes the
//! flat rows itself where its torso needs it.

pub mod atari_torsos;
pub mod lstm_core;
pub mod max_pool;
pub mod q_values;
pub mod unfolded_conv;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Errors from building, running or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy network: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("policy network: weights: {0}")]
    Weights(String),
    #[error("policy network: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, PolicyError>;

/// The torso's nonlinearity. ReLU by default: candle's CPU `tanh` is scalar
/// and was measured ~50× slower than ReLU on 262k elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
}

/// What turns one observation into the features both heads read
/// (`[model] torso`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Torso {
    /// Fully connected layers of `hidden` sizes (with `activation`) over the
    /// flattened observation, whatever its shape.
    #[default]
    Mlp,
    /// The MinAtar paper's network (Young & Tian 2019): a convolution of 16
    /// filters 3×3, stride 1, no padding, ReLU, then fully connected 128,
    /// ReLU. Observations `[H, W, C]` in HWC order (as the env writes them);
    /// the convolution reads HWC patches directly.
    Minatar,
    /// The DQN Nature network (TorchBeast's `AtariNet`): conv 32@8×8/4,
    /// 64@4×4/2, 64@3×3/1, FC 512; inputs divided by 255 (pixel frames).
    Nature,
    /// The IMPALA deep ResNet: three stacks of 16/32/32 channels (conv 3×3,
    /// max-pool 3×3/2 `SAME`, two residual blocks), FC 256; inputs divided
    /// by 255.
    Impala,
}

impl Torso {
    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Torso::Mlp => "mlp",
            Torso::Minatar => "minatar",
            Torso::Nature => "nature",
            Torso::Impala => "impala",
        }
    }

    /// The smallest image side the torso takes (0: any shape, flattened).
    fn min_side(self) -> usize {
        match self {
            Torso::Mlp => 0,
            Torso::Minatar => MINATAR_KERNEL,
            Torso::Nature => atari_torsos::NATURE_MIN_SIDE,
            Torso::Impala => 1,
        }
    }
}

/// What follows the torso (`[model] core`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Core {
    /// The heads read the torso's features (a feed-forward policy).
    #[default]
    None,
    /// An LSTM of `core_size` units over the features, the previous action
    /// and the previous reward ([`lstm_core::LstmCore`]).
    Lstm,
}

/// Filters and width of the MinAtar torso.
const MINATAR_FILTERS: usize = 16;
const MINATAR_KERNEL: usize = 3;
const MINATAR_HIDDEN: usize = 128;

/// The shape of one observation: `[d]` for a flat vector, `[H, W, C]` for
/// an image in HWC order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservationShape(pub Vec<usize>);

impl ObservationShape {
    /// Values in one observation (the product of the shape).
    pub fn flat_dim(&self) -> usize {
        self.0.iter().product()
    }
}

impl From<usize> for ObservationShape {
    fn from(dim: usize) -> Self {
        ObservationShape(vec![dim])
    }
}

impl From<&[usize]> for ObservationShape {
    fn from(shape: &[usize]) -> Self {
        ObservationShape(shape.to_vec())
    }
}

impl From<Vec<usize>> for ObservationShape {
    fn from(shape: Vec<usize>) -> Self {
        ObservationShape(shape)
    }
}

impl From<&ObservationShape> for ObservationShape {
    fn from(shape: &ObservationShape) -> Self {
        shape.clone()
    }
}

/// The network's shape, from the config (`[model]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The torso: `"mlp"` (default), `"minatar"`, `"nature"` or `"impala"`.
    #[serde(default)]
    pub torso: Torso,
    /// Hidden layer sizes of the MLP torso (the `mlp` torso only).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
    /// `"none"` (default) or `"lstm"`.
    #[serde(default)]
    pub core: Core,
    /// Units of the LSTM core.
    #[serde(default = "default_core_size")]
    pub core_size: usize,
    /// Initial log standard deviation of the Gaussian head (Box actions).
    #[serde(default)]
    pub initial_log_std: f32,
    /// k: the network's input is the env's last k observations, stacked
    /// along the last (channel) axis, oldest first (DQN's Atari frame
    /// stack; default 1, none). Actors and the learner stack them from
    /// frames that travel once each (`UnrollLayout::frame_stack`).
    #[serde(default = "default_frame_stack")]
    pub frame_stack: usize,
}

impl NetConfig {
    /// `"key: reason"` for the first bad value (`[model]`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.hidden.contains(&0) {
            return Err("hidden: layer sizes must be at least 1".to_string());
        }
        if self.core_size == 0 || self.core_size > 65536 {
            return Err("core_size: must be in 1..=65536".to_string());
        }
        if !(self.initial_log_std.is_finite() && self.initial_log_std.abs() <= 20.0) {
            return Err("initial_log_std: must be a number in [-20, 20]".to_string());
        }
        if !(1..=MAX_FRAME_STACK).contains(&self.frame_stack) {
            return Err(format!("frame_stack: must be in 1..={MAX_FRAME_STACK}"));
        }
        Ok(())
    }

    /// The network's input shape for env observations of `observation_shape`:
    /// the last axis holds `frame_stack` times its channels
    /// (`[84, 84, 1]` stacked 4 → `[84, 84, 4]`; `[8]` stacked 2 → `[16]`).
    pub fn input_shape(&self, observation_shape: &[usize]) -> Vec<usize> {
        let mut shape = observation_shape.to_vec();
        if let Some(last) = shape.last_mut() {
            *last *= self.frame_stack;
        }
        shape
    }
}

/// The most frames a network may stack (the wire's limit too).
pub const MAX_FRAME_STACK: usize = 16;

fn default_frame_stack() -> usize {
    1
}

fn default_hidden() -> Vec<usize> {
    vec![64, 64]
}

fn default_core_size() -> usize {
    128
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            torso: Torso::Mlp,
            hidden: default_hidden(),
            activation: Activation::Relu,
            core: Core::None,
            core_size: default_core_size(),
            initial_log_std: 0.0,
            frame_stack: default_frame_stack(),
        }
    }
}

/// What the action head produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionKind {
    /// A categorical distribution over `n` actions (`Discrete(n)`).
    Categorical(usize),
    /// A diagonal Gaussian over `dim` values with a state-independent
    /// log-std (`Box` of `dim` values).
    Gaussian(usize),
}

/// The distribution parameters for a batch.
#[derive(Clone, Debug)]
pub enum PolicyParams {
    /// Unnormalized log-probabilities, `[N, A]`.
    Logits(Tensor),
    /// Means `[N, A]` and the shared log-std `[A]`.
    Gaussian { mean: Tensor, log_std: Tensor },
}

const LOG_SQRT_2PI: f64 = 0.918_938_533_204_672_8; // ln(√(2π))

impl PolicyParams {
    /// log π(a) for each row: `actions` is `[N]` (integer) for logits,
    /// `[N, A]` (f32) for a Gaussian. Returns `[N]`.
    pub fn log_prob(&self, actions: &Tensor) -> Result<Tensor> {
        match self {
            PolicyParams::Logits(logits) => {
                let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
                let idx = actions.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?;
                Ok(log_probs.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?)
            }
            PolicyParams::Gaussian { mean, log_std } => {
                // Σ_i [ −(a_i − μ_i)² / (2σ_i²) − log σ_i − log √(2π) ]
                let inv_var = (log_std * -2.0)?.exp()?;
                let sq = (actions - mean)?.sqr()?.broadcast_mul(&inv_var)?;
                let per_dim = ((sq * -0.5)?.broadcast_sub(log_std)? - LOG_SQRT_2PI)?;
                Ok(per_dim.sum(D::Minus1)?)
            }
        }
    }

    /// Entropy of each row's distribution, `[N]`.
    pub fn entropy(&self) -> Result<Tensor> {
        match self {
            PolicyParams::Logits(logits) => {
                let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
                let probs = log_probs.exp()?;
                Ok((probs * log_probs)?.sum(D::Minus1)?.neg()?)
            }
            PolicyParams::Gaussian { mean, log_std } => {
                // Σ_i (½ + log √(2π) + log σ_i), the same for every row.
                let per_row = (log_std + (0.5 + LOG_SQRT_2PI))?.sum_all()?;
                Ok(per_row.broadcast_as(mean.dim(0)?)?.contiguous()?)
            }
        }
    }

    /// The per-row head output: the logits, or the Gaussian's means.
    pub fn head(&self) -> &Tensor {
        match self {
            PolicyParams::Logits(logits) => logits,
            PolicyParams::Gaussian { mean, .. } => mean,
        }
    }

    /// The greedy action of each row: argmax for logits (`[N]`, u32), the
    /// mean for a Gaussian (`[N, A]`).
    pub fn mode(&self) -> Result<Tensor> {
        match self {
            PolicyParams::Logits(logits) => Ok(logits.argmax(D::Minus1)?),
            PolicyParams::Gaussian { mean, .. } => Ok(mean.clone()),
        }
    }
}

/// One forward pass: the policy's distribution and the value estimate.
#[derive(Clone, Debug)]
pub struct PolicyOutput {
    pub policy: PolicyParams,
    /// V(x), `[N]`.
    pub value: Tensor,
}

/// The torso's layers.
enum TorsoLayers {
    Mlp(Vec<Linear>),
    /// Over `[N, H, W, C]`.
    Minatar {
        conv: unfolded_conv::UnfoldedConv2d,
        fc: Linear,
        height: usize,
        width: usize,
        channels: usize,
    },
    Nature(atari_torsos::NatureTorso),
    Impala(atari_torsos::ImpalaTorso),
}

/// B unrolls of T steps, time-major, for [`PolicyNet::forward_unroll`].
pub struct UnrollInputs<'a> {
    /// x_0 … x_T, `[T+1, B, obs_dim]` f32.
    pub observations: &'a Tensor,
    /// a_t: `[T, B]` integers, or `[T, B, A]` values.
    pub actions: &'a Tensor,
    /// r_t as the env gave it (before any scaling), `[T, B]` f32.
    pub rewards: &'a Tensor,
    /// 1 where step t ended an episode (terminated or truncated), `[T, B]`.
    pub dones: &'a Tensor,
    /// Each unroll's state before x_0, `[B, S]` (recurrent networks).
    pub initial_state: Option<&'a Tensor>,
    /// The true final observation of step t where it was truncated, `[T, B,
    /// obs_dim]` (any values elsewhere).
    pub final_observations: Option<&'a Tensor>,
}

/// A torso (MLP or a CNN), an optional recurrent core, an action head
/// (categorical or Gaussian) and a value head.
pub struct PolicyNet {
    torso: TorsoLayers,
    core: Option<lstm_core::LstmCore>,
    policy_head: Linear,
    value_head: Linear,
    log_std: Option<Tensor>,
    activation: Activation,
    obs_shape: ObservationShape,
    obs_dim: usize,
    action: ActionKind,
}

/// The `[H, W, C]` of an image observation for a convolutional torso, or
/// the error naming `model.torso` and the shape.
fn image_shape(torso: Torso, shape: &ObservationShape, min_side: usize) -> Result<(usize, usize, usize)> {
    match shape.0.as_slice() {
        &[h, w, c] if h >= min_side && w >= min_side && c >= 1 => Ok((h, w, c)),
        other => Err(PolicyError::Config(format!(
            "model.torso = {:?} needs observations of shape [height, width, channels] with height and width \
             at least {min_side}; the env's observations have shape {other:?}",
            torso.name()
        ))),
    }
}

/// PyTorch's `nn.Conv2d` initialisation (Kaiming-uniform with a = √5, which
/// is uniform in ±1/√fan_in, fan_in = in·k·k; the bias alike), seeded.
pub(crate) fn init_conv(
    varmap: &VarMap,
    name: &str,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    rng: &mut rand::rngs::StdRng,
    device: &Device,
) -> Result<()> {
    let fan_in = in_channels * kernel * kernel;
    let bound = 1.0 / (fan_in as f32).sqrt();
    let mut uniform = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = Tensor::from_vec(
        uniform(out_channels * fan_in),
        (out_channels, in_channels, kernel, kernel),
        device,
    )?;
    let bias = Tensor::from_vec(uniform(out_channels), out_channels, device)?;
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| PolicyError::Weights("variable map lock poisoned".into()))?;
    data.insert(format!("{name}.weight"), Var::from_tensor(&weight)?);
    data.insert(format!("{name}.bias"), Var::from_tensor(&bias)?);
    Ok(())
}

/// PyTorch's `nn.Linear` initialisation: weight and bias uniform in
/// ±1/√fan_in, drawn from a seeded generator so runs are reproducible.
pub(crate) fn init_linear(
    varmap: &VarMap,
    name: &str,
    fan_in: usize,
    fan_out: usize,
    rng: &mut rand::rngs::StdRng,
    device: &Device,
) -> Result<()> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let mut uniform = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = Tensor::from_vec(uniform(fan_in * fan_out), (fan_out, fan_in), device)?;
    let bias = Tensor::from_vec(uniform(fan_out), fan_out, device)?;
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| PolicyError::Weights("variable map lock poisoned".into()))?;
    data.insert(format!("{name}.weight"), Var::from_tensor(&weight)?);
    data.insert(format!("{name}.bias"), Var::from_tensor(&bias)?);
    Ok(())
}

impl PolicyNet {
    /// A freshly initialised trainable network whose variables live in
    /// `varmap` (seeded: the same seed gives the same weights).
    pub fn init(
        varmap: &VarMap,
        obs: impl Into<ObservationShape>,
        action: ActionKind,
        config: &NetConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let obs = obs.into();
        let obs_dim = obs.flat_dim();
        if obs_dim == 0 {
            return Err(PolicyError::Config("observation dimension is 0".into()));
        }
        if config.hidden.contains(&0) {
            return Err(PolicyError::Config(format!(
                "hidden layer sizes must be positive, got {:?}",
                config.hidden
            )));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let fan_in = match config.torso {
            Torso::Mlp => {
                let mut fan_in = obs_dim;
                for (i, &h) in config.hidden.iter().enumerate() {
                    init_linear(varmap, &format!("torso.{i}"), fan_in, h, &mut rng, device)?;
                    fan_in = h;
                }
                fan_in
            }
            Torso::Minatar => {
                let (h, w, c) = image_shape(config.torso, &obs, MINATAR_KERNEL)?;
                init_conv(
                    varmap,
                    "torso.conv",
                    c,
                    MINATAR_FILTERS,
                    MINATAR_KERNEL,
                    &mut rng,
                    device,
                )?;
                let conv_out = MINATAR_FILTERS * (h - MINATAR_KERNEL + 1) * (w - MINATAR_KERNEL + 1);
                init_linear(varmap, "torso.fc", conv_out, MINATAR_HIDDEN, &mut rng, device)?;
                MINATAR_HIDDEN
            }
            Torso::Nature => {
                let image = image_shape(config.torso, &obs, config.torso.min_side())?;
                atari_torsos::NatureTorso::init(varmap, image, &mut rng, device)?
            }
            Torso::Impala => {
                let image = image_shape(config.torso, &obs, config.torso.min_side())?;
                atari_torsos::ImpalaTorso::init(varmap, image, &mut rng, device)?
            }
        };
        let n_out = match action {
            ActionKind::Categorical(n) | ActionKind::Gaussian(n) => n,
        };
        if n_out == 0 {
            return Err(PolicyError::Config("action space is empty".into()));
        }
        let fan_in = match config.core {
            Core::None => fan_in,
            Core::Lstm => {
                lstm_core::LstmCore::init(varmap, fan_in, config.core_size, action, &mut rng, device)?;
                config.core_size
            }
        };
        init_linear(varmap, "policy", fan_in, n_out, &mut rng, device)?;
        init_linear(varmap, "value", fan_in, 1, &mut rng, device)?;
        if let ActionKind::Gaussian(dim) = action {
            let log_std = Tensor::full(config.initial_log_std, dim, device)?;
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| PolicyError::Weights("variable map lock poisoned".into()))?;
            data.insert("log_std".to_string(), Var::from_tensor(&log_std)?);
        }
        Self::build(VarBuilder::from_varmap(varmap, DType::F32, device), obs, action, config)
    }

    /// An inference network from safetensors bytes (as broadcast by the
    /// learner); the tensors' names and shapes must fit `config`.
    pub fn from_safetensors(
        bytes: &[u8],
        obs: impl Into<ObservationShape>,
        action: ActionKind,
        config: &NetConfig,
        device: &Device,
    ) -> Result<Self> {
        let obs = obs.into();
        if config.torso != Torso::Mlp {
            // A shape the torso cannot take is the config's error, not the
            // weights'.
            image_shape(config.torso, &obs, config.torso.min_side())?;
        }
        let tensors = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| PolicyError::Weights(format!("not valid safetensors: {e}")))?;
        Self::build(
            VarBuilder::from_tensors(tensors, DType::F32, device),
            obs,
            action,
            config,
        )
        .map_err(|e| PolicyError::Weights(format!("do not fit the configured network: {e}")))
    }

    fn build(vb: VarBuilder, obs: ObservationShape, action: ActionKind, config: &NetConfig) -> Result<Self> {
        let obs_dim = obs.flat_dim();
        let (torso, fan_in) = match config.torso {
            Torso::Mlp => {
                let mut layers = Vec::with_capacity(config.hidden.len());
                let mut fan_in = obs_dim;
                for (i, &h) in config.hidden.iter().enumerate() {
                    layers.push(candle_nn::linear(fan_in, h, vb.pp(format!("torso.{i}")))?);
                    fan_in = h;
                }
                (TorsoLayers::Mlp(layers), fan_in)
            }
            Torso::Minatar => {
                let (height, width, channels) = image_shape(config.torso, &obs, MINATAR_KERNEL)?;
                let conv = unfolded_conv::UnfoldedConv2d::build(
                    vb.pp("torso.conv"),
                    channels,
                    MINATAR_FILTERS,
                    MINATAR_KERNEL,
                    1,
                    0,
                )?;
                let conv_out = MINATAR_FILTERS * (height - MINATAR_KERNEL + 1) * (width - MINATAR_KERNEL + 1);
                let fc = candle_nn::linear(conv_out, MINATAR_HIDDEN, vb.pp("torso.fc"))?;
                let layers = TorsoLayers::Minatar {
                    conv,
                    fc,
                    height,
                    width,
                    channels,
                };
                (layers, MINATAR_HIDDEN)
            }
            Torso::Nature => {
                let image = image_shape(config.torso, &obs, config.torso.min_side())?;
                let (torso, out) = atari_torsos::NatureTorso::build(vb.clone(), image)?;
                (TorsoLayers::Nature(torso), out)
            }
            Torso::Impala => {
                let image = image_shape(config.torso, &obs, config.torso.min_side())?;
                let (torso, out) = atari_torsos::ImpalaTorso::build(vb.clone(), image)?;
                (TorsoLayers::Impala(torso), out)
            }
        };
        let n_out = match action {
            ActionKind::Categorical(n) | ActionKind::Gaussian(n) => n,
        };
        let (core, fan_in) = match config.core {
            Core::None => (None, fan_in),
            Core::Lstm => (
                Some(lstm_core::LstmCore::build(
                    vb.clone(),
                    fan_in,
                    config.core_size,
                    action,
                )?),
                config.core_size,
            ),
        };
        let policy_head = candle_nn::linear(fan_in, n_out, vb.pp("policy"))?;
        let value_head = candle_nn::linear(fan_in, 1, vb.pp("value"))?;
        let log_std = match action {
            ActionKind::Gaussian(dim) => Some(vb.get(dim, "log_std")?),
            ActionKind::Categorical(_) => None,
        };
        Ok(PolicyNet {
            torso,
            core,
            policy_head,
            value_head,
            log_std,
            activation: config.activation,
            obs_shape: obs,
            obs_dim,
            action,
        })
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// The shape of one observation the network was built for.
    pub fn obs_shape(&self) -> &ObservationShape {
        &self.obs_shape
    }

    pub fn action_kind(&self) -> ActionKind {
        self.action
    }

    /// S, the values of one actor's recurrent state (0: no core).
    pub fn recurrent_state_size(&self) -> usize {
        self.core.as_ref().map_or(0, lstm_core::LstmCore::state_size)
    }

    /// The recurrent core, if the network has one.
    pub fn core(&self) -> Option<&lstm_core::LstmCore> {
        self.core.as_ref()
    }

    /// The policy and value for `obs` (`[N, obs_dim]`) of a feed-forward
    /// network (a recurrent one needs [`PolicyNet::forward_step`]).
    pub fn forward(&self, obs: &Tensor) -> Result<PolicyOutput> {
        if self.core.is_some() {
            return Err(PolicyError::Config(
                "this network has a recurrent core: it needs the state (forward_step)".into(),
            ));
        }
        let h = self.features(obs)?;
        self.heads(&h)
    }

    /// One step of a recurrent network: the policy and value for `obs`
    /// (`[N, obs_dim]`) from `state` (`[N, S]`), and the new `[h, c]`
    /// (`[N, 2H]`; [`lstm_core::LstmCore::next_state`] makes the next
    /// state of it).
    pub fn forward_step(&self, obs: &Tensor, state: &Tensor) -> Result<(PolicyOutput, Tensor)> {
        let core = self
            .core
            .as_ref()
            .ok_or_else(|| PolicyError::Config("forward_step: this network has no recurrent core".into()))?;
        let features = self.features(obs)?;
        let (h, hc) = core.step(&features, state)?;
        Ok((self.heads(&h)?, hc))
    }

    /// The network over B unrolls of T steps, as the actors ran it:
    /// outputs for x_0 … x_T (`(T+1)·B` rows, time-major), and V of each
    /// step's final observation where one is given (`[T, B]`, zeros where
    /// no step at that t was truncated). A feed-forward network is one
    /// batched pass; a recurrent one steps its core from
    /// `initial_state`, carrying each step's action and reward into the
    /// state and resetting it after a step that ended an episode, exactly
    /// as [`lstm_core::LstmCore::next_state`] does on the actors.
    pub fn forward_unroll(&self, unroll: &UnrollInputs<'_>) -> Result<(PolicyOutput, Option<Tensor>)> {
        let (t1, b, d) = unroll.observations.dims3()?;
        let t = t1.saturating_sub(1);
        let Some(core) = &self.core else {
            let out = self.forward(&unroll.observations.reshape((t1 * b, d))?)?;
            let finals = match unroll.final_observations {
                Some(f) => Some(self.forward(&f.reshape((t * b, d))?)?.value.reshape((t, b))?),
                None => None,
            };
            return Ok((out, finals));
        };
        if t1 == 0 {
            return Err(PolicyError::Config(
                "forward_unroll: no observations (T + 1 = 0)".into(),
            ));
        }
        let state0 = unroll.initial_state.ok_or_else(|| {
            PolicyError::Config("a recurrent network needs each unroll's initial_recurrent_state".into())
        })?;
        let mut state = state0.clone();
        let (mut heads, mut values, mut finals) = (Vec::with_capacity(t1), Vec::with_capacity(t1), Vec::new());
        let zeros = Tensor::zeros(b, DType::F32, unroll.observations.device())?;
        for step in 0..t1 {
            let (out, hc) = self.forward_step(&unroll.observations.get(step)?, &state)?;
            heads.push(out.policy);
            values.push(out.value);
            if step == t {
                break;
            }
            let (action, reward) = (unroll.actions.get(step)?, unroll.rewards.get(step)?);
            if let Some(f) = unroll.final_observations {
                // V(final observation) from the state the episode would
                // have continued with.
                let carried = core.next_state(&hc, &action, &reward, &zeros)?;
                finals.push(self.forward_step(&f.get(step)?, &carried)?.0.value);
            }
            state = core.next_state(&hc, &action, &reward, &unroll.dones.get(step)?)?;
        }
        // Every step's head is of the network's one kind: concatenate its
        // per-step tensors along the rows.
        let rows = |part: fn(&PolicyParams) -> &Tensor| -> Result<Tensor> {
            Ok(Tensor::cat(&heads.iter().map(part).collect::<Vec<_>>(), 0)?)
        };
        let policy = match &heads[0] {
            PolicyParams::Logits(_) => PolicyParams::Logits(rows(PolicyParams::head)?),
            PolicyParams::Gaussian { log_std, .. } => PolicyParams::Gaussian {
                mean: rows(PolicyParams::head)?,
                log_std: log_std.clone(),
            },
        };
        let value = Tensor::cat(&values, 0)?;
        let finals = if finals.is_empty() {
            None
        } else {
            Some(Tensor::stack(&finals, 0)?)
        };
        Ok((PolicyOutput { policy, value }, finals))
    }

    /// The torso's features for `obs` (`[N, obs_dim]`).
    fn features(&self, obs: &Tensor) -> Result<Tensor> {
        let dims = obs.dims();
        if dims.len() != 2 || dims[1] != self.obs_dim {
            return Err(PolicyError::Config(format!(
                "observations have shape {dims:?}, the network expects [N, {}]",
                self.obs_dim
            )));
        }
        Ok(match &self.torso {
            TorsoLayers::Mlp(layers) => {
                let mut h = obs.clone();
                for layer in layers {
                    h = layer.forward(&h)?;
                    h = match self.activation {
                        Activation::Relu => h.relu()?,
                        Activation::Tanh => h.tanh()?,
                    };
                }
                h
            }
            TorsoLayers::Minatar {
                conv,
                fc,
                height,
                width,
                channels,
            } => {
                // HWC rows to [N, H, W, C]; the convolution reads and
                // writes channels last, so its output flattens
                // position-major, `(y·ow + x)·filters + filter` (a
                // permutation of PyTorch's CHW `flatten`, saving a transpose).
                let x = obs.reshape((dims[0], *height, *width, *channels))?;
                let x = conv.forward_relu(&x)?.flatten_from(1)?;
                fc.forward(&x)?.relu()?
            }
            TorsoLayers::Nature(torso) => torso.forward(obs)?,
            TorsoLayers::Impala(torso) => torso.forward(obs)?,
        })
    }

    /// Both heads over the features `h`.
    fn heads(&self, h: &Tensor) -> Result<PolicyOutput> {
        let h = h.clone();
        let head = self.policy_head.forward(&h)?;
        let value = self.value_head.forward(&h)?.squeeze(D::Minus1)?;
        let policy = match &self.log_std {
            None => PolicyParams::Logits(head),
            Some(log_std) => PolicyParams::Gaussian {
                mean: head,
                log_std: log_std.clone(),
            },
        };
        Ok(PolicyOutput { policy, value })
    }

    /// Serializes every variable of `varmap` (a trained network's weights)
    /// to safetensors bytes, names sorted.
    pub fn to_safetensors(varmap: &VarMap) -> Result<Vec<u8>> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| PolicyError::Weights("variable map lock poisoned".into()))?;
        let mut tensors: Vec<(String, Tensor)> = data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        safetensors::serialize(&map, None).map_err(|e| PolicyError::Weights(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(n: usize, d: usize) -> Tensor {
        Tensor::arange(0f32, (n * d) as f32, &Device::Cpu)
            .unwrap()
            .reshape((n, d))
            .unwrap()
            .affine(0.01, -0.1)
            .unwrap()
    }

    #[test]
    fn categorical_net_shapes_and_probabilities() {
        let vm = VarMap::new();
        let net = PolicyNet::init(
            &vm,
            4,
            ActionKind::Categorical(3),
            &NetConfig::default(),
            1,
            &Device::Cpu,
        )
        .unwrap();
        let out = net.forward(&obs(5, 4)).unwrap();
        assert_eq!(out.value.dims(), &[5]);
        let PolicyParams::Logits(logits) = &out.policy else {
            panic!("categorical")
        };
        assert_eq!(logits.dims(), &[5, 3]);
        // log-probs of all actions sum (in probability) to one.
        let total: f32 = (0..3u32)
            .map(|a| {
                let acts = Tensor::full(a, 5, &Device::Cpu).unwrap();
                out.policy
                    .log_prob(&acts)
                    .unwrap()
                    .exp()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0]
            })
            .sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        let ent = out.policy.entropy().unwrap().to_vec1::<f32>().unwrap();
        assert!(ent.iter().all(|e| *e > 0.0 && *e <= 3f32.ln() + 1e-5), "{ent:?}");
        assert!(net.forward(&obs(5, 3)).is_err(), "wrong observation width");
    }

    #[test]
    fn gaussian_log_prob_and_entropy_match_the_formulas() {
        let log_std = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        let mean = Tensor::new(&[[0.0f32, 1.0]], &Device::Cpu).unwrap();
        let p = PolicyParams::Gaussian { mean, log_std };
        let a = Tensor::new(&[[1.0f32, 0.5]], &Device::Cpu).unwrap();
        let got = p.log_prob(&a).unwrap().to_vec1::<f32>().unwrap()[0];
        let want: f64 = [(1.0f64, 0.0f64, 0.5f64), (0.5, 1.0, -1.0)]
            .iter()
            .map(|(x, m, ls)| -(x - m).powi(2) / (2.0 * (2.0 * ls).exp()) - ls - LOG_SQRT_2PI)
            .sum();
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
        let ent = p.entropy().unwrap().to_vec1::<f32>().unwrap()[0];
        let want_ent = (0.5 + LOG_SQRT_2PI + 0.5) + (0.5 + LOG_SQRT_2PI - 1.0);
        assert!((f64::from(ent) - want_ent).abs() < 1e-5);
    }

    #[test]
    fn weights_round_trip_through_safetensors() {
        let vm = VarMap::new();
        let cfg = NetConfig {
            hidden: vec![8, 8],
            ..Default::default()
        };
        let net = PolicyNet::init(&vm, 3, ActionKind::Gaussian(2), &cfg, 7, &Device::Cpu).unwrap();
        let bytes = PolicyNet::to_safetensors(&vm).unwrap();
        let copy = PolicyNet::from_safetensors(&bytes, 3, ActionKind::Gaussian(2), &cfg, &Device::Cpu).unwrap();
        let (a, b) = (net.forward(&obs(4, 3)).unwrap(), copy.forward(&obs(4, 3)).unwrap());
        assert_eq!(a.value.to_vec1::<f32>().unwrap(), b.value.to_vec1::<f32>().unwrap());
        // Same seed, same weights; another seed, other weights.
        let vm2 = VarMap::new();
        PolicyNet::init(&vm2, 3, ActionKind::Gaussian(2), &cfg, 7, &Device::Cpu).unwrap();
        assert_eq!(PolicyNet::to_safetensors(&vm2).unwrap(), bytes);
        let vm3 = VarMap::new();
        PolicyNet::init(&vm3, 3, ActionKind::Gaussian(2), &cfg, 8, &Device::Cpu).unwrap();
        assert_ne!(PolicyNet::to_safetensors(&vm3).unwrap(), bytes);
        // Bytes that are not safetensors, or do not fit, are clear errors.
        let e = PolicyNet::from_safetensors(b"garbage", 3, ActionKind::Gaussian(2), &cfg, &Device::Cpu)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not valid safetensors"), "{e}");
        let e = PolicyNet::from_safetensors(&bytes, 5, ActionKind::Gaussian(2), &cfg, &Device::Cpu)
            .err()
            .unwrap();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }

    #[test]
    fn minatar_torso_reads_hwc_images() {
        let cfg = NetConfig {
            torso: Torso::Minatar,
            ..Default::default()
        };
        let vm = VarMap::new();
        let shape = vec![10, 10, 4];
        let net = PolicyNet::init(&vm, shape.clone(), ActionKind::Categorical(3), &cfg, 3, &Device::Cpu).unwrap();
        assert_eq!(net.obs_dim(), 400);
        {
            let data = vm.data().lock().unwrap();
            assert_eq!(data["torso.conv.weight"].as_tensor().dims(), &[16, 4, 3, 3]);
            assert_eq!(data["torso.fc.weight"].as_tensor().dims(), &[128, 16 * 8 * 8]);
        }
        let x = obs(6, 400);
        let out = net.forward(&x).unwrap();
        assert_eq!(out.value.dims(), &[6]);

        // The first layer is a 3x3 convolution over HWC cells: a one-cell
        // image at (y 0, x 0, c 2) changes the conv output at (0, 0) only,
        // which the network sees through the same weights whatever the
        // batch row.
        let conv_w = vm.data().lock().unwrap()["torso.conv.weight"].as_tensor().clone();
        let conv_b = vm.data().lock().unwrap()["torso.conv.bias"].as_tensor().clone();
        // The torso's convolution equals candle's conv2d on NCHW, read
        // channels last (position-major once flattened), on random images.
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let imgs = Tensor::rand(0f32, 1f32, (3, 10, 10, 4), &Device::Cpu).unwrap();
        let ours = unfolded_conv::UnfoldedConv2d::build(vb.pp("torso.conv"), 4, 16, 3, 1, 0)
            .unwrap()
            .forward(&imgs)
            .unwrap();
        assert_eq!(ours.dims(), &[3, 8, 8, 16]);
        let reference = candle_nn::Conv2d::new(conv_w.clone(), Some(conv_b), candle_nn::Conv2dConfig::default())
            .forward(&imgs.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap())
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        let diff: f32 = (ours - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
        let mut img = vec![0f32; 400];
        img[2] = 1.0;
        let one = Tensor::from_vec(img, (1, 400), &Device::Cpu).unwrap();
        let chw = one
            .reshape((1, 10, 10, 4))
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        let conv = candle_nn::Conv2d::new(conv_w, None, candle_nn::Conv2dConfig::default());
        let y = conv.forward(&chw).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let nonzero: Vec<usize> = y
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(i, _)| i)
            .collect();
        // Output channel k at (0, 0) is index k·64: weight [k, 2, 0, 0].
        assert_eq!(nonzero.len(), 16, "{nonzero:?}");
        assert!(nonzero.iter().all(|i| i % 64 == 0), "{nonzero:?}");

        // Gradients reach the convolution.
        let loss = out.value.sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let conv_var = vm.data().lock().unwrap()["torso.conv.weight"].clone();
        let g = grads.get(conv_var.as_tensor()).expect("conv weight gradient");
        let g_norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(g_norm > 0.0 && g_norm.is_finite(), "{g_norm}");

        // Round trip, and the same shape is needed to load the weights.
        let bytes = PolicyNet::to_safetensors(&vm).unwrap();
        let copy = PolicyNet::from_safetensors(&bytes, shape, ActionKind::Categorical(3), &cfg, &Device::Cpu).unwrap();
        let back = copy.forward(&x).unwrap();
        assert_eq!(
            out.value.to_vec1::<f32>().unwrap(),
            back.value.to_vec1::<f32>().unwrap()
        );
        let e = PolicyNet::from_safetensors(&bytes, vec![10, 10, 6], ActionKind::Categorical(3), &cfg, &Device::Cpu)
            .err()
            .unwrap();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }

    #[test]
    fn a_torso_that_does_not_fit_the_observation_names_model_torso() {
        let cfg = NetConfig {
            torso: Torso::Minatar,
            ..Default::default()
        };
        let e = PolicyNet::init(&VarMap::new(), 4, ActionKind::Categorical(2), &cfg, 0, &Device::Cpu)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "policy network: model.torso = \"minatar\" needs observations of shape [height, width, channels] \
             with height and width at least 3; the env's observations have shape [4]"
        );
        let e = PolicyNet::from_safetensors(b"x", vec![2, 10, 4], ActionKind::Categorical(2), &cfg, &Device::Cpu)
            .err()
            .unwrap();
        assert!(e.to_string().contains("model.torso"), "{e}");
        let parsed: NetConfig = toml::from_str("torso = \"minatar\"").unwrap();
        assert_eq!(parsed.torso, Torso::Minatar);
        assert!(toml::from_str::<NetConfig>("torso = \"resnet\"").is_err());
    }
}
