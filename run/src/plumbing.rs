//! What every role needs before it does its job: the shared key, socket
//! options, the stop flag (signals, and the supervising `train` going
//! away), the unroll layout of the configured env, and the number of
//! compute threads. Each role's command calls these, once, at its start.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cml_proto::config::TransportConfig;
use cml_proto::{SharedKey, UnrollLayout};

use crate::RunError;

/// Environment variable naming the shared key file; it overrides
/// `transport.key_file` (how `cml-rl train` hands its key to the processes
/// it starts).
pub const KEY_FILE_ENV: &str = "CML_KEY_FILE";

/// Environment variable `cml-rl train` sets for its children: its own pid,
/// so that a child stops when it is re-parented (its supervisor died).
pub const SUPERVISOR_PID_ENV: &str = "CML_SUPERVISOR_PID";

/// The shared key: [`KEY_FILE_ENV`] when set, else `transport.key_file`
/// (relative paths resolved against `base_dir`, the config's folder).
pub fn read_key(transport: &TransportConfig, base_dir: &Path) -> Result<SharedKey, RunError> {
    if let Some(path) = std::env::var_os(KEY_FILE_ENV) {
        return Ok(SharedKey::read_file(Path::new(&path))?);
    }
    let path = transport.key_file.as_ref().ok_or_else(|| {
        RunError::Config("transport.key_file: not set; create a key with `cml-rl keygen FILE` and name it there".into())
    })?;
    let path = if path.is_absolute() {
        path.clone()
    } else {
        base_dir.join(path)
    };
    Ok(SharedKey::read_file(&path)?)
}

/// The unroll layout of env `id` (with `params`) and unroll length `t`.
pub fn unroll_layout(
    id: &str,
    params: &cml_envs::Params,
    t: u32,
    net: &cml_policy::NetConfig,
) -> Result<UnrollLayout, RunError> {
    use cml_envs::Env;
    let env = cml_envs::make(id, params).map_err(|e| RunError::Config(format!("env {id:?}: {e}")))?;
    cml_actors::layout_for(env.observation_space(), env.action_space(), t, net)
        .map_err(|e| RunError::Config(format!("env {id:?}: {e}")))
}

/// The shape of one observation of the configured env (its `Box` shape:
/// `[d]`, or `[H, W, C]` for images), which the network is built for.
pub fn observation_shape(id: &str, params: &cml_envs::Params) -> Result<Vec<usize>, RunError> {
    use cml_envs::Env;
    let env = cml_envs::make(id, params).map_err(|e| RunError::Config(format!("env {id:?}: {e}")))?;
    let space = env.observation_space();
    space.box_shape().map(<[usize]>::to_vec).ok_or_else(|| {
        RunError::Config(format!(
            "env {id:?}: observation space {space} is not supported (use a Box observation)"
        ))
    })
}

/// A flag set by SIGINT or SIGTERM.
///
/// A child of `cml-rl train` (which sets [`SUPERVISOR_PID_ENV`] for it) also
/// stops when its parent is gone: a `train` killed with SIGKILL, or one
/// that crashed, leaves no shard or actor host behind.
pub fn stop_flag() -> Result<Arc<AtomicBool>, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| RunError::Config(format!("installing a signal handler: {e}")))?;
    }
    if let Some(supervisor) = std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("parent-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if std::os::unix::process::parent_id() != supervisor {
                        tracing::warn!(supervisor, "the supervising cml-rl train is gone; stopping");
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
            .map_err(|e| RunError::Config(format!("starting the parent watcher: {e}")))?;
    }
    Ok(stop)
}

/// Puts candle's CPU kernels (matmuls, element-wise ops) on one thread,
/// through `RAYON_NUM_THREADS`, which candle and rayon read once. The one
/// place the process sets it: each command calls this first, before any
/// thread starts (the environment is process-wide). An existing
/// `RAYON_NUM_THREADS` wins (an explicit choice of the user). At our batch
/// sizes the kernels are too small to split well: actor hosts run one
/// compute thread per worker thread, and the learner uses several CPU
/// threads by splitting its batch (`learner.cpu_threads`), not its kernels.
pub fn init_compute_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Edition 2021: a safe fn. Called before any other thread exists.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}
