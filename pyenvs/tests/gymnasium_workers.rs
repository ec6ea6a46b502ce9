//! Real Python worker processes: Gymnasium's CartPole through shared memory
//! equals our native, bit-exact CartPole step for step (observations,
//! rewards, flags and the true final observation of truncated episodes,
//! seeds above 2³²); bad envs give errors naming what and where; no
//! shared-memory file outlives its host.
//!
//! Needs a Python with `gymnasium` and `numpy`: `CML_PYTHON` (set by
//! `.ci/run`), else `python3` if it has them. Under CI the tests fail
//! without one.

use std::path::Path;
use std::time::{Duration, Instant};

use cml_envs::{BoxDtype, Env, Params, Space, VecActions, VectorEnv};
use cml_pyenvs::{GymnasiumEnv, ObservationLayout, PythonEnv, PythonVecEnv, Vectorization, SHM_PREFIX};

fn python() -> Option<String> {
    cml_pyenvs::test_python(&["gymnasium", "numpy"])
}

fn gym(python: &str, id: &str) -> GymnasiumEnv {
    let mut env = GymnasiumEnv::new(id);
    env.python = python.to_string();
    env
}

/// Our test envs (`tests/python/cml_test_envs.py`), importable by the worker.
fn test_envs(python: &str, id: &str) -> GymnasiumEnv {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    std::env::set_var("PYTHONPATH", dir);
    let mut env = gym(python, id);
    env.import = vec!["cml_test_envs".to_string()];
    env
}

#[test]
fn gymnasium_cartpole_through_shared_memory_equals_the_native_one() {
    let Some(python) = python() else { return };
    let (k, limit) = (4, 12);
    let mut native = cml_envs::make_vec_with_time_limit("CartPole-v1", &Params::new(), k, Some(limit)).unwrap();
    let mut bridged = PythonVecEnv::start(&gym(&python, "CartPole-v1"), k, Some(limit)).unwrap();
    assert_eq!(bridged.observation_space(), native.observation_space());
    assert_eq!(bridged.action_space(), native.action_space());
    // A seed above 2³², and one where seed + i wraps past 2⁶⁴.
    for seed in [(1u64 << 32) + 7, u64::MAX - 1] {
        native.reset(Some(seed)).unwrap();
        bridged.reset(Some(seed)).unwrap();
        assert_eq!(bridged.observations(), native.observations(), "seed {seed}: reset");
        let (mut truncations, mut terminations) = (0, 0);
        for t in 0..60u64 {
            // Envs 0 and 1 push one way (the pole falls: terminations), the
            // others alternate (time-limit truncations).
            let actions: Vec<i64> = (0..k as u64)
                .map(|i| if i < 2 { i as i64 } else { ((t + i) % 2) as i64 })
                .collect();
            native.step(VecActions::Discrete(&actions)).unwrap();
            bridged.step(VecActions::Discrete(&actions)).unwrap();
            assert_eq!(bridged.observations(), native.observations(), "seed {seed}, step {t}");
            assert_eq!(bridged.rewards(), native.rewards(), "step {t}");
            assert_eq!(bridged.terminated(), native.terminated(), "step {t}");
            assert_eq!(bridged.truncated(), native.truncated(), "step {t}");
            for i in 0..k {
                let done = native.terminated()[i] || native.truncated()[i];
                if done {
                    // The true last observation, not the next episode's first.
                    assert_eq!(
                        bridged.final_observation(i),
                        native.final_observation(i),
                        "step {t}, env {i}"
                    );
                    assert_ne!(
                        bridged.final_observation(i).unwrap(),
                        &bridged.observations()[i * 4..i * 4 + 4]
                    );
                }
                truncations += usize::from(native.truncated()[i] && !native.terminated()[i]);
                terminations += usize::from(native.terminated()[i]);
            }
        }
        assert!(
            truncations > 0 && terminations > 0,
            "{truncations} truncations, {terminations} terminations"
        );
    }
    let shm = bridged.shared_memory_path();
    assert!(shm.exists() && shm.starts_with("/dev/shm"), "{}", shm.display());
    drop(bridged);
    assert!(!shm.exists(), "{} left after drop", shm.display());
}

