use std::process::ExitCode;

fn main() -> ExitCode {
    cml_rl::cli::main()
}
