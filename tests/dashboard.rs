//! The live dashboard of `cml-rl train` on loopback: the page is served, its
//! JSON endpoint fills with reports, shard rows and the actor host's row,
//! and its figures move
//! while training runs; headless Chromium loads the page, draws the curves
//! and tables without a JavaScript error, sees a figure change, and saves a
//! screenshot (`$CARGO_TARGET_TMPDIR/dashboard.png`).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get as get, spawn, wait_exit};

fn state(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/api/state");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn train_serves_a_live_dashboard() {
    let dir = std::env::temp_dir().join(format!("cml-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (wp, wr, rp, dp) = (free_port(), free_port(), free_port(), free_port());
    let config = dir.join("train.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 2\n[env]\nid = \"CartPole-v1\"\n\
             [actor]\nworkers = 1\nenvs_per_worker = 16\ninsert_batch = 16\n\
             [replay]\nmode = \"queue\"\ncapacity = 64\ncredit_window = 32\nbase_port = {rp}\nstats_interval_s = 0.2\n\
             [learner]\nbatch_size = 8\nreport_interval_s = 0.2\ndashboard_port = {dp}\n\
             weights_endpoint = \"tcp://127.0.0.1:{wp}\"\nweights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n\
             [train]\nmax_seconds = 60\nruns_dir = \"{}\"\n",
            dir.join("runs").display()
        ),
    )
    .unwrap();
    let mut train = spawn(&["train", config.to_str().unwrap()], &dir, Stdio::piped());
    // Bounded wait for a few reports with shard rows.
    let deadline = Instant::now() + Duration::from_secs(40);
    let first = loop {
        assert!(Instant::now() < deadline, "no dashboard reports in 40 s");
        if std::net::TcpStream::connect(("127.0.0.1", dp)).is_ok() {
            let s = state(dp);
            if s["points"].as_array().is_some_and(|p| p.len() >= 3)
                && s["shards"].as_array().is_some_and(|s| !s.is_empty())
                && s["hosts"][0]["policy_version"].as_u64().is_some_and(|v| v >= 1)
            {
                break s;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, page) = get(dp, "/");
    assert_eq!(code, 200);
    assert!(
        page.contains("<canvas") && page.contains("api/state") && page.contains("Replay shards"),
        "{page}"
    );
    let names: Vec<&str> = first["scalars"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"loss/policy") && names.contains(&"train/grad_norm"),
        "{names:?}"
    );
    let point = &first["points"][0];
    assert_eq!(point["values"].as_array().map(Vec::len), Some(names.len()));
    assert_eq!(first["shards"][0]["shard"], 0);
    assert_eq!(first["shards"][0]["mode"], "queue");
    // `train` runs one actor host: one active row, reached over loopback.
    let hosts = first["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    let host = &hosts[0];
    assert_eq!(host["state"], "active", "{host}");
    assert_eq!(host["actors"], 16, "{host}");
    assert_eq!(host["host_id"], 0, "{host}");
    assert!(host["address"].as_str().unwrap().contains("127.0.0.1"), "{host}");
    assert!(host["last_seen_s"].as_f64().unwrap() < 3.0, "{host}");
    // While training runs, the figures move: later points, more frames.
    let seq = first["latest_seq"].as_u64().unwrap();
    let frames = |s: &serde_json::Value| {
        s["points"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(|p| p["env_frames"].as_u64())
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let later = loop {
        assert!(Instant::now() < deadline, "the dashboard stopped moving");
        let (_, body) = get(dp, &format!("/api/state?after={seq}"));
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        if s["points"].as_array().is_some_and(|p| !p.is_empty()) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(later["points"][0]["seq"].as_u64().unwrap() > seq);
    assert!(frames(&later) > frames(&first), "{later}");
    in_a_browser(dp);
    // The address is printed at start.
    let pid = train.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert!(wait_exit(&mut train, Duration::from_secs(20)).success());
    let mut stdout = String::new();
    train.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(
        stdout.contains(&format!("dashboard: http://127.0.0.1:{dp}/")),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Chromium to drive: `CML_CHROMIUM`, else Debian's `chromium`. None
/// where there is none (outside CI the browser half is then skipped).
fn chromium() -> Option<String> {
    let candidate = std::env::var("CML_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&candidate)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide Chromium (Debian's chromium package; .ci/run installs it)"
    );
    eprintln!("SKIPPED the browser half: no {candidate} (install Debian's chromium)");
    None
}

/// Headless Chromium on the page for about `budget_ms` of page time;
/// returns its DOM (or, with `screenshot`, writes a PNG there) and stderr.
fn headless(browser: &str, port: u16, budget_ms: u32, screenshot: Option<&std::path::Path>) -> (String, String) {
    let mut command = Command::new("timeout");
    command.args([
        "60",
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,900",
        &format!("--virtual-time-budget={budget_ms}"),
    ]);
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let out = command
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of `attr` in the tag that holds `marker`.
fn attribute<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let tag = &dom[dom[..at].rfind('<')?..at + dom[at..].find('>')?];
    let start = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// The shown value of one row of the "Latest" table.
fn figure<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let row = &dom[dom.find(&format!("data-figure=\"{name}\""))?..];
    let row = &row[..row.find("</tr>")?];
    let value = &row[row.rfind("<td>")? + 4..];
    Some(&value[..value.find("</td>")?])
}

fn in_a_browser(port: u16) {
    let Some(browser) = chromium() else { return };
    let (dom, stderr) = headless(&browser, port, 3000, None);
    assert!(!stderr.contains("Uncaught"), "a JavaScript error: {stderr}");
    let errors = attribute(&dom, "id=\"js-errors\"", "hidden");
    assert_eq!(errors, Some(""), "the page shows JavaScript errors:\n{dom}");
    assert!(
        dom.contains(" reports; updated "),
        "the page did not load its data:\n{dom}"
    );
    for chart in ["chart-return", "chart-loss", "chart-rate", "chart-lag"] {
        let drawn: usize = attribute(&dom, &format!("id=\"{chart}\""), "data-drawn")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(drawn >= 2, "{chart} drew {drawn} points:\n{dom}");
    }
    assert!(
        dom.contains("<tbody><tr><td>0</td><td>queue</td>"),
        "no shard row:\n{dom}"
    );
    let hosts = &dom[dom.find("id=\"hosts\"").expect("a hosts table")..];
    assert!(
        hosts.contains("<tr class=\"\" data-sender=") && hosts.contains("<td>active</td>"),
        "no active host row:\n{dom}"
    );
    let frames = figure(&dom, "env frames produced").map(str::to_string);
    assert!(frames.is_some(), "no figures table:\n{dom}");
    // A value changes while training runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (again, _) = headless(&browser, port, 1500, None);
        if figure(&again, "env frames produced").map(str::to_string) != frames {
            break;
        }
        assert!(Instant::now() < deadline, "env frames produced stayed at {frames:?}");
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(&browser, port, 3000, Some(&shot));
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot {} has {size} bytes", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());
}
