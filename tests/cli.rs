//! The `cml-rl` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cml_rl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cml-rl"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cml-rl starts")
}

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cml-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn rollout_runs_every_shipped_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut configs: Vec<String> = std::fs::read_dir(&dir)
        .expect("configs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    configs.sort();
    assert!(configs.len() >= 8, "{configs:?}");
    assert!(
        configs.iter().any(|c| c.ends_with("minatar-breakout.toml")),
        "{configs:?}"
    );
    // Python envs need a Python with gymnasium, Box2D and ale-py:
    // `CML_PYTHON` (CI sets it).
    let has_gymnasium = cml_pyenvs::test_python(&["gymnasium", "Box2D", "ale_py"]).is_some();
    for config in &configs {
        let text = std::fs::read_to_string(config).expect("config");
        if text.contains("\"gymnasium:") && !has_gymnasium {
            eprintln!("SKIPPED {config}: no Python with gymnasium[box2d] and ale-py (set CML_PYTHON)");
            continue;
        }
        let out = cml_rl(&["rollout", config, "--episodes", "5", "--envs", "4"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("5 episodes under a random policy"), "{stdout}");
    }
}

#[test]
fn config_errors_name_file_and_key() {
    let path = temp_config(
        "bad-type.toml",
        "[env]\nid = \"CartPole-v1\"\nmax_episode_steps = \"long\"\n",
    );
    let out = cml_rl(&["rollout", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad-type.toml: env.max_episode_steps:"), "{stderr}");

    let path = temp_config("bad-id.toml", "[env]\nid = \"CartPol-v1\"\n");
    let out = cml_rl(&["rollout", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown env id `CartPol-v1`") && stderr.contains("CartPole-v1"),
        "{stderr}"
    );

    let path = temp_config(
        "bad-param.toml",
        "[env]\nid = \"Pendulum-v1\"\n[env.params]\ng = \"strong\"\n",
    );
    let out = cml_rl(&["rollout", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Pendulum-v1: parameter `g`: expected a number"),
        "{stderr}"
    );
}

#[test]
fn train_refuses_a_bad_config_before_starting_anything() {
    let path = temp_config(
        "bad-learner.toml",
        "[env]\nid = \"CartPole-v1\"\n[learner.optimizer]\nkind = \"adam\"\nlr = \"fast\"\n",
    );
    let out = cml_rl(&["train", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad-learner.toml: learner.optimizer.lr: invalid type: string \"fast\", expected a number"),
        "{stderr}"
    );
}

#[test]
fn envs_lists_the_builtins() {
    let out = cml_rl(&["envs"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for id in [
        "CartPole-v1",
        "Acrobot-v1",
        "MountainCar-v0",
        "MountainCarContinuous-v0",
        "Pendulum-v1",
    ] {
        assert!(stdout.contains(id), "{stdout}");
    }
}

/// `envs --gymnasium` asks Python what `gymnasium.make` knows, with time
/// limits; an `--import` that fails is an error naming the module.
#[test]
fn envs_lists_what_gymnasium_can_make() {
    let Some(python) = cml_pyenvs::test_python(&["gymnasium"]) else {
        return;
    };
    let out = cml_rl(&["envs", "--gymnasium", "--python", &python]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("CartPole-v1\tobservation"),
        "the Rust envs come first: {stdout}"
    );
    for line in [
        "gymnasium:CartPole-v1\t(Python)\tmax_episode_steps 500",
        "gymnasium:LunarLander-v3\t(Python)\tmax_episode_steps 1000",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?} in {stdout}");
    }
    let out = cml_rl(&[
        "envs",
        "--gymnasium",
        "--python",
        &python,
        "--import",
        "cml_no_such_module",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No module named 'cml_no_such_module'"), "{stderr}");
}

#[test]
fn train_refuses_a_config_together_with_resume() {
    let path = temp_config("both.toml", "[env]\nid = \"CartPole-v1\"\n");
    let run = path.with_file_name("some-run");
    let out = cml_rl(&["train", path.to_str().unwrap(), "--resume", run.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not both") && stderr.contains("some-run/config.toml"),
        "{stderr}"
    );
}

#[test]
fn huge_durations_on_the_command_line_are_errors_not_panics() {
    let config = temp_config("durations.toml", "[env]\nid = \"CartPole-v1\"\n");
    let config = config.to_str().unwrap();
    for args in [
        vec!["replay-stats", "--config", config, "--timeout", "1e20"],
        vec!["rollout", config, "--time-limit", "1e20"],
    ] {
        let out = cml_rl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("at most") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

/// A run directory holding a metrics.csv with a mean return of `f(i)` at
/// report i (the loop's own columns, as the learner writes them).
fn fake_run(name: &str, f: impl Fn(u64) -> f64) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("cml-plot-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("wall_s,env_frames,learner_steps,episodes,mean_return_100,frames_consumed\n");
    for i in 1..=50u64 {
        csv += &format!("{},{},{i},{i},{},{}\n", i as f64 * 0.5, i * 1000, f(i), i * 1000);
    }
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    dir
}

#[test]
fn plot_draws_every_run_into_one_png() {
    let fonts = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    if !fonts.iter().any(|f| Path::new(f).exists()) && std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED plot_draws_every_run_into_one_png: no DejaVu or Liberation font (Debian: fonts-dejavu-core)"
        );
        return;
    }
    let rising = fake_run("rising", |i| i as f64 * 10.0);
    let flat = fake_run("flat", |_| 100.0);
    let out = rising.parent().unwrap().join("curves.png");
    let _ = std::fs::remove_file(&out);
    let done = cml_rl(&[
        "plot",
        rising.to_str().unwrap(),
        flat.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let image = image::open(&out).expect("a PNG").to_rgb8();
    assert_eq!(image.dimensions(), (1000, 600));
    // Each run's curve is drawn in its own colour (plotters' Palette99 0 and 1).
    for (run, colour) in [("rising", [230u8, 25, 75]), ("flat", [60, 180, 75])] {
        let pixels = image.pixels().filter(|p| p.0 == colour).count();
        assert!(pixels > 500, "{run}: {pixels} pixels of its colour");
    }
    // --x seconds reads wall_s instead; a run without metrics.csv is an error naming it.
    let done = cml_rl(&[
        "plot",
        flat.to_str().unwrap(),
        "--x",
        "seconds",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(done.status.success());
    let missing = flat.parent().unwrap().join("no-such-run");
    let done = cml_rl(&["plot", missing.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        !done.status.success() && stderr.contains("no-such-run/metrics.csv"),
        "{stderr}"
    );
}
