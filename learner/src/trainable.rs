//! [`TrainableNet`]: a network with its named variables and its optimizer,
//! what every algorithm trains (IMPALA's policy, Ape-X's online Q-network).
//! One update is [`TrainableNet::apply`]: backward, global-norm clipping,
//! a refusal of non-finite numbers, the optimizer step.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::{Optimizer, VarMap};
use cml_policy::{ActionKind, NetConfig, ObservationShape, PolicyNet};

use crate::learner::{LearnerError, OptimizerConfig, Result};
use crate::optim::{clip_grad_norm, linear_decay, Adam, NamedVars, OptimizerState, RmsProp};

enum AnyOptimizer {
    RmsProp(RmsProp),
    Adam(Adam),
}

impl AnyOptimizer {
    fn as_state(&self) -> &dyn OptimizerState {
        match self {
            AnyOptimizer::RmsProp(o) => o,
            AnyOptimizer::Adam(o) => o,
        }
    }
}

/// A network, its variables by name (sorted) and its optimizer.
pub struct TrainableNet {
    varmap: VarMap,
    net: PolicyNet,
    vars: NamedVars,
    optimizer: AnyOptimizer,
    initial_lr: f64,
}

impl TrainableNet {
    /// A freshly initialised network (seeded) and its optimizer.
    pub fn new(
        obs: impl Into<ObservationShape>,
        action: ActionKind,
        net: &NetConfig,
        optimizer: OptimizerConfig,
        seed: u64,
        device: &Device,
    ) -> Result<TrainableNet> {
        let varmap = VarMap::new();
        let policy = PolicyNet::init(&varmap, obs, action, net, seed, device)?;
        let vars = named_vars(&varmap)?;
        let (optimizer, initial_lr) = match optimizer {
            OptimizerConfig::Rmsprop(c) => (AnyOptimizer::RmsProp(RmsProp::with_names(vars.clone(), c)?), c.lr),
            OptimizerConfig::Adam(c) => (AnyOptimizer::Adam(Adam::with_names(vars.clone(), c)?), c.lr),
        };
        Ok(TrainableNet {
            varmap,
            net: policy,
            vars,
            optimizer,
            initial_lr,
        })
    }

    pub fn net(&self) -> &PolicyNet {
        &self.net
    }

    /// The weights as safetensors bytes (for the broadcast).
    pub fn weights(&self) -> Result<Vec<u8>> {
        Ok(PolicyNet::to_safetensors(&self.varmap)?)
    }

