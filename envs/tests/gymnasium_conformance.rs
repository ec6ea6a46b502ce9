//! Gymnasium 1.4 conformance: every recorded episode in `tests/fixtures/`
//! (recorded from `gymnasium.make(id)`, see tests/fixtures/REFERENCE.md) is
//! replayed two ways and must match exactly — every observation, flag and
//! episode length, and every reward within 1e-9:
//!
//! 1. from the recorded internal state (`set_state`), checking the internal
//!    state after every step too;
//! 2. through the registry (`make(id)` + `reset(seed)`), which also checks
//!    that our seeding reproduces Gymnasium's initial state and that the
//!    time limit truncates on the recorded step.

use cml_envs::classic::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};
use cml_envs::{make, Action, Env, Params};
use serde::Deserialize;

#[derive(Deserialize)]
struct Recording {
    env_id: String,
    max_episode_steps: u64,
    episodes: Vec<Episode>,
}

#[derive(Deserialize)]
struct Episode {
    seed: u64,
    actions_within_bounds: bool,
    initial_state: Vec<f64>,
    initial_state_dtype: String,
    initial_obs: Vec<f64>,
    actions: Vec<serde_json::Value>,
    steps: Vec<RecordedStep>,
}

#[derive(Deserialize)]
struct RecordedStep {
    obs: Vec<f64>,
    reward: f64,
    terminated: bool,
    truncated: bool,
    state: Vec<f64>,
}

fn load(id: &str) -> Recording {
    let path = format!("{}/../tests/fixtures/{id}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let rec: Recording = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    assert_eq!(rec.env_id, id);
    assert!(!rec.episodes.is_empty());
    rec
}

/// The float32 values of a recorded observation (written as doubles).
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

/// Owned form of a recorded action.
enum Act {
    Discrete(i64),
    Continuous([f32; 1]),
}

impl Act {
    fn from_json(v: &serde_json::Value, discrete: bool) -> Act {
        if discrete {
            Act::Discrete(v.as_i64().expect("discrete action is an integer"))
        } else {
            Act::Continuous([v.as_f64().expect("continuous action is a number") as f32])
        }
    }
    fn as_action(&self) -> Action<'_> {
        match self {
            Act::Discrete(a) => Action::Discrete(*a),
            Act::Continuous(a) => Action::Continuous(a),
        }
    }
}

fn check_reward(id: &str, ep: usize, t: usize, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-9,
        "{id} episode {ep} step {t}: reward {got:e} != {want:e} (diff {:e})",
        (got - want).abs()
    );
}

/// Replays every episode from its recorded initial state on a raw env, built
/// by `new_env` and put in the state by `set_state`; `get_state` reads it.
fn replay_from_state<E: Env>(
    id: &str,
    new_env: impl Fn() -> E,
    set_state: impl Fn(&mut E, &[f64], &str),
    get_state: impl Fn(&E) -> Vec<f64>,
) -> usize {
    let rec = load(id);
    let mut checked = 0;
    for (e, ep) in rec.episodes.iter().enumerate() {
        let mut env = new_env();
        set_state(&mut env, &ep.initial_state, &ep.initial_state_dtype);
        let discrete = env.action_space().is_discrete();
        let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
        assert_eq!(ep.actions.len(), ep.steps.len());
        for (t, (a, want)) in ep.actions.iter().zip(&ep.steps).enumerate() {
            let act = Act::from_json(a, discrete);
            let step = env
                .step(act.as_action(), &mut obs)
                .unwrap_or_else(|err| panic!("{id} ep {e} step {t}: {err}"));
            assert_eq!(obs, f32s(&want.obs), "{id} episode {e} step {t}: observation");
            check_reward(id, e, t, step.reward, want.reward);
            assert_eq!(
                step.terminated, want.terminated,
                "{id} episode {e} step {t}: terminated"
            );
            // A raw env never truncates; the recording truncates exactly at the limit.
            assert!(!step.truncated);
            assert_eq!(
                want.truncated,
                t as u64 + 1 >= rec.max_episode_steps,
                "{id} episode {e} step {t}"
            );
            assert_eq!(get_state(&env), want.state, "{id} episode {e} step {t}: internal state");
            checked += 1;
        }
        let last = ep.steps.last().expect("episodes are not empty");
        assert!(last.terminated || last.truncated, "{id} episode {e} ends");
    }
    checked
}

