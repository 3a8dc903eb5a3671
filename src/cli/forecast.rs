//! `homeostat forecast`: forecasts a `timestamp,value` CSV, or backtests the forecaster on it.

/// The command's arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `timestamp,value` CSV.
    #[arg(long)]
    pub input: std::path::PathBuf,
}

pub fn run(_args: &Args) -> u8 {
    eprintln!("error: not built yet");
    super::EXIT_ERROR
}
