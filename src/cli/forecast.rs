//! `homeostat forecast`: forecasts a `timestamp,value` CSV, or backtests the forecaster on it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use homeostat_core::clock::{Clock, SystemClock};
use homeostat_forecast::{Backtest, Forecast, Score, Series, Settings};

use super::{EXIT_ERROR, EXIT_USAGE};

/// The command's arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The CSV: a header naming `timestamp` and `value` columns, then one sample a line.
    /// Timestamps are unix seconds, RFC 3339, or `YYYY-MM-DD HH:MM:SS` in UTC.
    #[arg(long)]
    pub input: PathBuf,
    /// How far to forecast: a number of points, or a duration such as `90m`, `6h`, `2d`, `1w`
    /// (rounded up to whole steps of the series).
    #[arg(long)]
    pub horizon: String,
    /// Score the forecaster on the last `--origins` windows of the series instead of forecasting.
    #[arg(long)]
    pub backtest: bool,
    /// With `--backtest`: how many windows of the horizon, at the end of the series, to forecast.
    #[arg(long, default_value_t = 5)]
    pub origins: usize,
    /// A seasonal period, as a number of points or a duration (`1d`); repeat for several, or
    /// give `none` to turn seasonality off. By default a day and a week, when the history holds
    /// two of them.
    #[arg(long = "period", value_name = "PERIOD")]
    pub periods: Vec<String>,
    /// Coverage of the prediction interval, in (0, 1).
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Gaps of up to this many missing samples are filled linearly; history before a longer gap
    /// is dropped.
    #[arg(long, default_value_t = 12)]
    pub max_gap_steps: usize,
    /// Write the forecast CSV (or the backtest table) here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write JSON instead of CSV or a table.
    #[arg(long)]
    pub json: bool,
}

/// A failure and its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn io(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_ERROR,
            message: message.into(),
        }
    }
}

pub fn run(args: &Args) -> u8 {
    match run_inner(args) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.code
        }
    }
}

fn run_inner(args: &Args) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|error| Failure::io(format!("cannot read `{}`: {error}", args.input.display())))?;
    let input = parse_csv(&text)
        .map_err(|message| Failure::usage(format!("{}: {message}", args.input.display())))?;
    let mut settings = Settings {
        level: args.level,
        max_gap_steps: args.max_gap_steps,
        ..Settings::default()
    };
    let lib_error = |error: homeostat_forecast::Error| {
        Failure::usage(format!("{}: {error}", args.input.display()))
    };
    let series = Series::from_points(&input.points, &settings).map_err(lib_error)?;
    let step_secs = series.step_secs();
    let horizon = parse_points(&args.horizon, step_secs)
        .map_err(|message| Failure::usage(format!("--horizon: {message}")))?;
    if !args.periods.is_empty() {
        settings.seasonal_periods = Some(parse_periods(&args.periods, step_secs)?);
    }
    eprintln!(
        "series: {} samples on a {step_secs} s step: {} points, {} filled, {} dropped before a gap",
        input.points.len(),
        series.len(),
        series.filled_points(),
        series.dropped_points()
    );

    let clock = SystemClock::default();
    let output = if args.backtest {
        let began = clock.monotonic();
        let backtest = homeostat_forecast::backtest(&series, horizon, args.origins, &settings)
            .map_err(lib_error)?;
        let backtest_elapsed = clock.monotonic() - began;
        // The fit the daemon would run: all of the history.
        let began = clock.monotonic();
        let full = homeostat_forecast::forecast(&series, horizon, &settings).map_err(lib_error)?;
        let full_elapsed = clock.monotonic() - began;
        let timing = Timing {
            mean_origin: backtest_elapsed / args.origins.max(1) as u32,
            full_history: full_elapsed,
        };
        if args.json {
            backtest_json(&args.input, &backtest, &full, &timing)
        } else {
            backtest_table(&args.input, &series, &backtest, &full, &timing)
        }
    } else {
        let began = clock.monotonic();
        let forecast =
            homeostat_forecast::forecast(&series, horizon, &settings).map_err(lib_error)?;
        let elapsed = clock.monotonic() - began;
        eprintln!(
            "model: {}, fit and forecast of {horizon} points in {:.1} ms",
            forecast.model,
            millis(elapsed)
        );
        for note in &forecast.notes {
            eprintln!("note: {note}");
        }
        if args.json {
            serde_json::to_string_pretty(&forecast).unwrap_or_default() + "\n"
        } else {
            forecast_csv(&forecast, input.format)
        }
    };
    write_output(args.output.as_deref(), &output)
}

