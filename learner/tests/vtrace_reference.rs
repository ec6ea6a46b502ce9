//! V-trace against every reference case in `tests/fixtures/vtrace_cases.json`
//! (computed in float64 by the reference implementation), in float32 on the
//! CPU, within 1e-5 · max(1, |ref|).

use candle_core::{Device, Tensor};
use cml_learner::vtrace;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Value>,
}

fn load() -> Vec<Value> {
    let path = format!("{}/../tests/fixtures/vtrace_cases.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Cases>(&text).expect("cases parse").cases
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number") as f32],
        other => panic!("not a number: {other}"),
    }
}

fn tensor(case: &Value, key: &str, shape: &[usize]) -> Tensor {
    Tensor::from_vec(flat(&case[key]), shape, &Device::Cpu).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn threshold(case: &Value, key: &str) -> Option<f32> {
    case[key].as_f64().map(|x| x as f32)
}

/// The reference values as doubles (inputs are exact in f32; outputs not).
fn flat64(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat64).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number")],
        other => panic!("not a number: {other}"),
    }
}

fn assert_close(name: &str, what: &str, got: &Tensor, want: &Value) {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let want = flat64(want);
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = 1e-5 * w.abs().max(1.0);
        assert!(
            (f64::from(*g) - w).abs() <= tol,
            "{name}: {what}[{i}] = {g}, reference {w}"
        );
    }
}

#[test]
fn matches_every_reference_case() {
    let cases = load();
    assert!(cases.len() >= 12);
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let t = case["T"].as_u64().expect("T") as usize;
        let b = case["B"].as_u64().expect("B") as usize;
        let (rho, pg, lambda) = (
            threshold(case, "clip_rho_threshold"),
            threshold(case, "clip_pg_rho_threshold"),
            case["lambda"].as_f64().expect("lambda") as f32,
        );
        let discounts = tensor(case, "discounts", &[t, b]);
        let rewards = tensor(case, "rewards", &[t, b]);
        let values = tensor(case, "values", &[t, b]);
        let bootstrap = tensor(case, "bootstrap_value", &[b]);
        let trajectory = vtrace::Trajectory {
            discounts: &discounts,
            rewards: &rewards,
            values: &values,
            bootstrap_value: &bootstrap,
        };
        let clipping = vtrace::Clipping {
            clip_rho_threshold: rho,
            clip_pg_rho_threshold: pg,
            lambda,
        };
        match case["kind"].as_str().expect("kind") {
            "from_importance_weights" => {
                let log_rhos = tensor(case, "log_rhos", &[t, b]);
                let out = vtrace::from_importance_weights(&log_rhos, trajectory, clipping).expect("v-trace");
                assert_close(name, "vs", &out.vs, &case["vs"]);
                assert_close(name, "pg_advantages", &out.pg_advantages, &case["pg_advantages"]);
            }
            "from_logits" => {
                let a = case["A"].as_u64().expect("A") as usize;
                let behaviour = tensor(case, "behaviour_policy_logits", &[t, b, a]);
                let target = tensor(case, "target_policy_logits", &[t, b, a]);
                let actions: Vec<u32> = flat(&case["actions"]).iter().map(|x| *x as u32).collect();
                let actions = Tensor::from_vec(actions, (t, b), &Device::Cpu).unwrap();
                let out = vtrace::from_logits(&behaviour, &target, &actions, trajectory, clipping).expect("v-trace");
                assert_close(name, "vs", &out.vs, &case["vs"]);
                assert_close(name, "pg_advantages", &out.pg_advantages, &case["pg_advantages"]);
                assert_close(name, "log_rhos", &out.log_rhos, &case["log_rhos"]);
                assert_close(
                    name,
                    "behaviour_action_log_probs",
                    &out.behaviour_action_log_probs,
                    &case["behaviour_action_log_probs"],
                );
                assert_close(
                    name,
                    "target_action_log_probs",
                    &out.target_action_log_probs,
                    &case["target_action_log_probs"],
                );
            }
            other => panic!("{name}: unknown kind {other}"),
        }
    }
}
