//! The `cml-rl` command line. A program that registers its own envs calls
//! [`main`] afterwards, so its envs are available by id from config files
//! (see `examples/custom_env.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::rollout::{self, RolloutOptions};
use crate::{actor_role, replay_load, replay_role};

#[derive(Debug, Parser)]
#[command(
    name = "cml-rl",
    version,
    about = "Distributed reinforcement learning (IMPALA / Ape-X style)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train on one machine: the learner here, replay shards and an actor
    /// host as child processes, all over loopback ZeroMQ. Writes a run
    /// directory (config copy, metrics.csv, TensorBoard events, checkpoints).
    Train {
        /// The run configuration (TOML); not needed with --resume.
        config: Option<PathBuf>,
        /// Continue the run in RUN_DIR from its newest checkpoint.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
    },
    /// Run a checkpoint's policy and print mean ± std return and length;
    /// with several checkpoints (of one env), play each on the same seeds
    /// and give each one's difference from the first with a 95% interval.
    Eval {
        /// Checkpoint files (RUN_DIR/checkpoints/ckpt-*.safetensors).
        #[arg(required = true)]
        checkpoints: Vec<PathBuf>,
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Sample actions from the policy instead of taking the most likely.
        #[arg(long)]
        sample: bool,
        /// The run config (default: RUN_DIR/config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Draw the learning curves of one or more runs (their metrics.csv)
    /// into one PNG, with the run names as the legend.
    Plot {
        /// Run directories (each with a metrics.csv).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The PNG to write.
        #[arg(short = 'o', long = "output", default_value = "curves.png")]
        output: PathBuf,
        /// The x axis.
        #[arg(long, value_enum, default_value = "frames")]
        x: crate::plot::XAxis,
    },
    /// Run the learner alone (cluster runs): samples from the shards, trains,
    /// broadcasts weights, writes a run directory.
    Learner {
        #[arg(long)]
        config: PathBuf,
        /// Where to write metrics and checkpoints (default: a new directory
        /// under train.runs_dir).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Continue from the newest checkpoint in --run-dir.
        #[arg(long)]
        resume: bool,
    },
    /// Run the configured env under a random policy and print episode
    /// statistics (a smoke test of an env and its config).
    Rollout {
        /// The run configuration (TOML).
        config: PathBuf,
        /// Stop after this many finished episodes.
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Envs stepped together.
        #[arg(long, default_value_t = 16)]
        envs: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60.0)]
        time_limit: f64,
    },
    /// List the registered env ids with their spaces and time limits.
    Envs {
        /// Also list what Gymnasium can make (`gymnasium:<id>`), asking the
        /// Python interpreter `--python` (default $CML_PYTHON, else python3).
        #[arg(long)]
        gymnasium: bool,
        #[arg(long, requires = "gymnasium")]
        python: Option<String>,
        /// Modules to import first, which register more envs (`ale_py`).
        #[arg(long = "import", requires = "gymnasium")]
        imports: Vec<String>,
    },
    /// Run replay shard I of the config's N shards (until SIGINT/SIGTERM).
    Replay {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        shard: u32,
    },
    /// Print every replay shard's statistics as JSON lines.
    ReplayStats {
        #[arg(long)]
        config: PathBuf,
        /// Seconds to wait for each shard.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Run an actor host: W workers × K env actors, unrolls to the replay
    /// shards, weights from the learner (until SIGINT/SIGTERM).
    Actor {
        #[arg(long)]
        config: PathBuf,
        /// Stop after delivering this many unrolls.
        #[arg(long)]
        max_unrolls: Option<u64>,
        /// Print the final report (throughput, time breakdown) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new shared key file (mode 0600) for `transport.key_file`.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Insert deterministic synthetic unrolls into one shard (tests and
    /// benchmarks of the replay service).
    #[command(hide = true)]
    ReplayLoad {
        #[arg(long)]
        config: PathBuf,
        /// One shard; without it, unrolls spread over every shard.
        #[arg(long)]
        shard: Option<u32>,
        #[arg(long, default_value_t = 1)]
        actor_id: u64,
        #[arg(long, default_value_t = 1000)]
        unrolls: u64,
        /// Unrolls per insert message.
        #[arg(long, default_value_t = 32)]
        batch: u32,
        /// Seconds to wait for the shard or for credit.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
}

/// A command-line duration: positive, finite, and at most
/// `cml_proto::config::MAX_SECONDS` (a `Duration` would panic beyond that).
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        anyhow::bail!("{flag} must be a positive number of seconds, got {value}");
    }
    if value > cml_proto::config::MAX_SECONDS {
        anyhow::bail!(
            "{flag} must be at most {:e} seconds, got {value}",
            cml_proto::config::MAX_SECONDS
        );
    }
    Ok(Duration::from_secs_f64(value))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (e.g. from a user's program) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Eval {
            checkpoints,
            episodes,
            sample,
            config,
            json,
        } => match checkpoints.as_slice() {
            [one] => crate::eval::run_eval(one, config.as_deref(), episodes, sample, json),
            several => crate::eval_compare::run_compare(several, config.as_deref(), episodes, sample, json),
        },
        Command::Plot { runs, output, x } => crate::plot::run_plot(&runs, &output, x),
        Command::Train { config, resume } => crate::train::run_train(config.as_deref(), resume.as_deref()),
        Command::Learner {
            config,
            run_dir,
            resume,
        } => crate::learner_role::run_command(&config, run_dir, resume),
        Command::Rollout {
            config,
            episodes,
            envs,
            time_limit,
        } => {
            let cfg = Config::load(&config)?;
            let options = RolloutOptions {
                episodes,
                num_envs: envs,
                time_limit: seconds("--time-limit", time_limit)?,
            };
            let report = rollout::run(&cfg, &options)?;
            println!("{report}");
            Ok(())
        }
        Command::Envs {
            gymnasium,
            python,
            imports,
        } => {
            for id in cml_envs::registered_ids() {
                let env = cml_envs::make(&id, &cml_envs::Params::new());
                let limit = cml_envs::max_episode_steps(&id)?;
                let limit = limit.map_or("none".to_string(), |s| s.to_string());
                match env {
                    Ok(env) => {
                        use cml_envs::Env;
                        println!(
                            "{id}\tobservation {}\taction {}\tmax_episode_steps {limit}",
                            env.observation_space(),
                            env.action_space()
                        );
                    }
                    Err(e) => println!("{id}\t(needs parameters: {e})\tmax_episode_steps {limit}"),
                }
            }
            if gymnasium {
                let python = python.unwrap_or_else(cml_pyenvs::default_python);
                for (id, limit) in cml_pyenvs::gymnasium_ids(&python, &imports)? {
                    let limit = limit.map_or("none".to_string(), |s| s.to_string());
                    println!(
                        "{}{id}\t(Python)\tmax_episode_steps {limit}",
                        cml_pyenvs::GYMNASIUM_PREFIX
                    );
                }
            }
            Ok(())
        }
        Command::Replay { config, shard } => replay_role::run_shard(&Config::load(&config)?, shard),
        Command::ReplayStats { config, timeout } => {
            replay_role::print_stats(&Config::load(&config)?, seconds("--timeout", timeout)?)
        }
        Command::Keygen { file } => replay_role::keygen(&file),
        Command::Actor {
            config,
            max_unrolls,
            json,
        } => actor_role::run_actor(&Config::load(&config)?, max_unrolls, json),
        Command::ReplayLoad {
            config,
            shard,
            actor_id,
            unrolls,
            batch,
            timeout,
        } => {
            let options = replay_load::LoadOptions {
                shard,
                actor_id,
                unrolls,
                batch,
                timeout: seconds("--timeout", timeout)?,
            };
            replay_load::run_load(&Config::load(&config)?, &options)
        }
    }
}

/// Parses the process arguments, runs the command, and turns an error into a
/// message on stderr and exit code 1.
pub fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
