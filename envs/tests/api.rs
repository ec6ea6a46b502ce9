//! The env API as users meet it: the registry, time limits, bad input and
//! the vectorized stepper's automatic reset.

use cml_envs::classic::{CartPole, MountainCarContinuous, Pendulum};
use cml_envs::{
    make, make_with_time_limit, register, Action, Env, EnvError, EnvSpec, Params, Registry, Space, Step, VecActions,
    VecEnv, VectorEnv,
};

fn params(text: &str) -> Params {
    text.parse().expect("test params parse")
}

#[test]
fn unknown_id_lists_registered_ids() {
    let err = make("CartPole-v0", &Params::new()).err().expect("unknown id fails");
    let msg = err.to_string();
    assert!(msg.contains("unknown env id `CartPole-v0`"), "{msg}");
    for id in [
        "Acrobot-v1",
        "CartPole-v1",
        "MountainCar-v0",
        "MountainCarContinuous-v0",
        "Pendulum-v1",
    ] {
        assert!(msg.contains(id), "{msg} lists {id}");
    }
}

#[test]
fn out_of_range_discrete_action_names_env_and_action() {
    let mut env = make("CartPole-v1", &Params::new()).expect("make");
    let mut obs = [0.0f32; 4];
    env.reset(Some(0), &mut obs).expect("reset");
    let err = env.step(Action::Discrete(2), &mut obs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CartPole-v1: action 2 is outside the action space Discrete(2)"
    );
    let err = env.step(Action::Discrete(-1), &mut obs).unwrap_err();
    assert!(err.to_string().contains("action -1"), "{err}");
    let err = env.step(Action::Continuous(&[0.5]), &mut obs).unwrap_err();
    assert!(matches!(err, EnvError::WrongActionKind { .. }), "{err}");
    // The env is still usable after a refused action.
    env.step(Action::Discrete(1), &mut obs).expect("valid step");
    // The raw env refuses it too.
    let mut raw = CartPole::default();
    raw.reset(Some(0), &mut obs).expect("reset");
    assert!(raw.step(Action::Discrete(7), &mut obs).is_err());
}

#[test]
fn wrong_observation_buffer_is_an_error() {
    let mut env = make("Pendulum-v1", &Params::new()).expect("make");
    let mut short = [0.0f32; 2];
    let err = env.reset(Some(1), &mut short).unwrap_err();
    assert!(
        err.to_string().contains("Pendulum-v1: observation buffer has length 2"),
        "{err}"
    );
    let mut obs = [0.0f32; 3];
    env.reset(Some(1), &mut obs).expect("reset");
    let mut long = [0.0f32; 4];
    assert!(matches!(
        env.step(Action::Continuous(&[0.0]), &mut long),
        Err(EnvError::ObservationBuffer {
            expected: 3,
            got: 4,
            ..
        })
    ));
}

#[test]
fn step_before_reset_is_an_error() {
    let mut env = make("MountainCar-v0", &Params::new()).expect("make");
    let mut obs = [0.0f32; 2];
    let err = env.step(Action::Discrete(0), &mut obs).unwrap_err();
    assert_eq!(
        err,
        EnvError::ResetNeeded {
            env: "MountainCar-v0".into()
        }
    );
    let mut raw = Pendulum::default();
    let mut obs = [0.0f32; 3];
    assert!(raw.step(Action::Continuous(&[0.0]), &mut obs).is_err());
}

#[test]
fn continuous_actions_are_clipped_like_gymnasium() {
    // Pendulum clips the torque to [-2, 2] for dynamics and cost alike.
    let mut a = Pendulum::default();
    let mut b = Pendulum::default();
    a.set_state([0.3, -0.2]);
    b.set_state([0.3, -0.2]);
    let (mut oa, mut ob) = ([0.0f32; 3], [0.0f32; 3]);
    let sa = a.step(Action::Continuous(&[7.5]), &mut oa).unwrap();
    let sb = b.step(Action::Continuous(&[2.0]), &mut ob).unwrap();
    assert_eq!((oa, sa), (ob, sb));

    // MountainCarContinuous clips the force but charges the unclipped action.
    let mut a = MountainCarContinuous::default();
    let mut b = MountainCarContinuous::default();
    a.set_state([-0.5, 0.0]);
    b.set_state([-0.5, 0.0]);
    let (mut oa, mut ob) = ([0.0f32; 2], [0.0f32; 2]);
    let sa = a.step(Action::Continuous(&[3.0]), &mut oa).unwrap();
    let sb = b.step(Action::Continuous(&[1.0]), &mut ob).unwrap();
    assert_eq!(oa, ob, "same clipped dynamics");
    assert!(
        (sa.reward - (-0.9)).abs() < 1e-12,
        "reward uses the unclipped action: {}",
        sa.reward
    );
    assert!((sb.reward - (-0.1)).abs() < 1e-12);

    // Wrong length and NaN are errors, not panics.
    assert!(a.step(Action::Continuous(&[]), &mut oa).is_err());
    assert!(a.step(Action::Continuous(&[f32::NAN]), &mut oa).is_err());
}

