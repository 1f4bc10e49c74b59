use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = mandate::cli::Args::parse();
    mandate::cli::run(args)
}
