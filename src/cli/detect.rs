//! `homeostat detect`: scores a `timestamp,value` CSV with the streaming anomaly detector.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use homeostat_core::anomaly::{Detector, Input, Settings};

/// The command's arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "dir"])))]
pub struct Args {
    /// The `timestamp,value` CSV to score (timestamps as unix seconds, RFC 3339 or
    /// `YYYY-MM-DD HH:MM:SS`).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write `timestamp,value,anomaly_score` here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE", requires = "input")]
    pub output: Option<PathBuf>,
    /// Score every `.csv` under this folder instead (each file is its own series) ...
    #[arg(long, value_name = "DIR", requires = "out")]
    pub dir: Option<PathBuf>,
    /// ... into the same relative paths under this folder.
    #[arg(long, value_name = "DIR", requires = "dir")]
    pub out: Option<PathBuf>,
    /// Detector settings as a JSON object, overriding the defaults, e.g.
    /// `{"cooldown_points": 200}` (the same fields as a detector's config).
    #[arg(long, value_name = "JSON")]
    pub settings: Option<String>,
}

pub fn run(args: &Args) -> u8 {
    let settings = match &args.settings {
        None => Settings::default(),
        Some(json) => match serde_json::from_str::<Settings>(json) {
            Ok(settings) => settings,
            Err(error) => {
                eprintln!("error: invalid `--settings`: {error}");
                return super::EXIT_USAGE;
            }
        },
    };
    match (&args.input, &args.dir, &args.out) {
        (Some(input), _, _) => match score_to(input, args.output.as_deref(), &settings) {
            Ok(()) => 0,
            Err(error) => report(&error),
        },
        (None, Some(dir), Some(out)) => score_dir(dir, out, &settings),
        _ => {
            eprintln!("error: give `--input FILE` or `--dir DIR --out DIR`");
            super::EXIT_USAGE
        }
    }
}

/// Why a file could not be scored.
#[derive(Debug)]
enum Error {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Input {
        path: PathBuf,
        line: usize,
        column: String,
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "`{}`: {source}", path.display()),
            Error::Input {
                path,
                line,
                column,
                message,
            } => {
                write!(
                    f,
                    "`{}` line {line} column `{column}`: {message}",
                    path.display()
                )
            }
        }
    }
}

fn report(error: &Error) -> u8 {
    eprintln!("error: {error}");
    match error {
        Error::Io { .. } => super::EXIT_ERROR,
        Error::Input { .. } => super::EXIT_USAGE,
    }
}

fn score_dir(dir: &Path, out: &Path, settings: &Settings) -> u8 {
    let mut files = Vec::new();
    if let Err(source) = collect_csv(dir, &mut files) {
        return report(&Error::Io {
            path: dir.to_owned(),
            source,
        });
    }
    files.sort();
    if files.is_empty() {
        eprintln!("error: no `.csv` file under `{}`", dir.display());
        return super::EXIT_USAGE;
    }
    let mut status = 0;
    for input in &files {
        let relative = input.strip_prefix(dir).unwrap_or(input);
        let output = out.join(relative);
        let made = match output.parent() {
            Some(parent) => fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_owned(),
                source,
            }),
            None => Ok(()),
        };
        if let Err(error) = made.and_then(|()| score_to(input, Some(&output), settings)) {
            status = status.max(report(&error));
        }
    }
    status
}

fn collect_csv(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_csv(&path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "csv") {
            files.push(path);
        }
    }
    Ok(())
}

/// Scores `input` into `output` (stdout when `None`), and says on stderr what was odd about its
/// clock or values, if anything.
fn score_to(input: &Path, output: Option<&Path>, settings: &Settings) -> Result<(), Error> {
    let text = fs::read_to_string(input).map_err(|source| Error::Io {
        path: input.to_owned(),
        source,
    })?;
    let (scored, counts) =
        score_text(&text, settings).map_err(|(line, column, message)| Error::Input {
            path: input.to_owned(),
            line,
            column: column.to_owned(),
            message,
        })?;
    if let Some(note) = describe(&counts) {
        eprintln!("note: `{}`: {note}", input.display());
    }
    match output {
        Some(path) => fs::write(path, scored).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        }),
        None => {
            super::show::emit(&scored);
            Ok(())
        }
    }
}

