//! Runs `examples/custom_env.rs`: a user env registered by name and selected
//! from `examples/custom_env.toml`.

#[path = "../examples/custom_env.rs"]
mod custom_env;

use std::path::Path;

#[test]
fn custom_env_example_runs_from_its_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom_env.toml");
    let report = custom_env::run(&path).expect("example runs");
    assert_eq!(report.env_id, "LineWalk-v0");
    assert_eq!(report.episodes, 50);
    // Start at 3 of 6: every episode ends at an edge, a random walk of at
    // least 3 steps; the returns are ±1 minus 0.05 per step.
    assert!(report.mean_length >= 3.0, "{report}");
    assert!(report.mean_return < 1.0 - 3.0 * 0.05 + 1e-9, "{report}");
    assert_eq!(report.terminated + report.truncated, 50);
}

#[test]
fn custom_env_params_are_checked() {
    let dir = std::env::temp_dir().join(format!("cml-custom-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[env]\nid = \"LineWalk-v0\"\n[env.params]\nsize = 1\n").unwrap();
    let err = custom_env::run(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains("LineWalk-v0: parameter `size`: must be between 2"),
        "{err:#}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
