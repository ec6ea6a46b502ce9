//! Scalars written by `cml_run::tensorboard::EventWriter` are read back by
//! TensorBoard's own reader (`EventAccumulator`, tests/python/read_tensorboard.py):
//! same tags, steps and f32 values, wall times in order.
//!
//! Needs a Python with the `tensorboard` package: `CML_PYTHON` (set by
//! `.ci/run`), else `python3` if it has it. Under CI the test fails without one.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cml_run::tensorboard::EventWriter;

fn python() -> Option<String> {
    if let Ok(python) = std::env::var("CML_PYTHON") {
        return Some(python);
    }
    let has_tensorboard = Command::new("python3")
        .args(["-c", "import tensorboard"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    has_tensorboard.then(|| "python3".to_string())
}

fn train_return(step: i64) -> f32 {
    (step as f32 - 20.5) * 0.75 // negative, then positive; fractional
}

fn train_loss(step: i64) -> f32 {
    1.0 / (step as f32 + 3.0) - 0.1 // not exactly representable; crosses zero
}

fn train_lr(step: i64) -> f32 {
    3e-4 * 0.99f32.powi(step as i32)
}

/// Runs the reader script on `dir`, killing Python after 120 s.
fn read_with_tensorboard(python: &str, dir: &std::path::Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_tensorboard.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the TensorBoard reader did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_thread.join().unwrap();
    let stderr = err_thread.join().unwrap();
    assert!(
        status.success(),
        "the TensorBoard reader failed ({status}):\n{stderr}\n{stdout}"
    );
    let last_line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last_line).unwrap_or_else(|e| panic!("bad JSON from the reader ({e}):\n{stdout}\n{stderr}"))
}

#[test]
fn tensorboard_reads_our_scalars() {
    let Some(python) = python() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide CML_PYTHON with the tensorboard package (.ci/run must install tensorboard)"
        );
        eprintln!("SKIPPED: no Python with the tensorboard package (set CML_PYTHON)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("cml-tensorboard-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let steps = 0..50i64;
    let mut writer = EventWriter::create(&dir).unwrap();
    assert_eq!(writer.path().parent().unwrap(), dir);
    for step in steps.clone() {
        writer.add_scalar("train/return", train_return(step), step).unwrap();
        // Two tags in one event (one Summary, two values).
        writer
            .add_scalars(&[("train/loss", train_loss(step)), ("train/lr", train_lr(step))], step)
            .unwrap();
        if step % 10 == 9 {
            std::thread::sleep(Duration::from_millis(5)); // so wall times visibly advance
        }
    }
    writer.flush().unwrap();
    drop(writer);

    let json = read_with_tensorboard(&python, &dir);
    assert_eq!(json["file_version"].as_f64(), Some(2.0), "{json}");
    assert_eq!(
        json["tags"],
        serde_json::json!(["train/loss", "train/lr", "train/return"]),
        "{json}"
    );

    type ValueAt = fn(i64) -> f32;
    let expected: [(&str, ValueAt); 3] = [
        ("train/return", train_return),
        ("train/loss", train_loss),
        ("train/lr", train_lr),
    ];
    let mut all_wall_times = Vec::new();
    for (tag, value_at) in expected {
        let events = json["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no scalars for {tag}: {json}"));
        assert_eq!(events.len(), 50, "{tag}");
        let mut previous_wall_time = f64::NEG_INFINITY;
        for (event, step) in events.iter().zip(steps.clone()) {
            let wall_time = event[0].as_f64().unwrap();
            assert_eq!(event[1].as_i64(), Some(step), "{tag}: {event}");
            let value = event[2].as_f64().unwrap() as f32;
            assert_eq!(
                value.to_bits(),
                value_at(step).to_bits(),
                "{tag} at step {step}: {value}"
            );
            assert!(
                wall_time >= previous_wall_time,
                "{tag}: wall time went back at step {step}"
            );
            previous_wall_time = wall_time;
            all_wall_times.push(wall_time);
        }
    }
    let first = json["scalars"]["train/return"][0][0].as_f64().unwrap();
    let last = json["scalars"]["train/return"][49][0].as_f64().unwrap();
    assert!(last > first, "wall times should advance: {first} .. {last}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        all_wall_times.iter().all(|&t| t > now - 600.0 && t <= now),
        "wall times are not recent"
    );
    // Negative and fractional values really went through.
    assert!(train_return(0) < 0.0 && train_return(0).fract() != 0.0);

    std::fs::remove_dir_all(&dir).unwrap();
}