#[test]
fn time_limit_truncates_and_can_be_overridden() {
    let mut env = make_with_time_limit("Pendulum-v1", &Params::new(), Some(5)).expect("make");
    let mut obs = [0.0f32; 3];
    env.reset(Some(3), &mut obs).expect("reset");
    let flags: Vec<bool> = (0..5)
        .map(|_| env.step(Action::Continuous(&[0.0]), &mut obs).expect("step").truncated)
        .collect();
    assert_eq!(flags, [false, false, false, false, true]);
    env.reset(None, &mut obs).expect("reset");
    assert_eq!(env.elapsed_steps(), 0);
    assert!(!env.step(Action::Continuous(&[0.0]), &mut obs).expect("step").truncated);
    // The registered limit is Gymnasium's.
    assert_eq!(
        make("Pendulum-v1", &Params::new()).unwrap().max_episode_steps(),
        Some(200)
    );
}

#[test]
fn env_params_are_applied_and_checked() {
    // Pendulum's gravity changes the dynamics.
    let step_with = |p: &str| {
        let mut env = make("Pendulum-v1", &params(p)).expect("make");
        let mut obs = [0.0f32; 3];
        env.reset(Some(5), &mut obs).expect("reset");
        env.step(Action::Continuous(&[0.0]), &mut obs).expect("step");
        obs
    };
    assert_eq!(step_with(""), step_with("g = 10.0"));
    assert_ne!(step_with(""), step_with("g = 2"));
    let err = make("Pendulum-v1", &params("gravity = 3.0"))
        .err()
        .expect("unknown param");
    assert!(err.to_string().contains("unknown parameter `gravity`"), "{err}");
    let err = make("CartPole-v1", &params("sutton_barto_reward = 1"))
        .err()
        .expect("mistyped");
    assert!(err.to_string().contains("expected a boolean"), "{err}");
    // Sutton-Barto reward: 0 per step, -1 on failure.
    let mut env = make("CartPole-v1", &params("sutton_barto_reward = true")).expect("make");
    let mut obs = [0.0f32; 4];
    env.reset(Some(0), &mut obs).expect("reset");
    let mut rewards = Vec::new();
    for _ in 0..200 {
        let s = env.step(Action::Discrete(1), &mut obs).expect("step");
        rewards.push(s.reward);
        if s.terminated {
            break;
        }
    }
    assert_eq!(rewards.last(), Some(&-1.0));
    assert!(rewards[..rewards.len() - 1].iter().all(|r| *r == 0.0));
}

/// A minimal user env: counts up to `target`, reward 1 on reaching it.
struct Counter {
    n: i64,
    target: i64,
    obs_space: Space,
    act_space: Space,
}

impl Env for Counter {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        self.n = 0;
        obs[0] = 0.0;
        Ok(())
    }
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        let Action::Discrete(a) = action else {
            unreachable!("checked by EnvHandle")
        };
        self.n += a;
        obs[0] = self.n as f32;
        Ok(Step {
            reward: f64::from(u8::from(self.n == self.target)),
            terminated: self.n == self.target,
            truncated: false,
        })
    }
}

fn counter(p: &Params) -> Result<Counter, EnvError> {
    let r = cml_envs::ParamReader::new("Counter-v0", p, &["target"])?;
    Ok(Counter {
        n: 0,
        target: r.u64_or("target", 3)? as i64,
        obs_space: Space::uniform_box(0.0, 100.0, 1),
        act_space: Space::Discrete(2),
    })
}

#[test]
fn user_envs_register_by_name() {
    register("Counter-v0", counter).expect("register");
    assert!(cml_envs::registered_ids().contains(&"Counter-v0".to_string()));
    let err = register("Counter-v0", counter).unwrap_err();
    assert_eq!(
        err,
        EnvError::AlreadyRegistered {
            id: "Counter-v0".into()
        }
    );
    let mut env = make("Counter-v0", &params("target = 2")).expect("make");
    let mut obs = [0.0f32; 1];
    env.reset(None, &mut obs).expect("reset");
    assert!(!env.step(Action::Discrete(1), &mut obs).unwrap().terminated);
    assert!(env.step(Action::Discrete(1), &mut obs).unwrap().terminated);
    // The handle checks actions before the user's code sees them.
    let err = env.step(Action::Discrete(5), &mut obs).unwrap_err();
    assert!(err.to_string().starts_with("Counter-v0: action 5"), "{err}");

    // A private registry with a time limit.
    let mut reg = Registry::new();
    reg.register(EnvSpec::new("Counter-v0", counter).with_max_episode_steps(4))
        .unwrap();
    let mut env = reg.make("Counter-v0", &params("target = 50")).unwrap();
    env.reset(None, &mut obs).unwrap();
    let trunc: Vec<bool> = (0..4)
        .map(|_| env.step(Action::Discrete(0), &mut obs).unwrap().truncated)
        .collect();
    assert_eq!(trunc, [false, false, false, true]);
}