fn write_output(path: Option<&Path>, output: &str) -> Result<(), Failure> {
    match path {
        None => {
            super::show::emit(output);
            Ok(())
        }
        Some(path) => std::fs::write(path, output)
            .map(|()| eprintln!("ok: wrote `{}`", path.display()))
            .map_err(|error| Failure::io(format!("cannot write `{}`: {error}", path.display()))),
    }
}

/// How the input wrote its timestamps, so the forecast is written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFormat {
    Unix,
    Rfc3339,
    /// `YYYY-MM-DD HH:MM:SS`, as in the NAB corpus.
    Plain,
}

#[derive(Debug)]
struct Input {
    points: Vec<(i64, f64)>,
    format: TimeFormat,
}

/// Parses the CSV; errors name the line and column.
fn parse_csv(text: &str) -> Result<Input, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    let (header_line, header) = lines.next().ok_or("the file is empty")?;
    let columns: Vec<String> = split_fields(header)
        .map(|field| field.to_ascii_lowercase())
        .collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|column| column == name)
            .ok_or(format!(
                "line {header_line}: the header `{header}` has no `{name}` column; \
             expected a header such as `timestamp,value`"
            ))
    };
    let (time_column, value_column) = (column("timestamp")?, column("value")?);
    let mut points = Vec::new();
    let mut format = None;
    for (line_number, line) in lines {
        let fields: Vec<&str> = split_fields(line).collect();
        let field = |index: usize, name: &str| {
            fields.get(index).copied().ok_or(format!(
                "line {line_number}: no `{name}` column (field {}) in `{line}`",
                index + 1
            ))
        };
        let time_text = field(time_column, "timestamp")?;
        let (unix_secs, time_format) = parse_timestamp(time_text).ok_or(format!(
            "line {line_number}, column `timestamp`: cannot read `{time_text}` as a time; \
             expected unix seconds, RFC 3339 or `YYYY-MM-DD HH:MM:SS`"
        ))?;
        let value_text = field(value_column, "value")?;
        let value: f64 = value_text
            .parse()
            .ok()
            .filter(|value: &f64| value.is_finite())
            .ok_or(format!(
                "line {line_number}, column `value`: `{value_text}` is not a finite number"
            ))?;
        if let Some(&(previous, _)) = points.last() {
            if unix_secs < previous {
                return Err(format!(
                    "line {line_number}, column `timestamp`: `{time_text}` is earlier than the \
                     line before; consider sorting the file by time"
                ));
            }
        }
        format.get_or_insert(time_format);
        points.push((unix_secs, value));
    }
    let format = format.ok_or("the file has a header but no samples")?;
    Ok(Input { points, format })
}

/// The fields of a CSV line, trimmed and unquoted; the inputs have no commas inside fields.
fn split_fields(line: &str) -> impl Iterator<Item = &str> {
    line.split(',').map(|field| field.trim().trim_matches('"'))
}

fn parse_timestamp(text: &str) -> Option<(i64, TimeFormat)> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some((secs, TimeFormat::Unix));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e15)
            .then(|| (secs.round() as i64, TimeFormat::Unix));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some((time.timestamp(), TimeFormat::Rfc3339));
    }
    ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|pattern| NaiveDateTime::parse_from_str(text, pattern).ok())
        .map(|time| (time.and_utc().timestamp(), TimeFormat::Plain))
}

fn format_timestamp(unix_secs: i64, format: TimeFormat) -> String {
    let time = DateTime::from_timestamp(unix_secs, 0);
    match (format, time) {
        (TimeFormat::Rfc3339, Some(time)) => time.to_rfc3339_opts(SecondsFormat::Secs, true),
        (TimeFormat::Plain, Some(time)) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        (TimeFormat::Unix, _) | (_, None) => unix_secs.to_string(),
    }
}

