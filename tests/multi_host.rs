//! Several hosts for real: network namespaces joined by veth pairs on a
//! bridge. The learner and the replay shard run in one namespace, two actor
//! hosts in two others, each with its own address. Training runs across
//! them; one actor host is SIGKILLed mid-run, training goes on, and the host
//! rejoins when restarted. The learner's dashboard lists both hosts with
//! their own addresses, shows the killed one as gone and the restarted one
//! as a new row. The namespaces are removed even when the test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dir_with_key, Reaped};

/// Network namespaces of this test, deleted on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this machine lets us make namespaces (root and iproute2).
fn netns_available() -> bool {
    let probe = format!("cml-probe-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    }
    ok
}

/// Learner namespace with a bridge at 10.77.0.1, actor namespaces at
/// 10.77.0.2 and 10.77.0.3.
fn make_namespaces(tag: &str) -> Namespaces {
    let learner = format!("cml-{tag}-l");
    let actors = [format!("cml-{tag}-a1"), format!("cml-{tag}-a2")];
    let ns = Namespaces {
        names: vec![learner.clone(), actors[0].clone(), actors[1].clone()],
    };
    for name in &ns.names {
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }
    ip(&["-n", &learner, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &learner, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
    ip(&["-n", &learner, "link", "set", "br0", "up"]);
    for (i, actor) in actors.iter().enumerate() {
        let (inside, outside) = (format!("v{tag}a{i}"), format!("v{tag}b{i}"));
        ip(&["link", "add", &inside, "type", "veth", "peer", "name", &outside]);
        ip(&["link", "set", &inside, "netns", actor]);
        ip(&["link", "set", &outside, "netns", &learner]);
        ip(&["-n", &learner, "link", "set", &outside, "master", "br0"]);
        ip(&["-n", &learner, "link", "set", &outside, "up"]);
        let address = format!("10.77.0.{}/24", i + 2);
        ip(&["-n", actor, "addr", "add", &address, "dev", &inside]);
        ip(&["-n", actor, "link", "set", &inside, "up"]);
    }
    ns
}

fn in_ns(ns: &str, args: &[&str], dir: &Path, log: &Path) -> Reaped {
    let log = std::fs::File::create(log).unwrap();
    Reaped(
        Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_cml-rl")])
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn config(dir: &Path, host_id: u64) -> PathBuf {
    let path = dir.join(format!("host{host_id}.toml"));
    std::fs::write(
        &path,
        format!(
            "seed = 1\n[env]\nid = \"CartPole-v1\"\n[transport]\nkey_file = \"run.key\"\n\
             [actor]\nworkers = 1\nenvs_per_worker = 32\ninsert_batch = 16\nhost_id = {host_id}\nreport_interval_s = 1.0\n\
             [replay]\nhost = \"10.77.0.1\"\nbase_port = 5600\nmode = \"queue\"\ncapacity = 128\n\
             credit_window = 32\nsender_timeout_s = 2.0\nstats_interval_s = 0.5\n\
             [learner]\nweights_endpoint = \"tcp://10.77.0.1:5550\"\nweights_request_endpoint = \"tcp://10.77.0.1:5551\"\n\
             batch_size = 8\nreport_interval_s = 0.25\ndashboard_port = {DASHBOARD_PORT}\n\
             [learner.optimizer]\nkind = \"adam\"\nlr = 0.0005\n\
             [train]\nmax_seconds = 120\n"
        ),
    )
    .unwrap();
    path
}

/// The learner's dashboard port, on loopback inside its namespace.
const DASHBOARD_PORT: u16 = 5700;

/// The dashboard's actor-host rows, fetched from inside the learner
/// namespace (bash's /dev/tcp: no HTTP client needed). Empty while the
/// dashboard is not up.
fn dashboard_hosts(ns: &str) -> Vec<serde_json::Value> {
    let request = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{DASHBOARD_PORT} && \
         printf 'GET /api/state?after=18446744073709551615 HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3 && \
         timeout 5 cat <&3"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "bash", "-c", &request])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|state| state["hosts"].as_array().cloned())
        .unwrap_or_default()
}

fn host_rows<'a>(rows: &'a [serde_json::Value], host_id: u64, state: &str) -> Vec<&'a serde_json::Value> {
    rows.iter()
        .filter(|r| r["host_id"] == host_id && r["state"] == state)
        .collect()
}

/// The shard's stats, asked from inside the learner namespace.
fn shard_stats(ns: &str, config: &Path) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_cml-rl")])
        .args(["replay-stats", "--config", config.to_str().unwrap(), "--timeout", "3"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn learner_steps(run: &Path) -> u64 {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap_or_default();
    text.lines()
        .last()
        .and_then(|l| l.split(',').nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn training_across_namespaces_survives_a_killed_actor_host() {
    if !netns_available() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must allow network namespaces (root and iproute2; .ci/run installs iproute2)"
        );
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    }
    let tag = format!("{:x}", std::process::id() % 0xfff);
    let ns = make_namespaces(&tag);
    let (learner_ns, a1, a2) = (ns.names[0].clone(), ns.names[1].clone(), ns.names[2].clone());
    let dir = dir_with_key("cml-netns");
    let (c1, c2) = (config(&dir, 1), config(&dir, 2));
    let c1s = c1.to_str().unwrap().to_string();
    let c2s = c2.to_str().unwrap().to_string();
    let run = dir.join("run");

    let _shard = in_ns(
        &learner_ns,
        &["replay", "--config", &c1s, "--shard", "0"],
        &dir,
        &dir.join("shard.log"),
    );
    let _learner = in_ns(
        &learner_ns,
        &["learner", "--config", &c1s, "--run-dir", run.to_str().unwrap()],
        &dir,
        &dir.join("learner.log"),
    );
    let mut host1 = in_ns(&a1, &["actor", "--config", &c1s], &dir, &dir.join("actor1.log"));
    let _host2 = in_ns(&a2, &["actor", "--config", &c2s], &dir, &dir.join("actor2.log"));

    // Both hosts deliver across the bridge, and the learner trains.
    wait_until("two actor hosts on the shard", Duration::from_secs(60), || {
        shard_stats(&learner_ns, &c1)["senders"] == 2
    });
    wait_until("learner steps", Duration::from_secs(60), || learner_steps(&run) >= 20);
    // The dashboard lists both hosts, each at its own address.
    let mut rows = Vec::new();
    wait_until("two active hosts on the dashboard", Duration::from_secs(20), || {
        rows = dashboard_hosts(&learner_ns);
        rows.iter()
            .filter(|r| r["state"] == "active" && r["policy_version"].as_u64() > Some(0))
            .count()
            == 2
    });
    for (host_id, address) in [(1, "10.77.0.2"), (2, "10.77.0.3")] {
        let row = host_rows(&rows, host_id, "active");
        assert_eq!(row.len(), 1, "{rows:?}");
        assert!(row[0]["address"].as_str().unwrap().contains(address), "{rows:?}");
        assert_eq!(row[0]["actors"], 32, "{rows:?}");
    }
    let killed_sender = host_rows(&rows, 1, "active")[0]["sender"].clone();

    // SIGKILL host 1: training goes on with host 2 alone.
    host1.0.kill().unwrap();
    host1.0.wait().unwrap();
    wait_until("the shard to forget the killed host", Duration::from_secs(30), || {
        shard_stats(&learner_ns, &c1)["senders"] == 1
    });
    // Killed, it said nothing: the dashboard shows it gone once silent.
    wait_until("the killed host shown as gone", Duration::from_secs(20), || {
        rows = dashboard_hosts(&learner_ns);
        host_rows(&rows, 1, "gone").len() == 1
    });
    let gone = host_rows(&rows, 1, "gone")[0].clone();
    assert_eq!(gone["sender"], killed_sender, "{rows:?}");
    assert_eq!(gone["left"], false, "{rows:?}");
    assert_eq!(host_rows(&rows, 2, "active").len(), 1, "{rows:?}");
    let before = learner_steps(&run);
    wait_until("training to go on without host 1", Duration::from_secs(60), || {
        learner_steps(&run) >= before + 20
    });

    // Restart host 1: it rejoins (asks for weights, says hello, delivers).
    let inserted = shard_stats(&learner_ns, &c1)["inserted_total"].as_u64().unwrap();
    let _host1 = in_ns(
        &a1,
        &["actor", "--config", &c1s],
        &dir,
        &dir.join("actor1-restarted.log"),
    );
    wait_until("host 1 to rejoin", Duration::from_secs(60), || {
        let stats = shard_stats(&learner_ns, &c1);
        stats["senders"] == 2 && stats["inserted_total"].as_u64().unwrap() > inserted
    });
    // The restarted process is a new row; the killed one stays gone.
    wait_until("the restarted host on the dashboard", Duration::from_secs(20), || {
        rows = dashboard_hosts(&learner_ns);
        host_rows(&rows, 1, "active").len() == 1
    });
    assert_ne!(host_rows(&rows, 1, "active")[0]["sender"], killed_sender);
    assert_eq!(host_rows(&rows, 1, "gone").len(), 1, "{rows:?}");
    let rejected = shard_stats(&learner_ns, &c1)["rejected"].clone();
    for reason in ["bad_mac", "malformed", "replayed", "bad_tensor", "bad_value"] {
        assert_eq!(rejected[reason], 0, "{reason}: {rejected}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