#[test]
fn one_env_is_reset_by_its_caller_and_discrete_start_is_applied() {
    let Some(python) = python() else { return };
    let mut env = PythonEnv::start(&test_envs(&python, "CmlTest/Misbehaving-v0"), None).unwrap();
    let mut obs = [0.0f32; 3];
    assert!(
        env.step(cml_envs::Action::Discrete(0), &mut obs).is_err(),
        "step before reset"
    );
    env.reset(Some(3), &mut obs).unwrap();
    // Action 1 of Discrete(2, start=1) reaches the env as 2 (its reward).
    let step = env.step(cml_envs::Action::Discrete(1), &mut obs).unwrap();
    assert_eq!(step.reward, 2.0);
    assert_eq!(obs, [0.1f32; 3]);
    let e = env.step(cml_envs::Action::Discrete(2), &mut obs).unwrap_err();
    assert!(e.to_string().contains("outside the action space Discrete(2)"), "{e}");
}

/// `Frames`' value at `[h, w, c]` of the HWC observation (see cml_test_envs.py).
fn frame_value(h: usize, w: usize, c: usize, t: usize) -> f32 {
    (100 * c + 10 * h + w + t) as f32
}

#[test]
fn uint8_chw_frames_arrive_channels_last_from_single_and_vector_envs() {
    let Some(python) = python() else { return };
    for vectorization in [Vectorization::None, Vectorization::VectorEntryPoint] {
        let mut spec = test_envs(&python, "CmlTest/Frames-v0");
        spec.observation_layout = ObservationLayout::Chw;
        spec.vectorization = vectorization;
        let k = 2;
        let mut env = PythonVecEnv::start(&spec, k, None).unwrap();
        let Space::Box { shape, dtype, .. } = env.observation_space() else {
            panic!("{vectorization:?}: not a box")
        };
        assert_eq!(
            (shape.as_slice(), *dtype),
            ([3, 4, 2].as_slice(), BoxDtype::U8),
            "{vectorization:?}"
        );
        // A seed above 2³¹ (ALE's limit): folded for the vector env, kept for single envs.
        let seed = (1u64 << 40) + 5;
        env.reset(Some(seed)).unwrap();
        let check = |obs: &[f32], t: usize, what: &str| {
            for (h, w, c) in (0..3).flat_map(|h| (0..4).flat_map(move |w| (0..2).map(move |c| (h, w, c)))) {
                if (h, w, c) != (2, 3, 1) {
                    assert_eq!(
                        obs[(h * 4 + w) * 2 + c],
                        frame_value(h, w, c, t),
                        "{vectorization:?} {what} at {h},{w},{c}"
                    );
                }
            }
        };
        for i in 0..k {
            check(&env.observations()[i * 24..(i + 1) * 24], 0, "reset");
        }
        let seeds: Vec<f32> = (0..k).map(|i| env.observations()[i * 24 + 23]).collect();
        assert_ne!(seeds[0], seeds[1], "{vectorization:?}: envs 0 and 1 got one seed");
        for t in 1..=3 {
            env.step(VecActions::Discrete(&[1, 0])).unwrap();
            assert_eq!(env.rewards(), &[1.0, 0.0]);
            assert_eq!(env.truncated(), &[t == 3, t == 3], "{vectorization:?} step {t}");
            for i in 0..k {
                check(&env.observations()[i * 24..(i + 1) * 24], t % 3, "step");
            }
        }
        for (i, &seed) in seeds.iter().enumerate() {
            let last = env.final_observation(i).unwrap();
            check(last, 3, "final observation");
            assert_eq!(last[23], seed, "{vectorization:?}: the final frame is this episode's");
        }
    }
}

