//! `homeostat detect`: scores a `timestamp,value` CSV with the streaming anomaly detector.

/// The command's arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `timestamp,value` CSV to score.
    #[arg(long)]
    pub input: std::path::PathBuf,
}

pub fn run(_args: &Args) -> u8 {
    eprintln!("error: not built yet");
    super::EXIT_ERROR
}
