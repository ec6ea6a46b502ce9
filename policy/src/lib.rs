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
//! batches to `N = T·B`); outputs `[N, …]`.

pub mod q_values;

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

/// The network's shape, from the config (`[model]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Hidden layer sizes of the MLP torso.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
    /// Initial log standard deviation of the Gaussian head (Box actions).
    #[serde(default)]
    pub initial_log_std: f32,
}

impl NetConfig {
    /// `"key: reason"` for the first bad value (`[model]`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.hidden.contains(&0) {
            return Err("hidden: layer sizes must be at least 1".to_string());
        }
        if !(self.initial_log_std.is_finite() && self.initial_log_std.abs() <= 20.0) {
            return Err("initial_log_std: must be a number in [-20, 20]".to_string());
        }
        Ok(())
    }
}

fn default_hidden() -> Vec<usize> {
    vec![64, 64]
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            hidden: default_hidden(),
            activation: Activation::Relu,
            initial_log_std: 0.0,
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

/// MLP torso, an action head (categorical or Gaussian) and a value head.
pub struct PolicyNet {
    torso: Vec<Linear>,
    policy_head: Linear,
    value_head: Linear,
    log_std: Option<Tensor>,
    activation: Activation,
    obs_dim: usize,
    action: ActionKind,
}

/// PyTorch's `nn.Linear` initialisation: weight and bias uniform in
/// ±1/√fan_in, drawn from a seeded generator so runs are reproducible.
fn init_linear(
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
        obs_dim: usize,
        action: ActionKind,
        config: &NetConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
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
        let mut fan_in = obs_dim;
        for (i, &h) in config.hidden.iter().enumerate() {
            init_linear(varmap, &format!("torso.{i}"), fan_in, h, &mut rng, device)?;
            fan_in = h;
        }
        let n_out = match action {
            ActionKind::Categorical(n) | ActionKind::Gaussian(n) => n,
        };
        if n_out == 0 {
            return Err(PolicyError::Config("action space is empty".into()));
        }
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
        Self::build(
            VarBuilder::from_varmap(varmap, DType::F32, device),
            obs_dim,
            action,
            config,
        )
    }

    /// An inference network from safetensors bytes (as broadcast by the
    /// learner); the tensors' names and shapes must fit `config`.
    pub fn from_safetensors(
        bytes: &[u8],
        obs_dim: usize,
        action: ActionKind,
        config: &NetConfig,
        device: &Device,
    ) -> Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| PolicyError::Weights(format!("not valid safetensors: {e}")))?;
        Self::build(
            VarBuilder::from_tensors(tensors, DType::F32, device),
            obs_dim,
            action,
            config,
        )
        .map_err(|e| PolicyError::Weights(format!("do not fit the configured network: {e}")))
    }

    fn build(vb: VarBuilder, obs_dim: usize, action: ActionKind, config: &NetConfig) -> Result<Self> {
        let mut torso = Vec::with_capacity(config.hidden.len());
        let mut fan_in = obs_dim;
        for (i, &h) in config.hidden.iter().enumerate() {
            torso.push(candle_nn::linear(fan_in, h, vb.pp(format!("torso.{i}")))?);
            fan_in = h;
        }
        let n_out = match action {
            ActionKind::Categorical(n) | ActionKind::Gaussian(n) => n,
        };
        let policy_head = candle_nn::linear(fan_in, n_out, vb.pp("policy"))?;
        let value_head = candle_nn::linear(fan_in, 1, vb.pp("value"))?;
        let log_std = match action {
            ActionKind::Gaussian(dim) => Some(vb.get(dim, "log_std")?),
            ActionKind::Categorical(_) => None,
        };
        Ok(PolicyNet {
            torso,
            policy_head,
            value_head,
            log_std,
            activation: config.activation,
            obs_dim,
            action,
        })
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    pub fn action_kind(&self) -> ActionKind {
        self.action
    }

    /// The policy and value for `obs` (`[N, obs_dim]`).
    pub fn forward(&self, obs: &Tensor) -> Result<PolicyOutput> {
        let dims = obs.dims();
        if dims.len() != 2 || dims[1] != self.obs_dim {
            return Err(PolicyError::Config(format!(
                "observations have shape {dims:?}, the network expects [N, {}]",
                self.obs_dim
            )));
        }
        let mut h = obs.clone();
        for layer in &self.torso {
            h = layer.forward(&h)?;
            h = match self.activation {
                Activation::Relu => h.relu()?,
                Activation::Tanh => h.tanh()?,
            };
        }
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
}