#[test]
fn ale_vector_env_frames_are_stacked_channels_last_and_its_final_frames_are_the_episodes() {
    let Some(python) = cml_pyenvs::test_python(&["gymnasium", "numpy", "ale_py"]) else {
        return;
    };
    let mut spec = gym(&python, "ALE/Pong-v5");
    spec.import = vec!["ale_py".to_string()];
    spec.vectorization = Vectorization::VectorEntryPoint;
    spec.observation_layout = ObservationLayout::Chw;
    // 40 frames: every episode is truncated after 10 agent steps (frame skip 4).
    spec.kwargs =
        toml::from_str("max_num_frames_per_episode = 40\nnum_threads = 1\nrepeat_action_probability = 0.0").unwrap();
    let k = 2;
    let mut env = PythonVecEnv::start(&spec, k, None).unwrap();
    let Space::Box { shape, dtype, .. } = env.observation_space() else {
        panic!("not a box")
    };
    assert_eq!((shape.as_slice(), *dtype), ([84, 84, 4].as_slice(), BoxDtype::U8));
    assert!(
        matches!(env.action_space(), Space::Discrete(6)),
        "{}",
        env.action_space()
    );
    let d = 84 * 84 * 4;
    env.reset(Some(u64::MAX - 3)).unwrap();
    let channel = |obs: &[f32], c: usize| -> Vec<f32> { obs.iter().skip(c).step_by(4).copied().collect() };
    let mut previous = env.observations().to_vec();
    let mut truncations = 0;
    for t in 0..25 {
        env.step(VecActions::Discrete(&[2, 3])).unwrap();
        for i in 0..k {
            let before = &previous[i * d..(i + 1) * d];
            let ended = env.truncated()[i] || env.terminated()[i];
            // A stack moves by one frame a step: channel c of this step is
            // channel c + 1 of the previous, also in the final frames of an
            // episode (not so in the next episode's first).
            let now = if ended {
                truncations += 1;
                env.final_observation(i).unwrap()
            } else {
                &env.observations()[i * d..(i + 1) * d]
            };
            for c in 0..3 {
                assert_eq!(
                    channel(now, c),
                    channel(before, c + 1),
                    "step {t}, env {i}, channel {c}"
                );
            }
            assert!(now.iter().all(|&v| (0.0..=255.0).contains(&v) && v.fract() == 0.0));
        }
        previous = env.observations().to_vec();
    }
    assert_eq!(truncations, 2 * k, "episodes of 10 steps, 25 steps");
}

#[test]
fn with_episodic_life_a_life_lost_terminates_without_a_reset() {
    let Some(python) = python() else { return };
    for vectorization in [Vectorization::None, Vectorization::VectorEntryPoint] {
        for episodic_life in [false, true] {
            let mut spec = test_envs(&python, "CmlTest/ThreeLives-v0");
            spec.vectorization = vectorization;
            spec.episodic_life = episodic_life;
            let mut env = PythonVecEnv::start(&spec, 2, None).unwrap();
            env.reset(Some(1)).unwrap();
            let what = format!("{vectorization:?}, episodic_life {episodic_life}");
            for t in 1..=7u32 {
                env.step(VecActions::Discrete(&[0, 1])).unwrap();
                let lost = episodic_life && (t == 2 || t == 4);
                assert_eq!(env.terminated(), &[lost || t == 6; 2], "{what}, step {t}");
                assert_eq!(env.life_lost(), &[lost; 2], "{what}, step {t}");
                // The game goes on across a life lost; it restarts after step 6.
                assert_eq!(env.observations(), &[(t % 6) as f32; 2], "{what}, step {t}");
                if t == 6 {
                    assert_eq!(env.final_observation(1).unwrap(), &[6.0], "{what}");
                }
            }
        }
    }
    // The one-env `Env` (eval) plays whole games.
    let mut spec = test_envs(&python, "CmlTest/ThreeLives-v0");
    spec.episodic_life = true;
    let mut env = PythonEnv::start(&spec, None).unwrap();
    let mut obs = [0.0f32];
    env.reset(Some(1), &mut obs).unwrap();
    let ends: Vec<bool> = (0..6)
        .map(|_| env.step(cml_envs::Action::Discrete(0), &mut obs).unwrap().terminated)
        .collect();
    assert_eq!(ends, [false, false, false, false, false, true]);
}