    /// The parameters by name (sorted).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Optimizer state by name.
    pub fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.optimizer.as_state().state()?)
    }

    /// The checkpoint entries of the network and its optimizer:
    /// `param/NAME` and `optim/NAME`.
    pub fn state_entries(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state: Vec<(String, Tensor)> = self
            .parameters()
            .into_iter()
            .map(|(name, t)| (format!("param/{name}"), t))
            .collect();
        for (name, t) in self.optimizer_state()? {
            state.push((format!("optim/{name}"), t));
        }
        Ok(state)
    }

    /// The learning rate decayed linearly over `env_frames` of
    /// `total_frames` (0: constant), set for the next step; returned.
    pub fn decay_learning_rate(&mut self, env_frames: u64, total_frames: u64) -> f64 {
        let lr = linear_decay(self.initial_lr, env_frames, total_frames);
        match &mut self.optimizer {
            AnyOptimizer::RmsProp(o) => o.set_learning_rate(lr),
            AnyOptimizer::Adam(o) => o.set_learning_rate(lr),
        }
        lr
    }

    /// Checks that `tensors` hold every parameter and optimizer state
    /// tensor (unprefixed names) with its shape, changing nothing.
    pub fn check_restorable(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, current) in self.optimizer_state()? {
            match tensors.get(&name) {
                Some(t) if t.dims() == current.dims() => {}
                Some(t) => {
                    return Err(LearnerError::Batch(format!(
                        "optimizer state `{name}` has shape {:?}, expected {:?}",
                        t.dims(),
                        current.dims()
                    )))
                }
                None => {
                    return Err(LearnerError::Batch(format!(
                        "optimizer state `{name}` is missing (another optimizer?)"
                    )))
                }
            }
        }
        check_parameters(&self.vars, tensors, "parameter")
    }

    /// Restores parameters and optimizer state; everything is checked
    /// before anything is changed.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<()> {
        self.check_restorable(tensors)?;
        set_parameters(&self.vars, tensors, device)?;
        let state: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_device(device)?)))
            .collect::<Result<_>>()?;
        match &mut self.optimizer {
            AnyOptimizer::RmsProp(o) => o.load_state(&state)?,
            AnyOptimizer::Adam(o) => o.load_state(&state)?,
        }
        Ok(())
    }

    /// One update minimizing `loss` (a scalar): backward, clipping to
    /// `max_grad_norm`, the optimizer step. A non-finite loss or gradient
    /// norm is refused and changes nothing. Returns the gradient norm
    /// before clipping.
    pub fn apply(&mut self, loss: &Tensor, max_grad_norm: f64) -> Result<f64> {
        let grads = gradients(loss)?;
        self.step_with(grads, max_grad_norm)
    }

    /// One update whose loss is a sum of `parts` independent terms (a
    /// batch split along B, data parallel): `part_loss(net, i)` builds
    /// part i's loss, which is differentiated on the same thread, each
    /// part on its own thread (the calling thread takes part 0). The
    /// gradients are summed, then clipped and applied as in
    /// [`TrainableNet::apply`]; a part that fails or is not finite fails
    /// the update, which then changes nothing. Returns the gradient norm
    /// before clipping and each part's second value, in part order.
    pub fn apply_parts<R: Send>(
        &mut self,
        parts: usize,
        max_grad_norm: f64,
        part_loss: impl Fn(&PolicyNet, usize) -> Result<(Tensor, R)> + Sync,
    ) -> Result<(f64, Vec<R>)> {
        let net = &self.net;
        let run = |i: usize| -> Result<(GradStore, R)> {
            let (loss, extra) = part_loss(net, i)?;
            Ok((gradients(&loss)?, extra))
        };
        let results: Vec<Result<(GradStore, R)>> = if parts <= 1 {
            vec![run(0)]
        } else {
            let run = &run;
            std::thread::scope(|scope| {
                let others: Vec<_> = (1..parts).map(|i| scope.spawn(move || run(i))).collect();
                let first = run(0);
                std::iter::once(first)
                    .chain(others.into_iter().map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(LearnerError::Batch(
                                "a learner thread panicked (its message is printed above)".into(),
                            ))
                        })
                    }))
                    .collect()
            })
        };
        let mut total: Option<GradStore> = None;
        let mut extras = Vec::with_capacity(results.len());
        for result in results {
            let (mut grads, extra) = result?;
            extras.push(extra);
            match &mut total {
                None => total = Some(grads),
                Some(sum) => {
                    for (_, var) in &self.vars {
                        if let Some(g) = grads.remove(var) {
                            let summed = match sum.get(var) {
                                Some(s) => (s + g)?,
                                None => g,
                            };
                            sum.insert(var, summed);
                        }
                    }
                }
            }
        }
        let grads = total.ok_or_else(|| LearnerError::Batch("an update of no parts".into()))?;
        Ok((self.step_with(grads, max_grad_norm)?, extras))
    }

    /// Clipping and the optimizer step on `grads`; a non-finite gradient
    /// norm is refused and changes nothing.
    fn step_with(&mut self, mut grads: GradStore, max_grad_norm: f64) -> Result<f64> {
        let vars: Vec<Var> = self.vars.iter().map(|(_, v)| v.clone()).collect();
        let grad_norm = clip_grad_norm(&mut grads, &vars, max_grad_norm)?;
        if !grad_norm.is_finite() {
            return Err(LearnerError::NonFinite {
                what: "gradient norm",
                value: grad_norm as f32,
            });
        }
        match &mut self.optimizer {
            AnyOptimizer::RmsProp(o) => o.step(&grads)?,
            AnyOptimizer::Adam(o) => o.step(&grads)?,
        }
        Ok(grad_norm)
    }

    /// A frozen copy of the network (a target network): same config, its
    /// own variables holding the current values.
    pub fn frozen_copy(&self, action: ActionKind, net: &NetConfig, device: &Device) -> Result<FrozenNet> {
        let varmap = VarMap::new();
        let copy = PolicyNet::init(&varmap, self.net.obs_shape(), action, net, 0, device)?;
        let frozen = FrozenNet {
            net: copy,
            vars: named_vars(&varmap)?,
        };
        frozen.copy_from(self)?;
        Ok(frozen)
    }
}

