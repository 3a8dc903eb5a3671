//! The `homeostat` binary: parses the command line, loads config and hands off to the crates.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: many small short-lived allocations from several tokio
/// workers contended on glibc's arena locks (measured in bench/README.md, "Runbook engine").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // Help and version go to stdout and succeed; a usage error exits 64, as STYLE.md says.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(cli::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli::init_logging(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    runtime.block_on(cli::run(args))
}