/// Replays every episode through the registry: `make(id)`, `reset(seed)`,
/// then the recorded actions; the episode must end on the recorded step.
fn replay_from_seed(id: &str) -> usize {
    let rec = load(id);
    let mut checked = 0;
    for (e, ep) in rec.episodes.iter().enumerate() {
        let mut env = make(id, &Params::new()).expect("built-in env");
        assert_eq!(env.max_episode_steps(), Some(rec.max_episode_steps));
        let discrete = env.action_space().is_discrete();
        let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
        env.reset(Some(ep.seed), &mut obs).expect("reset");
        assert_eq!(
            obs,
            f32s(&ep.initial_obs),
            "{id} episode {e}: initial observation for seed {}",
            ep.seed
        );
        for (t, (a, want)) in ep.actions.iter().zip(&ep.steps).enumerate() {
            let act = Act::from_json(a, discrete);
            let step = env
                .step(act.as_action(), &mut obs)
                .unwrap_or_else(|err| panic!("{id} ep {e} step {t}: {err}"));
            assert_eq!(obs, f32s(&want.obs), "{id} episode {e} step {t}: observation");
            check_reward(id, e, t, step.reward, want.reward);
            assert_eq!(
                step.terminated, want.terminated,
                "{id} episode {e} step {t}: terminated"
            );
            assert_eq!(step.truncated, want.truncated, "{id} episode {e} step {t}: truncated");
            assert_eq!(
                step.done(),
                t + 1 == ep.steps.len(),
                "{id} episode {e}: ends on step {t}?"
            );
            checked += 1;
        }
    }
    checked
}

fn arr<const N: usize>(v: &[f64]) -> [f64; N] {
    v.try_into().expect("state has the env's length")
}

#[test]
fn cartpole_matches_gymnasium() {
    let n = replay_from_state(
        CartPole::ID,
        CartPole::default,
        |env, s, _| env.set_state(arr(s)),
        |env| env.state().expect("state").to_vec(),
    );
    assert!(n > 1000);
    assert_eq!(replay_from_seed(CartPole::ID), n);
}

#[test]
fn acrobot_matches_gymnasium() {
    let n = replay_from_state(
        Acrobot::ID,
        Acrobot::default,
        |env, s, dtype| {
            assert_eq!(dtype, "float32");
            env.set_state_f32(arr::<4>(s).map(|x| x as f32));
        },
        |env| env.state().expect("state").to_vec(),
    );
    assert!(n > 1000);
    assert_eq!(replay_from_seed(Acrobot::ID), n);
}

#[test]
fn mountain_car_matches_gymnasium() {
    let n = replay_from_state(
        MountainCar::ID,
        MountainCar::default,
        |env, s, _| env.set_state(arr(s)),
        |env| env.state().expect("state").to_vec(),
    );
    assert!(n > 500);
    assert_eq!(replay_from_seed(MountainCar::ID), n);
}

#[test]
fn mountain_car_continuous_matches_gymnasium() {
    let n = replay_from_state(
        MountainCarContinuous::ID,
        MountainCarContinuous::default,
        |env, s, dtype| {
            assert_eq!(dtype, "float64");
            env.set_state(arr(s));
        },
        |env| env.state().expect("state").to_vec(),
    );
    assert!(n > 3000);
    assert_eq!(replay_from_seed(MountainCarContinuous::ID), n);
    // The fixture includes out-of-bounds actions (clipped for the dynamics,
    // unclipped in the reward).
    assert!(load(MountainCarContinuous::ID)
        .episodes
        .iter()
        .any(|e| !e.actions_within_bounds));
}

#[test]
fn pendulum_matches_gymnasium() {
    let n = replay_from_state(
        Pendulum::ID,
        Pendulum::default,
        |env, s, _| env.set_state(arr(s)),
        |env| env.state().expect("state").to_vec(),
    );
    assert_eq!(n, 1000);
    assert_eq!(replay_from_seed(Pendulum::ID), n);
    assert!(load(Pendulum::ID).episodes.iter().any(|e| !e.actions_within_bounds));
}

/// Every recorded step, started from the state recorded just before it
/// (one-step tests): catches a difference that a whole episode could hide,
/// and checks MountainCarContinuous from a float32 state.
#[test]
fn single_steps_from_recorded_states() {
    let mcc = load(MountainCarContinuous::ID);
    let mut count = 0;
    for ep in &mcc.episodes {
        for w in ep.steps.windows(2).zip(&ep.actions[1..]) {
            let ([before, after], a) = (w.0, w.1) else {
                unreachable!()
            };
            let mut env = MountainCarContinuous::default();
            env.set_state_f32(arr::<2>(&before.state).map(|x| x as f32));
            let mut obs = [0.0f32; 2];
            let action = [a.as_f64().expect("number") as f32];
            let step = env.step(Action::Continuous(&action), &mut obs).expect("step");
            assert_eq!(obs.to_vec(), f32s(&after.obs));
            assert!((step.reward - after.reward).abs() <= 1e-9);
            count += 1;
        }
    }
    assert!(count > 3000);
}