#[test]
fn bad_envs_fail_with_errors_naming_them() {
    let Some(python) = python() else { return };
    let e = PythonVecEnv::start(&gym(&python, "NoSuchEnv-v9"), 2, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gymnasium:NoSuchEnv-v9") && e.contains("NoSuchEnv"), "{e}");

    let mut missing = gym(&python, "CartPole-v1");
    missing.import = vec!["no_such_module_cml".to_string()];
    let e = PythonVecEnv::start(&missing, 2, None).err().unwrap().to_string();
    assert!(
        e.contains("[env] import") && e.contains("pip install no_such_module_cml"),
        "{e}"
    );

    let e = PythonVecEnv::start(&test_envs(&python, "CmlTest/Dict-v0"), 1, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Dict") && e.contains("not supported"), "{e}");

    let mut no_python = gym(&python, "CartPole-v1");
    no_python.python = "/nonexistent/python3".to_string();
    let e = PythonVecEnv::start(&no_python, 1, None).err().unwrap().to_string();
    assert!(e.contains("[env] python") && e.contains("/nonexistent/python3"), "{e}");
}

/// Steps a Misbehaving env until it fails; returns the error and the pid.
fn step_until_error(env: &GymnasiumEnv) -> (String, u32) {
    let mut venv = PythonVecEnv::start(env, 2, None).unwrap();
    let pid = venv.worker_pid();
    venv.reset(Some(0)).unwrap();
    for _ in 0..10 {
        if let Err(e) = venv.step(VecActions::Discrete(&[0, 1])) {
            return (e.to_string(), pid);
        }
    }
    panic!("the env never failed");
}

#[test]
fn a_raising_crashing_or_hanging_env_is_an_error_naming_it() {
    let Some(python) = python() else { return };
    let mut raising = test_envs(&python, "CmlTest/Misbehaving-v0");
    let (e, _) = step_until_error(&raising);
    assert!(
        e.contains("`step` failed in Python") && e.contains("the env broke on purpose"),
        "{e}"
    );

    raising.kwargs.insert("what".into(), "segfault".into());
    let (e, _) = step_until_error(&raising);
    assert!(e.contains("died during `step`") && e.contains("signal: 11"), "{e}");

    raising.kwargs.insert("what".into(), "hang".into());
    raising.step_timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let (e, pid) = step_until_error(&raising);
    assert!(e.contains("took over 1.5 s on `step` and was killed"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Killed and reaped: no such process any more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the hung worker {pid} still runs"
    );
}

/// `step_start` hands the step to the Python process and returns (an
/// actor worker runs inference meanwhile); `step_finish` waits for it,
/// within the step timeout. The env here hangs on its first step, so a
/// blocking start could not return Ok.
#[test]
fn a_started_step_returns_at_once_and_its_finish_waits_for_python() {
    let Some(python) = python() else { return };
    let mut hanging = test_envs(&python, "CmlTest/Misbehaving-v0");
    hanging.kwargs.insert("what".into(), "hang".into());
    hanging.kwargs.insert("at".into(), toml::Value::Integer(1));
    hanging.step_timeout = Duration::from_millis(1500);
    let mut venv = PythonVecEnv::start(&hanging, 2, None).unwrap();
    venv.reset(Some(0)).unwrap();
    let started = Instant::now();
    venv.step_start(VecActions::Discrete(&[0, 1])).unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500));
    let e = venv.step_finish().err().unwrap().to_string();
    assert!(e.contains("took over 1.5 s on `step` and was killed"), "{e}");
    // Nothing is in flight any more.
    assert!(venv.step_finish().is_ok());
}

#[test]
fn shared_memory_of_a_dead_host_is_removed_at_the_next_start() {
    let Some(python) = python() else { return };
    // A pid that is not running: the kernel's pid_max is below 2^22 here.
    let stale = Path::new("/dev/shm").join(format!("{SHM_PREFIX}4194999-0"));
    std::fs::write(&stale, b"left by a host killed with SIGKILL").unwrap();
    let venv = PythonVecEnv::start(&gym(&python, "CartPole-v1"), 1, None).unwrap();
    assert!(!stale.exists(), "{} was not removed", stale.display());
    drop(venv);
}
