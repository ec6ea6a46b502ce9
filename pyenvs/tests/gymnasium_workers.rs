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

use cml_envs::{Env, Params, VecActions, VectorEnv};
use cml_pyenvs::{GymnasiumEnv, PythonEnv, PythonVecEnv, SHM_PREFIX};

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