/// A number of points, or a duration (`90s`, `30m`, `6h`, `2d`, `1w`) rounded up to whole steps.
fn parse_points(text: &str, step_secs: i64) -> Result<usize, String> {
    let text = text.trim();
    if let Ok(points) = text.parse::<usize>() {
        return match points {
            0 => Err("must be at least one point".to_owned()),
            points => Ok(points),
        };
    }
    let unit_at = text.find(|c: char| c.is_ascii_alphabetic()).ok_or(format!(
        "`{text}` is neither a number of points nor a duration"
    ))?;
    let (number, unit) = text.split_at(unit_at);
    let unit_secs = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`; consider `s`, `m`, `h`, `d` or `w`"
            ))
        }
    };
    let number: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|number: &f64| number.is_finite() && *number > 0.0)
        .ok_or(format!("`{text}` is not a positive duration"))?;
    let points = (number * unit_secs / step_secs as f64).ceil();
    if points > homeostat_forecast::MAX_HORIZON as f64 {
        return Err(format!(
            "`{text}` is {points} points of {step_secs} s, over the limit of {}",
            homeostat_forecast::MAX_HORIZON
        ));
    }
    Ok(points.max(1.0) as usize)
}

fn parse_periods(texts: &[String], step_secs: i64) -> Result<Vec<usize>, Failure> {
    if texts.iter().any(|text| text == "none") {
        return Ok(Vec::new());
    }
    texts
        .iter()
        .map(|text| match parse_points(text, step_secs) {
            Ok(period) if period >= 2 => Ok(period),
            Ok(period) => Err(Failure::usage(format!(
                "--period: `{text}` is {period} point of {step_secs} s; a period needs two or more"
            ))),
            Err(message) => Err(Failure::usage(format!("--period: {message}"))),
        })
        .collect()
}

fn forecast_csv(forecast: &Forecast, format: TimeFormat) -> String {
    let mut csv = String::from("timestamp,forecast,lower,upper\n");
    for point in &forecast.points {
        let _ = writeln!(
            csv,
            "{},{},{},{}",
            format_timestamp(point.unix_secs, format),
            point.value,
            point.lower,
            point.upper
        );
    }
    csv
}

struct Timing {
    /// The backtest's wall time over its origins: one fit and forecast each.
    mean_origin: Duration,
    /// One fit and forecast on the whole series.
    full_history: Duration,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn backtest_table(
    path: &Path,
    series: &Series,
    backtest: &Backtest,
    full: &Forecast,
    timing: &Timing,
) -> String {
    let cell = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut table = String::new();
    let _ = writeln!(
        table,
        "== {name}: {} points, step {} s, horizon {} points ({}), {} origins, \
         baseline SNaive({}), interval {:.0}%",
        series.len(),
        backtest.step_secs,
        backtest.horizon,
        human_duration(backtest.horizon as i64 * backtest.step_secs),
        backtest.origins.len(),
        baseline_periods(backtest),
        backtest.level * 100.0,
    );
    let _ = writeln!(
        table,
        "{:<20} {:<28} {:>9} {:>8} {:>11} {:>11} {:>9}",
        "origin", "model", "MAPE %", "MASE", "SNaive MAPE", "SNaive MASE", "coverage"
    );
    let row = |table: &mut String,
               label: &str,
               model: &str,
               score: &Score,
               naive: &Score,
               coverage: f64| {
        let _ = writeln!(
            table,
            "{label:<20} {model:<28} {:>9} {:>8} {:>11} {:>11} {:>8.0}%",
            cell(score.mape),
            cell(score.mase),
            cell(naive.mape),
            cell(naive.mase),
            coverage * 100.0
        );
    };
    for origin in &backtest.origins {
        let label = format_timestamp(origin.origin_unix_secs, TimeFormat::Plain);
        let model = origin.model.to_string();
        row(
            &mut table,
            &label,
            &model,
            &origin.score,
            &origin.seasonal_naive,
            origin.coverage,
        );
    }
    let verdict = match (backtest.score.mase, backtest.seasonal_naive.mase) {
        (Some(model), Some(naive)) if model < naive => "beats SNaive",
        (Some(_), Some(_)) => "does not beat SNaive",
        _ => "",
    };
    row(
        &mut table,
        "mean",
        verdict,
        &backtest.score,
        &backtest.seasonal_naive,
        backtest.coverage,
    );
    let _ = writeln!(
        table,
        "timing: {:.1} ms per backtest fit+forecast (mean over origins); \
         {:.1} ms on all {} points ({}) with {}",
        millis(timing.mean_origin),
        millis(timing.full_history),
        series.len(),
        human_duration(series.len() as i64 * series.step_secs()),
        full.model,
    );
    table
}

fn backtest_json(path: &Path, backtest: &Backtest, full: &Forecast, timing: &Timing) -> String {
    let value = serde_json::json!({
        "input": path.display().to_string(),
        "backtest": backtest,
        "full_history_model": full.model.to_string(),
        "timing_ms": {
            "mean_origin": millis(timing.mean_origin),
            "full_history": millis(timing.full_history),
        },
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// The distinct baseline periods of the origins, `288` or `1,288`.
fn baseline_periods(backtest: &Backtest) -> String {
    let mut periods: Vec<usize> = backtest
        .origins
        .iter()
        .map(|origin| origin.baseline_period)
        .collect();
    periods.sort_unstable();
    periods.dedup();
    let periods: Vec<String> = periods.iter().map(usize::to_string).collect();
    periods.join(",")
}

/// A duration in its largest whole unit, or in days or hours with one decimal.
fn human_duration(secs: i64) -> String {
    match secs {
        secs if secs > 0 && secs % 604_800 == 0 => format!("{}w", secs / 604_800),
        secs if secs > 0 && secs % 86_400 == 0 => format!("{}d", secs / 86_400),
        secs if secs >= 86_400 => format!("{:.1}d", secs as f64 / 86_400.0),
        secs if secs > 0 && secs % 3_600 == 0 => format!("{}h", secs / 3_600),
        secs if secs >= 3_600 => format!("{:.1}h", secs as f64 / 3_600.0),
        secs if secs > 0 && secs % 60 == 0 => format!("{}m", secs / 60),
        secs => format!("{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_nab_times_and_extra_columns_is_read() {
        let input =
            parse_csv("id,timestamp,value\n1,2014-04-01 00:00:00,1.5\n\n2,2014-04-01 00:05:00,2\n")
                .unwrap();
        assert_eq!(
            input.points,
            vec![(1_396_310_400, 1.5), (1_396_310_700, 2.0)]
        );
        assert_eq!(input.format, TimeFormat::Plain);
        let input = parse_csv("Timestamp,Value\n2014-04-01T00:00:00Z,1\n").unwrap();
        assert_eq!(input.format, TimeFormat::Rfc3339);
        assert_eq!(
            format_timestamp(1_396_310_400, TimeFormat::Rfc3339),
            "2014-04-01T00:00:00Z"
        );
        let input = parse_csv("timestamp,value\n1396310400,1\n").unwrap();
        assert_eq!(input.format, TimeFormat::Unix);
    }

    #[test]
    fn csv_errors_name_the_line_and_column() {
        let error = parse_csv("time,value\n1,2\n").unwrap_err();
        assert!(error.contains("no `timestamp` column"), "{error}");
        let error = parse_csv("timestamp,value\n1,2\nyesterday,3\n").unwrap_err();
        assert!(error.starts_with("line 3, column `timestamp`"), "{error}");
        let error = parse_csv("timestamp,value\n1,2\n2,NaN\n").unwrap_err();
        assert!(error.starts_with("line 3, column `value`"), "{error}");
        let error = parse_csv("timestamp,value\n5,2\n2,1\n").unwrap_err();
        assert!(error.contains("earlier than the line before"), "{error}");
        let error = parse_csv("timestamp,value\n5\n").unwrap_err();
        assert!(error.starts_with("line 2: no `value` column"), "{error}");
        assert!(parse_csv("timestamp,value\n").is_err());
    }

    #[test]
    fn horizons_are_counts_or_durations() {
        assert_eq!(parse_points("72", 300), Ok(72));
        assert_eq!(parse_points("6h", 300), Ok(72));
        assert_eq!(parse_points("2d", 300), Ok(576));
        assert_eq!(parse_points("7m", 300), Ok(2));
        assert_eq!(parse_points("1.5h", 60), Ok(90));
        assert!(parse_points("0", 300).is_err());
        assert!(parse_points("6y", 300).is_err());
        assert!(parse_points("-1h", 300).is_err());
        assert!(parse_points("1000w", 1).is_err());
    }
}
