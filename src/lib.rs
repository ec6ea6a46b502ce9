//! The `cml-rl` program as a library: configuration, the command line and
//! the commands, so that a user program can register its own envs and then
//! run the same command line (`cml_rl::cli::main()`).

pub mod actor_role;
pub mod cli;
pub mod config;
pub mod eval;
pub mod eval_compare;
pub mod learner_role;
pub mod plot;
pub mod replay_load;
pub mod replay_role;
pub mod rollout;
pub mod supervisor;
pub mod train;
