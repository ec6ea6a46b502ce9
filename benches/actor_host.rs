//! End-to-end actor-host throughput: env steps per second delivered into
//! real replay shard processes over loopback ZeroMQ (inference, stepping,
//! unroll building, MAC and delivery all included), for several actor
//! counts, with memory per actor and the host's time breakdown.
//!
//! `cargo bench --bench actor_host`. Environment: `CML_BENCH_ENV` (default
//! CartPole-v1), `CML_BENCH_TORSO` (`mlp`, default, or `minatar`),
//! `CML_BENCH_ACTORS` (comma-separated totals, default 64,256,1024,4096,8192),
//! `CML_BENCH_WORKERS` (default 2), `CML_BENCH_SPLITS` (`[actor]
//! worker_splits`, default 1), `CML_BENCH_SHARDS` (default 2),
//! `CML_BENCH_SECONDS` measured per point (default 5, after 2 s warm-up).
//! Python envs: `CML_BENCH_ENV=gymnasium:<id>` with `CML_BENCH_ENV_TOML`,
//! more `[env]` lines (e.g. `import = ["ale_py"]` and
//! `vectorization = "vector_entry_point"`), one worker process per actor
//! worker (`CML_PYTHON` names the interpreter); `benches/python_envs.sh`
//! runs it side by side with Gymnasium's own vector envs.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use candle_nn::VarMap;
use cml_policy::{ActionKind, NetConfig, PolicyNet};
use cml_proto::weights::WeightPublisher;
use cml_proto::{SharedKey, SocketOptions};
use cml_replay::ReplayClient;

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The Python env `id` with the `[env]` keys of `extra` the bench knows.
fn gymnasium_env(id: &str, extra: &str) -> cml_pyenvs::GymnasiumEnv {
    let table: toml::Table = toml::from_str(extra).expect("CML_BENCH_ENV_TOML: [env] lines");
    let mut env = cml_pyenvs::GymnasiumEnv::new(id);
    for (key, value) in table {
        match key.as_str() {
            "import" => env.import = value.try_into().expect("import: a list of modules"),
            "kwargs" => env.kwargs = value.try_into().expect("kwargs: a table"),
            "vectorization" => env.vectorization = value.try_into().expect("vectorization"),
            "observation_layout" => env.observation_layout = value.try_into().expect("observation_layout"),
            other => panic!("CML_BENCH_ENV_TOML: the bench does not know `{other}`"),
        }
    }
    env
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_cml-rl");
    let totals: Vec<usize> = env_or("CML_BENCH_ACTORS", "64,256,1024,4096,8192")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let workers: usize = env_or("CML_BENCH_WORKERS", "2").parse().unwrap();
    let splits: usize = env_or("CML_BENCH_SPLITS", "1").parse().unwrap();
    let shards: u32 = env_or("CML_BENCH_SHARDS", "2").parse().unwrap();
    let seconds: u64 = env_or("CML_BENCH_SECONDS", "5").parse().unwrap();
    let env_id = env_or("CML_BENCH_ENV", "CartPole-v1");
    let torso = env_or("CML_BENCH_TORSO", "mlp");
    let env_toml = env_or("CML_BENCH_ENV_TOML", "");
    if let Some(id) = env_id.strip_prefix(cml_pyenvs::GYMNASIUM_PREFIX) {
        cml_pyenvs::register(&gymnasium_env(id, &env_toml)).unwrap();
    }
    let (observation_shape, actions) = {
        let env = cml_envs::make_vec_with_time_limit(&env_id, &cml_envs::Params::new(), 1, None).unwrap();
        let shape = env.observation_space().box_shape().unwrap().to_vec();
        let cml_envs::Space::Discrete(n) = env.action_space() else {
            panic!("{env_id}: the bench needs a discrete action space");
        };
        (shape, *n)
    };
    let net: NetConfig = toml::from_str(&format!("torso = \"{torso}\"")).unwrap();
    let dir = std::env::temp_dir().join(format!("cml-actor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SharedKey::generate().unwrap();
    key.write_new_file(&dir.join("run.key")).unwrap();
    let (wp, wr) = (port(), port());
    let mut publisher = WeightPublisher::start(
        &key,
        &SocketOptions::default(),
        &format!("tcp://127.0.0.1:{wp}"),
        &format!("tcp://127.0.0.1:{wr}"),
    )
    .unwrap();
    let varmap = VarMap::new();
    PolicyNet::init(
        &varmap,
        observation_shape.as_slice(),
        ActionKind::Categorical(actions),
        &net,
        0,
        &Device::Cpu,
    )
    .unwrap();
    publisher.publish(1, PolicyNet::to_safetensors(&varmap).unwrap());

    println!(
        "actor host bench: {env_id}, T=20, torso {torso}, {workers} workers of {splits} splits, {shards} shard processes, MAC on, loopback"
    );
    println!(
        "{:>7} {:>14} {:>12} {:>10}",
        "actors", "env steps/s", "RSS MiB", "KiB/actor"
    );
    for &total in &totals {
        let k = (total / workers).max(1);
        let base = port();
        let config = dir.join(format!("run-{total}.toml"));
        std::fs::write(
            &config,
            format!(
                "[env]\nid = \"{env_id}\"\n{env_toml}\n[model]\ntorso = \"{torso}\"\n[transport]\nkey_file = \"run.key\"\n\
                 [replay]\nshards = {shards}\nbase_port = {base}\ncapacity = 200000\ncredit_window = 1024\n\
                 [actor]\nworkers = {workers}\nenvs_per_worker = {k}\nworker_splits = {splits}\ninsert_batch = 128\nreport_interval_s = 60\n\
                 [learner]\nweights_endpoint = \"tcp://127.0.0.1:{wp}\"\nweights_request_endpoint = \"tcp://127.0.0.1:{wr}\"\n"
            ),
        )
        .unwrap();
        let config_arg = config.to_str().unwrap();
        let _shards: Vec<Reaped> = (0..shards)
            .map(|i| {
                Reaped(
                    Command::new(bin)
                        .args(["replay", "--config", config_arg, "--shard", &i.to_string()])
                        .env("RUST_LOG", "warn")
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        let endpoints: Vec<String> = (0..shards)
            .map(|i| format!("tcp://127.0.0.1:{}", u32::from(base) + i))
            .collect();
        let ctx = zmq::Context::new();
        let mut learner = ReplayClient::connect(&ctx, &key, &SocketOptions::default(), &endpoints, 1).unwrap();
        learner.hello(Duration::from_secs(20)).unwrap();
        let mut actor = Reaped(
            Command::new(bin)
                .args(["actor", "--config", config_arg, "--json"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let inserted = |learner: &mut ReplayClient| -> u64 {
            (0..shards as usize)
                .map(|s| learner.stats(s, Duration::from_secs(5)).unwrap().inserted_total)
                .sum()
        };
        std::thread::sleep(Duration::from_secs(2));
        let (n0, t0) = (inserted(&mut learner), Instant::now());
        std::thread::sleep(Duration::from_secs(seconds));
        let (n1, t1) = (inserted(&mut learner), Instant::now());
        let rss = rss_kib(actor.0.id());
        let steps_per_s = (n1 - n0) as f64 * 20.0 / (t1 - t0).as_secs_f64();
        let pid = actor.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let out = std::mem::replace(&mut actor.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        println!(
            "{total:>7} {steps_per_s:>14.0} {:>12.1} {:>10.2}",
            rss as f64 / 1024.0,
            rss as f64 / total as f64
        );
        println!(
            "        breakdown (s, summed over threads): worker {} | io {}",
            report["worker_seconds"], report["io_seconds"]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