/// A network that is never trained, only overwritten (a target network).
pub struct FrozenNet {
    net: PolicyNet,
    vars: NamedVars,
}

impl FrozenNet {
    pub fn net(&self) -> &PolicyNet {
        &self.net
    }

    /// Overwrites every parameter with `source`'s current values.
    pub fn copy_from(&self, source: &TrainableNet) -> Result<()> {
        for ((name, mine), (source_name, theirs)) in self.vars.iter().zip(&source.vars) {
            if name != source_name {
                return Err(LearnerError::Batch(format!(
                    "target network: parameter `{name}` against `{source_name}`"
                )));
            }
            mine.set(&theirs.as_tensor().detach())?;
        }
        Ok(())
    }

    /// The parameters by name (sorted).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Checks `tensors` hold every parameter with its shape.
    pub fn check_restorable(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        check_parameters(&self.vars, tensors, "target parameter")
    }

    /// Restores the parameters (checked first).
    pub fn restore(&self, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<()> {
        self.check_restorable(tensors)?;
        set_parameters(&self.vars, tensors, device)
    }
}

/// A checkpoint's state with `param/` and `optim/` taken off the names
/// (what [`TrainableNet::restore`] reads); other entries keep theirs.
pub fn unprefixed(state: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    state
        .iter()
        .map(|(k, v)| {
            let name = k
                .strip_prefix("param/")
                .or_else(|| k.strip_prefix("optim/"))
                .unwrap_or(k);
            (name.to_string(), v.clone())
        })
        .collect()
}

/// The gradients of `loss` (a scalar), refused if the loss is not finite.
fn gradients(loss: &Tensor) -> Result<GradStore> {
    let value = loss.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Err(LearnerError::NonFinite { what: "loss", value });
    }
    Ok(loss.backward()?)
}

/// The variables of `varmap` by name, sorted.
fn named_vars(varmap: &VarMap) -> Result<NamedVars> {
    let mut vars: NamedVars = varmap
        .data()
        .lock()
        .map_err(|_| LearnerError::Batch("variable map lock poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

fn check_parameters(vars: &NamedVars, tensors: &HashMap<String, Tensor>, what: &str) -> Result<()> {
    for (name, var) in vars {
        match tensors.get(name) {
            Some(t) if t.dims() == var.dims() => {}
            Some(t) => {
                return Err(LearnerError::Batch(format!(
                    "{what} `{name}` has shape {:?}, the network has {:?}",
                    t.dims(),
                    var.dims()
                )))
            }
            None => return Err(LearnerError::Batch(format!("{what} `{name}` is missing"))),
        }
    }
    Ok(())
}

fn set_parameters(vars: &NamedVars, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<()> {
    for (name, var) in vars {
        let t = tensors
            .get(name)
            .ok_or_else(|| LearnerError::Batch(format!("parameter `{name}` is missing")))?;
        var.set(&t.to_device(device)?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
