//! `ActorHost`: one process's W workers and its I/O thread.
//!
//! Workers run on their own threads and never touch a socket: they fill
//! `UnrollChunk`s and pass them over a bounded crossbeam channel to the I/O
//! thread (the thread that calls [`ActorHost::run`]). The I/O thread owns
//! every socket: a DEALER per replay shard (inserts with credit), a SUB for
//! the learner's weight broadcast, a DEALER for `get_weights` and the
//! host's `host_status` (once a second, and a last one with `leaving` when
//! it stops). It cuts each chunk into insert messages and hands the emptied
//! chunk back.
//!
//! When replay stops granting credit (a shard is down or full), the I/O
//! thread stops taking chunks, the bounded channel fills, and workers pause:
//! memory stays at `pending_chunks` chunks per worker, nothing is dropped on
//! the host, and the outage is logged once (with its length when it ends).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cml_envs::Params;
use cml_policy::NetConfig;
use cml_proto::weights::WeightFollower;
use cml_proto::{HostStatus, SharedKey, SocketOptions, UnrollLayout};
use cml_replay::{ShardedInserter, UnrollMessage};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use parking_lot::Mutex;

use crate::worker::{layout_for, policy_from_weights, UnrollChunk, VersionedPolicy, Worker, WorkerTimings};
use crate::ActorError;

/// Everything an actor host needs.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub env_id: String,
    pub env_params: Params,
    pub max_episode_steps: Option<u64>,
    /// W worker threads.
    pub workers: usize,
    /// K env actors per worker.
    pub envs_per_worker: usize,
    /// S vector envs per worker, stepped in turn (`[actor] worker_splits`).
    pub worker_splits: usize,
    pub unroll_length: u32,
    pub seed: u64,
    /// Actor ids are `host_id << 32 | index`, unique across hosts.
    pub host_id: u64,
    pub net: NetConfig,
    pub replay_endpoints: Vec<String>,
    /// The learner's PUB socket and its `get_weights` ROUTER.
    pub weights_endpoint: String,
    pub weights_request_endpoint: String,
    /// Unrolls per insert message.
    pub insert_batch: u32,
    /// Completed chunks that may wait for the I/O thread, per worker.
    pub pending_chunks: usize,
    pub key: SharedKey,
    pub socket: SocketOptions,
    /// Stop after this many unrolls delivered (benchmarks, tests).
    pub max_unrolls: Option<u64>,
    /// Seconds between progress log lines.
    pub report_interval: Duration,
    /// Ape-X actors (ε-greedy, first priorities); None: sample from the
    /// policy (IMPALA).
    pub apex: Option<crate::ApexActing>,
    /// The shards pace inserts to the learner (`learner.replay_ratio`):
    /// waiting for credit is then the normal pace, not an outage.
    pub paced: bool,
    /// How often a worker may make its failed envs afresh.
    pub env_restarts: crate::RestartLimit,
}

/// What a host did, for logs, tests and the time breakdown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostReport {
    pub actors: usize,
    pub unrolls_delivered: u64,
    pub env_steps_delivered: u64,
    pub episodes: u64,
    /// Times a worker's envs failed and were made afresh, and the episodes
    /// those failures cut short (not counted in `episodes`).
    pub env_restarts: u64,
    pub episodes_cut_short: u64,
    pub refused_inserts: u64,
    /// Unrolls handed to no shard (ZeroMQ's queue to a vanished shard full).
    pub dropped_unrolls: u64,
    pub weights_version: u64,
    pub weight_updates: u64,
    pub seconds: f64,
    /// Time the I/O thread waited for replay credit.
    pub paused_seconds: f64,
    pub outages: u64,
    /// Summed over workers.
    pub workers: WorkerTimings,
    /// I/O thread: cutting chunks into messages, sealing (MessagePack +
    /// MAC), handing to ZeroMQ.
    pub slicing_ns: u64,
    pub seal_ns: u64,
    pub send_ns: u64,
}

/// The newest policy, shared by every worker; swapped between unrolls.
#[derive(Default)]
struct PolicySlot {
    version: AtomicU64,
    current: Mutex<Option<Arc<VersionedPolicy>>>,
}

impl PolicySlot {
    fn set(&self, policy: VersionedPolicy) {
        let version = policy.version;
        *self.current.lock() = Some(Arc::new(policy));
        self.version.store(version, Ordering::Release);
    }

    fn get(&self) -> Option<Arc<VersionedPolicy>> {
        self.current.lock().clone()
    }
}

/// One actor host.
pub struct ActorHost;

struct Shared {
    stop: AtomicBool,
    policy: PolicySlot,
    timings: Mutex<Vec<WorkerTimings>>,
}