#[test]
fn vector_env_autoresets_and_keeps_the_final_observation() {
    // Pendulum never terminates: every episode is truncated at the limit,
    // which is where a learner must bootstrap from the true final observation.
    let limit = 7u64;
    let envs = (0..3)
        .map(|_| make_with_time_limit("Pendulum-v1", &Params::new(), Some(limit)).unwrap())
        .collect();
    let mut venv = VecEnv::new(envs).expect("vector");
    venv.reset(Some(100)).expect("reset");

    // Env i must follow a single env seeded with 100 + i.
    let mut single = make_with_time_limit("Pendulum-v1", &Params::new(), Some(limit)).unwrap();
    let mut want = [0.0f32; 3];
    single.reset(Some(101), &mut want).unwrap();
    assert_eq!(&venv.observations()[3..6], &want);

    let actions = [0.5f32, -0.5, 1.0];
    for t in 1..=limit {
        venv.step(VecActions::Continuous(&actions)).expect("step");
        let s = single.step(Action::Continuous(&actions[1..2]), &mut want).unwrap();
        if t < limit {
            assert!(venv.final_observation(1).is_none());
            assert_eq!(&venv.observations()[3..6], &want);
        } else {
            assert!(s.truncated && venv.truncated()[1] && !venv.terminated()[1]);
            // The final observation is the true last one…
            assert_eq!(venv.final_observation(1), Some(&want[..]));
            // …and the row already holds the next episode's first one.
            assert_ne!(&venv.observations()[3..6], &want);
            let mut next = [0.0f32; 3];
            single.reset(None, &mut next).unwrap();
            assert_eq!(&venv.observations()[3..6], &next);
        }
        assert_eq!(venv.rewards()[1], s.reward);
    }
    venv.step(VecActions::Continuous(&actions)).unwrap();
    assert!(venv.final_observation(1).is_none());
}

#[test]
fn vector_env_rejects_bad_input() {
    let mut venv = VecEnv::make("CartPole-v1", &Params::new(), 4).expect("vector");
    assert!(
        venv.step(VecActions::Discrete(&[0, 1, 0, 1])).is_err(),
        "step before reset"
    );
    venv.reset(Some(0)).unwrap();
    let err = venv.step(VecActions::Discrete(&[0, 1])).unwrap_err();
    assert!(err.to_string().contains("2 action values for 4 envs"), "{err}");
    let err = venv.step(VecActions::Discrete(&[0, 1, 9, 1])).unwrap_err();
    assert!(err.to_string().contains("env 2 of 4"), "{err}");
    assert!(err.to_string().contains("action 9"), "{err}");

    let mixed = vec![
        make("CartPole-v1", &Params::new()).unwrap(),
        make("Acrobot-v1", &Params::new()).unwrap(),
    ];
    assert!(matches!(
        VecEnv::new(mixed),
        Err(EnvError::MismatchedSpaces { index: 1, .. })
    ));
    assert!(VecEnv::<cml_envs::EnvHandle>::new(Vec::new()).is_err());
}

#[test]
fn terminated_episodes_autoreset_in_vector() {
    let mut venv = VecEnv::new(vec![CartPole::default(), CartPole::default()]).unwrap();
    venv.reset(Some(9)).unwrap();
    let mut ended = 0;
    for _ in 0..200 {
        venv.step(VecActions::Discrete(&[1, 1])).unwrap();
        for i in 0..2 {
            if venv.terminated()[i] {
                ended += 1;
                let fin = venv.final_observation(i).expect("final obs");
                // Terminal CartPole states are out of bounds; reset ones are near 0.
                assert!(fin[0].abs() > 2.4 || fin[2].abs() > 0.2094, "{fin:?}");
                assert!(venv.observations()[i * 4..i * 4 + 4].iter().all(|x| x.abs() <= 0.05));
            }
        }
    }
    assert!(ended >= 4, "always pushing right ends episodes quickly ({ended})");
}
