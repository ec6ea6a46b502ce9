//! On an on-policy batch the learner recomputes exactly the behaviour
//! log-probabilities the actors sent (issue 12, item 4): the actors' worker
//! acts on MinAtar Breakout with the learner's published weights, the
//! unrolls go through the learner's own wire-to-batch conversion, and the
//! learner's network gives log π(a_t | x_t) for every step within 1e-5 of
//! the actor's — for the MLP torso and for the MinAtar CNN torso (whose
//! HWC-to-CHW conversion both sides must make the same way), and for the
//! Nature and IMPALA torsos on a pixel env whose `u8` frames travel as
//! bytes.

use candle_core::Device;
use cml_actors::{policy_from_weights, Worker};
use cml_envs::{Action, Env, EnvError, Space, Step, VecEnv};
use cml_learner::{ImpalaLearner, LearnerConfig, SampledUnrolls, UnrollBatch};
use cml_policy::{ActionKind, Core, NetConfig, PolicyParams, Torso, UnrollInputs};

/// A toy pixel env: `[36, 36, 3]` u8 frames of a moving, action-shifted
/// pattern; episodes of 4 to 9 steps.
struct Pixels {
    observation_space: Space,
    action_space: Space,
    t: u64,
    episode: u64,
    shift: u64,
}

const SIDE: usize = 36;

impl Pixels {
    fn new() -> Pixels {
        Pixels {
            observation_space: Space::u8_box(0, 255, vec![SIDE, SIDE, 3]),
            action_space: Space::Discrete(3),
            t: 0,
            episode: 0,
            shift: 0,
        }
    }

    fn draw(&self, obs: &mut [f32]) {
        for (i, v) in obs.iter_mut().enumerate() {
            let i = i as u64;
            *v = ((i * 7 + self.t * 31 + self.shift * 13 + (i / 108) * self.episode) % 256) as f32;
        }
    }
}

impl Env for Pixels {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn action_space(&self) -> &Space {
        &self.action_space
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        self.episode = seed.unwrap_or(self.episode + 1);
        self.t = 0;
        self.draw(obs);
        Ok(())
    }
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let Action::Discrete(a) = action else {
            return Err(EnvError::Other {
                env: "Pixels".into(),
                message: "discrete actions".into(),
            });
        };
        self.t += 1;
        self.shift += a as u64;
        self.draw(obs);
        Ok(Step {
            reward: a as f64,
            terminated: self.t >= 4 + self.episode % 6,
            truncated: false,
        })
    }
}

fn check(torso: Torso) {
    check_with(torso, Core::None);
}

fn check_with(torso: Torso, core: Core) {
    let (k, t) = (8usize, 12u32);
    let net = NetConfig {
        torso,
        hidden: vec![64],
        core,
        core_size: 32,
        ..NetConfig::default()
    };
    let pixels = matches!(torso, Torso::Nature | Torso::Impala);
    let venv: Box<dyn cml_envs::VectorEnv> = if pixels {
        Box::new(VecEnv::new((0..k).map(|_| Pixels::new()).collect()).unwrap())
    } else {
        cml_envs::make_vec("MinAtar/Breakout-v1", &cml_envs::Params::new(), k).unwrap()
    };
    let mut worker = Worker::new(0, venv, t, 0, 21, &net, None).unwrap();
    let d: usize = worker.observation_shape().iter().product();
    assert_eq!(worker.layout().observation_dtype, cml_proto::DType::U8);
    let config = LearnerConfig {
        seed: 9,
        ..LearnerConfig::default()
    };
    let learner = ImpalaLearner::new(worker.observation_shape(), ActionKind::Categorical(3), &net, config).unwrap();
    let layout = worker.layout().clone();
    let policy = policy_from_weights(
        &learner.weights().unwrap(),
        1,
        &layout,
        worker.observation_shape(),
        &net,
    )
    .unwrap();

    let mut chunk = worker.new_chunk();
    // Two chunks: the second starts mid-episode, and Breakout's short random
    // episodes put resets inside the unrolls.
    worker.fill(&policy, &mut chunk).unwrap();
    worker.fill(&policy, &mut chunk).unwrap();
    assert!(
        chunk.frames[4].contains(&1),
        "{torso:?}: an episode ended inside the unrolls"
    );

    let weights = vec![1.0f32; k];
    let sampled = SampledUnrolls {
        layout: &layout,
        count: k,
        frames: &chunk.frames,
        importance_weights: &weights,
    };
    let batch = UnrollBatch::from_sampled(&sampled, &Device::Cpu).unwrap();
    let t = t as usize;
    assert_eq!(batch.observations.dims(), &[t + 1, k, d]);
    if core == Core::Lstm {
        // The second chunk's unrolls start mid-episode: from carried states.
        let state = batch.initial_state.as_ref().expect("initial states").abs().unwrap();
        assert!(
            state.sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.1,
            "{torso:?}: zero initial states"
        );
        assert_eq!(layout.recurrent_state_size, 2 * 32 + 3 + 1);
    }
    // The learner's own pass over the unrolls (for a recurrent core: stepped
    // from each unroll's initial state, reset where episodes ended).
    let dones = (&batch.terminated + &batch.truncated).unwrap();
    let (out, _) = learner
        .net()
        .forward_unroll(&UnrollInputs {
            observations: &batch.observations,
            actions: &batch.actions,
            rewards: &batch.rewards,
            dones: &dones,
            initial_state: batch.initial_state.as_ref(),
            final_observations: None,
        })
        .unwrap();
    let PolicyParams::Logits(logits) = &out.policy else {
        panic!("categorical")
    };
    let first_t = PolicyParams::Logits(logits.narrow(0, 0, t * k).unwrap());
    let actions = batch.actions.reshape(t * k).unwrap();
    let learner_log_probs: Vec<f32> = first_t.log_prob(&actions).unwrap().to_vec1().unwrap();
    let actor_log_probs: Vec<f32> = batch.behaviour_log_probs.reshape(t * k).unwrap().to_vec1().unwrap();
    assert_eq!(learner_log_probs.len(), actor_log_probs.len());
    let mut spread = Vec::new();
    for (i, (l, a)) in learner_log_probs.iter().zip(&actor_log_probs).enumerate() {
        assert!(
            (l - a).abs() <= 1e-5,
            "{torso:?} {core:?}: step {} of unroll {}: learner {l}, actor {a}",
            i / k,
            i % k
        );
        spread.push(*a);
    }
    // Not a constant: the policy's probabilities differ between states.
    spread.sort_by(f32::total_cmp);
    assert!(spread[spread.len() - 1] - spread[0] > 1e-4, "{torso:?}: {spread:?}");
}

#[test]
fn the_learner_recomputes_the_actors_log_probs_mlp() {
    check(Torso::Mlp);
}

#[test]
fn the_learner_recomputes_the_actors_log_probs_minatar_cnn() {
    check(Torso::Minatar);
}

/// The LSTM core: the learner replays it from each unroll's initial state
/// (the state the actor carried over from its previous unroll), feeding the
/// previous action and reward and resetting at the episode ends inside the
/// unroll, and gets the actor's log-probs.
#[test]
fn the_learner_recomputes_the_actors_log_probs_lstm() {
    check_with(Torso::Mlp, Core::Lstm);
    check_with(Torso::Minatar, Core::Lstm);
}

#[test]
fn the_learner_recomputes_the_actors_log_probs_nature_and_impala_on_u8_frames() {
    check(Torso::Nature);
    check(Torso::Impala);
}