impl ActorHost {
    /// The unroll layout this config produces.
    pub fn layout(config: &HostConfig) -> Result<UnrollLayout, ActorError> {
        let env = cml_envs::make(&config.env_id, &config.env_params).map_err(|e| ActorError::Env(e.to_string()))?;
        use cml_envs::Env;
        layout_for(
            env.observation_space(),
            env.action_space(),
            config.unroll_length,
            &config.net,
        )
    }

    /// Runs until `stop` is set (or `max_unrolls` are delivered); returns
    /// what happened. Stops within about 100 ms of `stop`.
    pub fn run(config: &HostConfig, stop: &AtomicBool) -> Result<HostReport, ActorError> {
        if config.workers == 0 || config.envs_per_worker == 0 || config.insert_batch == 0 {
            return Err(ActorError::Config(
                "workers, envs_per_worker and insert_batch must be at least 1".into(),
            ));
        }
        let splits = config.worker_splits;
        if !(1..=config.envs_per_worker).contains(&splits) {
            return Err(ActorError::Config(format!(
                "worker_splits must be in 1..=envs_per_worker ({}), found {splits}",
                config.envs_per_worker
            )));
        }
        let started = Instant::now();
        // Worker thread w runs splits w·S .. w·S + S: `Worker`s of about
        // K/S actors each, actor ids consecutive across the splits.
        let mut groups: Vec<Vec<Worker>> = Vec::with_capacity(config.workers);
        for w in 0..config.workers {
            let mut group = Vec::with_capacity(splits);
            let mut first = (config.host_id << 32) + (w * config.envs_per_worker) as u64;
            for s in 0..splits {
                let envs = config.envs_per_worker / splits + usize::from(s < config.envs_per_worker % splits);
                let mut make = env_factory(config, envs);
                let venv = make().map_err(|e| ActorError::Env(e.to_string()))?;
                let acting = config.apex.as_ref();
                group.push(
                    Worker::new(
                        w * splits + s,
                        venv,
                        config.unroll_length,
                        first,
                        config.seed,
                        &config.net,
                        acting,
                    )?
                    .named(&config.env_id)
                    .restarting(make, config.env_restarts),
                );
                first += envs as u64;
            }
            groups.push(group);
        }
        let layout = groups[0][0].layout().clone();
        let observation_shape = groups[0][0].observation_shape().to_vec();
        let worker_count = config.workers * splits;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            policy: PolicySlot::default(),
            timings: Mutex::new(vec![WorkerTimings::default(); worker_count]),
        });
        let pending = config.pending_chunks.max(1);
        let (full_tx, full_rx) = crossbeam_channel::bounded::<UnrollChunk>(pending * worker_count);
        let mut free_txs = Vec::with_capacity(worker_count);
        let mut threads = Vec::with_capacity(config.workers);
        for group in groups {
            // Chunk buffers circulate: free pool -> worker -> I/O -> free
            // pool, one pool per split.
            let mut free_rxs = Vec::with_capacity(group.len());
            for worker in &group {
                let (free_tx, free_rx) = crossbeam_channel::bounded::<UnrollChunk>(pending + 1);
                for _ in 0..=pending {
                    let _ = free_tx.send(worker.new_chunk());
                }
                free_txs.push(free_tx);
                free_rxs.push(free_rx);
            }
            let shared = Arc::clone(&shared);
            let full_tx = full_tx.clone();
            let name = format!("actor-worker-{}", threads.len());
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker_loop(group, &shared, &free_rxs, &full_tx))
                .map_err(|e| ActorError::Config(format!("spawning a worker: {e}")))?;
            threads.push(thread);
        }
        drop(full_tx);

        let io = Io {
            config,
            layout: &layout,
            observation_shape: &observation_shape,
            shared: &shared,
            stop,
            full_rx: &full_rx,
            free_txs: &free_txs,
            started,
        };
        let result = io_loop(&io);
        shared.stop.store(true, Ordering::Relaxed);
        drop(full_rx);
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ActorError::Config("a worker thread panicked".into())),
            }
        }
        let mut report = result?;
        for t in shared.timings.lock().iter() {
            report.workers.inference_ns += t.inference_ns;
            report.workers.sampling_ns += t.sampling_ns;
            report.workers.env_ns += t.env_ns;
            report.workers.unroll_ns += t.unroll_ns;
            report.workers.ticks += t.ticks;
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// Makes one split's `num_envs` envs (again, after a failure).
fn env_factory(config: &HostConfig, num_envs: usize) -> crate::EnvFactory {
    let (id, params) = (config.env_id.clone(), config.env_params.clone());
    let max_steps = config
        .max_episode_steps
        .or(cml_envs::max_episode_steps(&config.env_id).ok().flatten());
    Box::new(move || cml_envs::make_vec_with_time_limit(&id, &params, num_envs, max_steps))
}

/// One worker thread: its splits fill one chunk each with the same policy,
/// ticks interleaved ([`Worker::fill_together`]), and hand them on.
fn worker_loop(
    mut splits: Vec<Worker>,
    shared: &Shared,
    free_rxs: &[Receiver<UnrollChunk>],
    full_tx: &Sender<UnrollChunk>,
) -> Result<(), ActorError> {
    let tick = Duration::from_millis(50);
    let mut chunks: Vec<UnrollChunk> = Vec::with_capacity(splits.len());
    while !shared.stop.load(Ordering::Relaxed) {
        // The policy is fixed for a whole unroll: no tick mixes versions.
        let Some(policy) = shared.policy.get() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        // One free chunk per split (kept while waiting for the others').
        while chunks.len() < splits.len() {
            match free_rxs[chunks.len()].recv_timeout(tick) {
                Ok(chunk) => chunks.push(chunk),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        if chunks.len() < splits.len() {
            continue;
        }
        Worker::fill_together(&mut splits, &policy, &mut chunks)?;
        {
            let mut timings = shared.timings.lock();
            for (worker, chunk) in splits.iter().zip(&chunks) {
                timings[chunk.worker] = worker.timings();
            }
        }
        for mut chunk in chunks.drain(..) {
            loop {
                match full_tx.send_timeout(chunk, tick) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(back)) => {
                        if shared.stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        chunk = back;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Ok(()),
                }
            }
        }
    }
    Ok(())
}

/// What the I/O thread works with.
#[derive(Clone, Copy)]
struct Io<'a> {
    config: &'a HostConfig,
    layout: &'a UnrollLayout,
    /// The env's observation shape, for the inference network.
    observation_shape: &'a [usize],
    shared: &'a Shared,
    stop: &'a AtomicBool,
    full_rx: &'a Receiver<UnrollChunk>,
    free_txs: &'a [Sender<UnrollChunk>],
    started: Instant,
}

fn io_loop(io: &Io<'_>) -> Result<HostReport, ActorError> {
    let (config, started) = (io.config, io.started);
    let ctx = zmq::Context::new();
    let mut report = HostReport {
        actors: config.workers * config.envs_per_worker,
        ..HostReport::default()
    };
    let mut follower = WeightFollower::connect(
        &ctx,
        &config.key,
        &config.socket,
        &config.weights_endpoint,
        &config.weights_request_endpoint,
    )
    .map_err(|e| ActorError::Config(e.to_string()))?;
    let hostname = cml_proto::host_table::local_hostname();
    let status = |report: &HostReport, leaving: bool| HostStatus {
        host_id: config.host_id,
        hostname: hostname.clone(),
        actors: report.actors as u64,
        env_steps_total: report.env_steps_delivered,
        unrolls_total: report.unrolls_delivered,
        episodes_total: report.episodes,
        policy_version: report.weights_version,
        uptime_s: started.elapsed().as_secs_f64(),
        paused_s: report.paused_seconds,
        env_restarts_total: report.env_restarts,
        episodes_cut_short_total: report.episodes_cut_short,
        leaving,
    };
    let result = deliver(&ctx, io, &mut follower, &mut report, &status);
    // The learner shows this host as gone at once, not after a silence.
    follower.send_status(&status(&report, true))?;
    result.map(|()| report)
}

/// Weights first, then replay; then unrolls to replay until stopped.
fn deliver(
    ctx: &zmq::Context,
    io: &Io<'_>,
    follower: &mut WeightFollower,
    report: &mut HostReport,
    status: &dyn Fn(&HostReport, bool) -> HostStatus,
) -> Result<(), ActorError> {
    let Io {
        config,
        layout,
        observation_shape,
        shared,
        stop,
        full_rx,
        free_txs,
        started,
    } = *io;
    let stopped = || stop.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed);

    // Weights first: nothing can act without them.
    let mut waiting_logged = false;
    let mut version = 0u64;
    // New weights in, this host's status out (at most once a second).
    let mut keep_up = |follower: &mut WeightFollower, report: &mut HostReport| -> Result<(), ActorError> {
        if let Some((v, bytes)) = follower.poll(version) {
            match policy_from_weights(&bytes, v, layout, observation_shape, &config.net) {
                Ok(policy) => {
                    shared.policy.set(policy);
                    version = v;
                    report.weights_version = v;
                    report.weight_updates += 1;
                    tracing::debug!(version = v, "new policy weights");
                }
                Err(e) => tracing::warn!("ignoring weights: {e}"),
            }
        }
        follower.send_status(&status(report, false))?;
        Ok(())
    };
    while shared.policy.get().is_none() {
        if stopped() {
            return Ok(());
        }
        follower.request(Duration::from_secs(1))?;
        keep_up(follower, report)?;
        if !waiting_logged && started.elapsed() > Duration::from_secs(2) {
            tracing::warn!(endpoint = %config.weights_request_endpoint, "waiting for the learner's weights");
            waiting_logged = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // Replay: connect to every shard (retrying while they are away).
    let mut inserter = loop {
        if stopped() {
            return Ok(());
        }
        match ShardedInserter::connect(
            ctx,
            &config.key,
            &config.socket,
            &config.replay_endpoints,
            Duration::from_secs(2),
        ) {
            Ok(inserter) => break inserter,
            Err(e) => {
                report.outages += 1;
                tracing::warn!("replay not reachable yet ({e}); retrying");
                keep_up(follower, report)?;
            }
        }
    };
    let shard_layout = inserter.layout()?;
    if shard_layout != *layout {
        return Err(ActorError::Config(format!(
            "replay shards expect {shard_layout:?}, this host produces {layout:?} (same env and unroll_length?)"
        )));
    }

    let mut last_report = Instant::now();
    let mut outage_since: Option<Instant> = None;
    let batch = config.insert_batch as usize;
    while !stopped() {
        keep_up(follower, report)?;
        let chunk = match full_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(chunk) => chunk,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut episodes = chunk.episodes.clone();
        report.episodes += episodes.len() as u64;
        report.env_restarts += chunk.env_restarts;
        report.episodes_cut_short += chunk.episodes_cut_short;
        let mut b0 = 0;
        while b0 < chunk.count {
            let b1 = (b0 + batch).min(chunk.count);
            let n = (b1 - b0) as u32;
            let sliced = Instant::now();
            let frames = layout.slice_unrolls(&chunk.frames, b0..b1);
            let message = UnrollMessage {
                count: n,
                actor_ids: (b0..b1).map(|b| chunk.first_actor + b as u64).collect(),
                policy_versions: vec![chunk.policy_version; n as usize],
                priorities: chunk.priorities.get(b0..b1).map(<[f64]>::to_vec),
                episodes: std::mem::take(&mut episodes),
                frames,
            };
            report.slicing_ns += sliced.elapsed().as_nanos() as u64;
            // Wait for credit, pausing while replay gives none.
            let wait = Instant::now();
            let shard = loop {
                if stopped() {
                    break None;
                }
                if let Some(shard) = inserter.wait_for_credit(n, Duration::from_millis(100))? {
                    break Some(shard);
                }
                if outage_since.is_none() && !config.paced {
                    // Log once per outage, not per message. With a replay
                    // ratio, waiting for credit is the normal pace instead.
                    tracing::warn!("replay gives no credit (shard down or full); actors pause until it does");
                    report.outages += 1;
                    outage_since = Some(Instant::now());
                }
                keep_up(follower, report)?;
            };
            report.paused_seconds += wait.elapsed().as_secs_f64();
            let Some(shard) = shard else {
                break;
            };
            if let Some(since) = outage_since.take() {
                tracing::info!(
                    seconds = since.elapsed().as_secs_f64(),
                    "replay is back; delivering again"
                );
            }
            if let Err(e) = inserter.clients()[shard].send(message) {
                // Only when ZeroMQ's queue to a vanished shard is full:
                // counted, never silent.
                report.dropped_unrolls += u64::from(n);
                tracing::warn!("dropped {n} unrolls: {e}");
                b0 = b1;
                continue;
            }
            if stopped() {
                break;
            }
            report.unrolls_delivered += u64::from(n);
            report.env_steps_delivered += u64::from(n) * u64::from(layout.unroll_length);
            b0 = b1;
        }
        let progress = inserter.take_progress();
        report.refused_inserts += progress.errors.len() as u64;
        let worker = chunk.worker;
        let _ = free_txs[worker].try_send(chunk);
        if config.max_unrolls.is_some_and(|m| report.unrolls_delivered >= m) {
            break;
        }
        if last_report.elapsed() >= config.report_interval {
            tracing::info!(
                unrolls = report.unrolls_delivered,
                env_steps_per_s = format!(
                    "{:.0}",
                    report.env_steps_delivered as f64 / started.elapsed().as_secs_f64()
                ),
                version = report.weights_version,
                paused_s = format!("{:.1}", report.paused_seconds),
                env_restarts = report.env_restarts,
                "actor host"
            );
            last_report = Instant::now();
        }
    }
    // Let the shards acknowledge what is in flight (bounded), so a clean
    // stop leaves nothing half-delivered.
    let flush_until = Instant::now() + Duration::from_millis(300);
    while inserter.unacked() > 0 && Instant::now() < flush_until {
        for client in inserter.clients() {
            client.drain()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report.refused_inserts += inserter.take_progress().errors.len() as u64;
    // Unused credit goes back now, not after the shards' sender timeout
    // (in queue mode other hosts would wait for it).
    inserter.goodbye();
    for client in inserter.clients() {
        let (seal, send) = client.timings();
        report.seal_ns += seal;
        report.send_ns += send;
    }
    Ok(())
}
