//! `homeostat completion SHELL` and `homeostat man --dir DIR`: shell completions and man pages,
//! generated from the same clap definitions that parse the command line, so they cannot drift.

use std::path::Path;

use clap::CommandFactory;

use super::show::emit;
use super::{Args, EXIT_ERROR};

/// Prints the completion script for `shell` to stdout.
pub fn completion(shell: clap_complete::Shell) -> u8 {
    let mut command = Args::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "homeostat", &mut script);
    emit(&String::from_utf8_lossy(&script));
    0
}

/// Writes `homeostat.1` and one page per subcommand, nested ones included
/// (`homeostat-runs-show.1`), into `dir`.
pub fn man(dir: &Path) -> u8 {
    if let Err(error) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create `{}`: {error}", dir.display());
        return EXIT_ERROR;
    }
    let mut command = Args::command();
    // Subcommands' pages name them `homeostat-runs-show`, as git's and kubectl's do, and take the
    // version and the global flags from the top.
    command.build();
    let mut written = 0usize;
    if let Err(error) = write_pages(&command, "homeostat", dir, &mut written) {
        eprintln!("error: {error}");
        return EXIT_ERROR;
    }
    eprintln!("wrote {written} man pages to `{}`", dir.display());
    0
}

fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> Result<(), String> {
    if command.is_hide_set() {
        return Ok(());
    }
    let page = command.clone().name(name.to_string());
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(|error| format!("cannot render the page of `{name}`: {error}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, roff)
        .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
    *written += 1;
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