/// What was odd about a file's clock or values, or `None` if nothing was.
fn describe(input: &Input) -> Option<String> {
    let mut parts = Vec::new();
    if input.steps_back > 0 {
        parts.push(format!(
            "{} timestamp{} before the previous one (by up to {} s), each scored at the previous one's time",
            input.steps_back,
            plural(input.steps_back),
            input.largest_step_back_secs
        ));
    }
    if input.repeats > 0 {
        parts.push(format!(
            "{} repeated timestamp{}",
            input.repeats,
            plural(input.repeats)
        ));
    }
    if input.gaps > 0 {
        parts.push(format!(
            "{} gap{} (an interval over twice the usual)",
            input.gaps,
            plural(input.gaps)
        ));
    }
    if input.non_finite > 0 {
        parts.push(format!(
            "{} value{} empty or not finite, skipped (their rows have no score)",
            input.non_finite,
            plural(input.non_finite)
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "{} value{} scored; {}",
            input.scored,
            plural(input.scored),
            parts.join(", ")
        )
    })
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// Scores a whole CSV text, in the order of its rows; on bad input, the 1-based line, the column
/// and what is wrong. Timestamps that go back or repeat are scored (the detector clamps its
/// clock), and an empty or non-finite value keeps its row with an empty score; both are counted.
fn score_text(
    text: &str,
    settings: &Settings,
) -> Result<(String, Input), (usize, &'static str, String)> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let Some((_, header)) = lines.by_ref().find(|(_, line)| !line.trim().is_empty()) else {
        return Err((
            1,
            "timestamp",
            "the file is empty; expected a `timestamp,value` header".to_owned(),
        ));
    };
    let names: Vec<&str> = header.split(',').map(unquote).collect();
    let column = |name: &'static str| {
        names
            .iter()
            .position(|candidate| candidate.eq_ignore_ascii_case(name))
            .ok_or((1, name, format!("the header has no `{name}` column")))
    };
    let (time_column, value_column) = (column("timestamp")?, column("value")?);
    let mut detector = Detector::new(settings);
    let mut scored = String::with_capacity(text.len() + text.len() / 2);
    scored.push_str("timestamp,value,anomaly_score\n");
    for (line_number, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(unquote).collect();
        let field = |at: usize, name: &'static str| {
            fields.get(at).copied().ok_or((
                line_number,
                name,
                format!(
                    "the line has {} fields, fewer than the header",
                    fields.len()
                ),
            ))
        };
        let (time_text, value_text) = (
            field(time_column, "timestamp")?,
            field(value_column, "value")?,
        );
        let at = parse_timestamp(time_text).ok_or_else(|| {
            (
                line_number,
                "timestamp",
                format!("`{time_text}` is not unix seconds, RFC 3339 or `YYYY-MM-DD HH:MM:SS`"),
            )
        })?;
        // An empty value is a missing one, as exports write it: skipped like a NaN.
        let value: f64 = if value_text.is_empty() {
            f64::NAN
        } else {
            value_text.parse().map_err(|_| {
                (
                    line_number,
                    "value",
                    format!("`{value_text}` is not a number"),
                )
            })?
        };
        // A refused value keeps its row, unscored, so that the output lines up with the input.
        let score = match detector.observe(at, value) {
            Ok(score) => format!("{:.6}", score.score),
            Err(_) => String::new(),
        };
        scored.push_str(time_text);
        scored.push(',');
        scored.push_str(value_text);
        scored.push(',');
        scored.push_str(&score);
        scored.push('\n');
    }
    Ok((scored, detector.input()))
}

fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(field)
}

/// Unix seconds (fractions are truncated), RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff]` read as UTC.
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e15).then(|| secs.floor() as i64);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp());
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
    .map(|at| at.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_each_accepted_form() {
        assert_eq!(parse_timestamp("1400000000"), Some(1_400_000_000));
        assert_eq!(parse_timestamp("1400000000.7"), Some(1_400_000_000));
        assert_eq!(parse_timestamp("2014-05-13 16:53:20"), Some(1_400_000_000));
        assert_eq!(
            parse_timestamp("2014-05-13 16:53:20.000000"),
            Some(1_400_000_000)
        );
        assert_eq!(
            parse_timestamp("2014-05-13T18:53:20+02:00"),
            Some(1_400_000_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn bad_input_names_the_line_and_column() {
        let settings = Settings::default();
        let error = score_text("timestamp,value\n1,2\n2,x\n", &settings).unwrap_err();
        assert_eq!((error.0, error.1), (3, "value"));
        let error = score_text("time,value\n1,2\n", &settings).unwrap_err();
        assert_eq!((error.0, error.1), (1, "timestamp"));
        let error = score_text("timestamp,value\n5,2\nlater,2\n", &settings).unwrap_err();
        assert_eq!((error.0, error.1), (3, "timestamp"));
    }

    #[test]
    fn a_clock_that_steps_back_or_repeats_is_scored_through_and_reported() {
        let text = "timestamp,value\n\
                    2014-04-01 00:00:00,1\n\
                    2014-04-01 00:05:00,2\n\
                    2014-04-01 00:10:00,3\n\
                    2014-04-01 00:15:00,4\n\
                    2014-04-01 00:20:00,5\n\
                    2014-04-01 00:25:00,6\n\
                    2014-04-01 00:30:00,7\n\
                    2014-04-01 00:35:00,8\n\
                    2014-04-01 00:40:00,\n\
                    2014-04-01 00:45:00,9\n\
                    2014-03-31 23:55:00,10\n\
                    2014-03-31 23:55:00,11\n\
                    2014-04-01 03:00:00,12\n";
        let (scored, input) = score_text(text, &Settings::default()).unwrap();
        assert_eq!(scored.lines().count(), 14);
        assert!(scored.contains("2014-04-01 00:40:00,,\n"), "{scored}");
        assert!(
            scored.ends_with("2014-04-01 03:00:00,12,0.000000\n"),
            "{scored}"
        );
        assert_eq!(
            (
                input.scored,
                input.steps_back,
                input.repeats,
                input.gaps,
                input.non_finite
            ),
            (12, 2, 0, 1, 1),
            "{input:?}"
        );
        assert_eq!(input.largest_step_back_secs, 50 * 60);
        let note = describe(&input).unwrap();
        assert!(
            note.starts_with(
                "12 values scored; 2 timestamps before the previous one (by up to 3000 s)"
            ),
            "{note}"
        );
        assert!(describe(&Input::default()).is_none());
    }

    #[test]
    fn every_row_is_echoed_with_a_score() {
        let (scored, _) =
            score_text("timestamp,value\n1,2\n\n2,NaN\n3,4\n", &Settings::default()).unwrap();
        assert_eq!(
            scored,
            "timestamp,value,anomaly_score\n1,2,0.000000\n2,NaN,\n3,4,0.000000\n"
        );
    }
}
