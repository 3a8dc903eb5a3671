//! Capacity forecasts: on an interval, each series of a query is fit on its recent history
//! (`homeostat_forecast`: MSTL with ETS, seasonal periods from the step) and forecast over the
//! horizon. When the forecast crosses the capacity, a `CapacityForecast` alert fires with when and
//! how soon; it resolves when a later forecast no longer crosses it. A rule on that alert scales
//! ahead of the demand, under the usual guards.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use homeostat_core::config::forecasts::Forecast as Config;
use homeostat_core::event::Labels;
use homeostat_core::{Event, Status};
use homeostat_forecast::{first_crossing, Bound, Crossing, Forecast, Series, Settings};

use crate::Handle;

/// The source name of forecast events.
pub const SOURCE: &str = "forecast";

fn bound(config: &Config) -> Bound {
    match config.bound.as_str() {
        "point" => Bound::Point,
        "lower" => Bound::Lower,
        _ => Bound::Upper,
    }
}

fn settings(config: &Config) -> Settings {
    Settings {
        seasonal_periods: config.seasonal_periods.clone(),
        level: config.level,
        step_secs: Some(config.step_secs.round().max(1.0) as i64),
        ..Settings::default()
    }
}

/// What one fit of one series says.
#[derive(Debug)]
pub struct Outlook {
    pub forecast: Forecast,
    pub crossing: Option<Crossing>,
    /// The latest observed value.
    pub now: f64,
}

/// Fits one series and looks for the first crossing of the capacity. CPU-bound: run it off the
/// async workers.
pub fn outlook(config: &Config, samples: &[(f64, f64)]) -> Result<Outlook, String> {
    let settings = settings(config);
    let points: Vec<(i64, f64)> = samples
        .iter()
        .map(|(at, value)| (at.round() as i64, *value))
        .collect();
    let series = Series::from_points(&points, &settings).map_err(|error| error.to_string())?;
    let horizon = (config.horizon_secs / config.step_secs).ceil().max(1.0) as usize;
    let forecast = homeostat_forecast::forecast(&series, horizon, &settings)
        .map_err(|error| error.to_string())?;
    let crossing = first_crossing(&forecast, config.capacity, bound(config));
    Ok(Outlook {
        crossing,
        now: samples.last().map(|(_, value)| *value).unwrap_or(f64::NAN),
        forecast,
    })
}

fn event_labels(config: &Config, series: &Labels) -> Labels {
    let mut labels = series.clone();
    labels.remove("__name__");
    labels.extend(config.labels.clone());
    labels.insert("alertname".into(), "CapacityForecast".into());
    labels.insert("forecast".into(), config.name.clone());
    labels
}

/// `95` as `1m 35s`, `7200` as `2h 0m`.
fn lead(secs: i64) -> String {
    match secs {
        secs if secs < 60 => format!("{secs}s"),
        secs if secs < 3_600 => format!("{}m {}s", secs / 60, secs % 60),
        secs => format!("{}h {}m", secs / 3_600, secs % 3_600 / 60),
    }
}

fn time(at: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(at, 0).single().unwrap_or_default()
}

/// The event for a series whose outlook changed: firing with the crossing, or resolved.
pub fn event(
    config: &Config,
    series: &Labels,
    outlook: &Outlook,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Event {
    let labels = event_labels(config, series);
    let (status, summary) = match &outlook.crossing {
        Some(crossing) => (
            Status::Firing,
            format!(
                "`{}` is forecast to reach its capacity {} at {} UTC, in {} ({} bound {:.4}; {:.4} now; model {})",
                config.name,
                config.capacity,
                time(crossing.at_unix_secs).format("%H:%M:%S"),
                lead(crossing.lead_secs),
                config.bound,
                crossing.value,
                outlook.now,
                outlook.forecast.model,
            ),
        ),
        None => (
            Status::Resolved,
            format!(
                "`{}` is no longer forecast to reach its capacity {} within {} min ({:.4} now)",
                config.name,
                config.capacity,
                (config.horizon_secs / 60.0).round(),
                outlook.now
            ),
        ),
    };
    let peak = outlook
        .forecast
        .points
        .iter()
        .map(|point| point.upper)
        .fold(f64::NEG_INFINITY, f64::max);
    Event::raised(
        SOURCE,
        status,
        labels,
        Labels::from([("summary".to_string(), summary)]),
        Some(since),
        now,
        Some(serde_json::json!({
            "forecast": config.name,
            "capacity": config.capacity,
            "bound": config.bound,
            "now": outlook.now,
            "crossing_at": outlook.crossing.map(|c| time(c.at_unix_secs)),
            "lead_secs": outlook.crossing.map(|c| c.lead_secs),
            "crossing_value": outlook.crossing.map(|c| c.value),
            "horizon_peak_upper": peak,
            "model": outlook.forecast.model.to_string(),
        })),
    )
}

/// Runs one forecast forever.
pub async fn run(config: Config, prometheus_url: String, handle: Handle, client: reqwest::Client) {
    // Which series are firing, and since when; after a restart a forecast that still crosses
    // fires again (the correlator folds the repeat into the open incident).
    let mut firing: BTreeMap<Labels, DateTime<Utc>> = BTreeMap::new();
    let mut interval = tokio::time::interval(Duration::from_secs_f64(config.interval_secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let end = handle.clock().now().timestamp() as f64;
        let range = (end - config.history_secs, end, config.step_secs);
        let history = match crate::prometheus::range(
            &client,
            &prometheus_url,
            &config.query,
            range,
            Duration::from_secs(60),
        )
        .await
        {
            Ok(history) => history,
            Err(error) => {
                tracing::warn!(forecast = %config.name, %error, "cannot read history");
                handle.metrics().source_error(SOURCE, "query_failed");
                continue;
            }
        };
        let series: Vec<(Labels, Vec<(f64, f64)>)> =
            history.into_iter().take(config.max_series).collect();
        tracing::debug!(forecast = %config.name, series = series.len(), points = series.iter().map(|(_, s)| s.len()).sum::<usize>(), "fitting");
        let fit_config = config.clone();
        let outlooks = tokio::task::spawn_blocking(move || {
            series
                .into_iter()
                .map(|(labels, samples)| {
                    let outlook = outlook(&fit_config, &samples);
                    (labels, outlook)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let now = handle.clock().now();
        let mut events = Vec::new();
        for (labels, outlook) in outlooks {
            let outlook = match outlook {
                Ok(outlook) => outlook,
                Err(error) => {
                    tracing::warn!(forecast = %config.name, series = ?labels, %error, "cannot forecast a series");
                    continue;
                }
            };
            match (firing.get(&labels).copied(), outlook.crossing.is_some()) {
                (None, true) => {
                    firing.insert(labels.clone(), now);
                    events.push(event(&config, &labels, &outlook, now, now));
                }
                (Some(since), false) => {
                    firing.remove(&labels);
                    events.push(event(&config, &labels, &outlook, since, now));
                }
                _ => {}
            }
        }
        if events.is_empty() {
            continue;
        }
        for event in &events {
            tracing::info!(forecast = %config.name, status = event.status.as_str(), summary = %event.annotations.get("summary").map(String::as_str).unwrap_or(""), "capacity forecast");
        }
        handle.journal_own(SOURCE, events, None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capacity: f64) -> Config {
        serde_yaml_ng::from_str(&format!(
            "{{name: rps, query: 'sum(rate(requests_total[5m]))', capacity: {capacity}, horizon_secs: 7200, step_secs: 300, labels: {{service: checkout}}}}"
        ))
        .expect("a valid forecast")
    }

    /// Three days of 5-minute requests per second with a daily peak of 1,000 at noon.
    fn history() -> Vec<(f64, f64)> {
        let start = 1_700_006_400.0 - 1_700_006_400.0 % 86_400.0;
        (0..864)
            .map(|i| {
                let at = start + f64::from(i) * 300.0;
                let day = (at % 86_400.0) / 86_400.0;
                let rps = 600.0 - 400.0 * (day * std::f64::consts::TAU).cos();
                (at, rps)
            })
            .collect()
    }

    #[test]
    fn the_daily_peak_is_seen_coming_and_the_event_says_when() {
        // The history ends at midnight; the peak (1,000 at noon) is 12 hours away, beyond the
        // two-hour horizon. Eight hours more (829 at 08:20) and the crossing of 900, near 09:00, is within
        // it.
        let mut samples = history();
        let quiet = outlook(&config(900.0), &samples).expect("fits");
        assert!(quiet.crossing.is_none(), "{:?}", quiet.crossing);
        let start = samples.last().unwrap().0;
        samples.extend((1..=100).map(|i| {
            let at = start + f64::from(i) * 300.0;
            let day = (at % 86_400.0) / 86_400.0;
            (at, 600.0 - 400.0 * (day * std::f64::consts::TAU).cos())
        }));
        let coming = outlook(&config(900.0), &samples).expect("fits");
        let crossing = coming.crossing.expect("the peak is coming");
        assert!(
            crossing.lead_secs > 0 && crossing.lead_secs <= 7200,
            "{crossing:?}"
        );
        assert!(coming.now < 900.0);
        let labels = Labels::from([("job".to_string(), "api".to_string())]);
        let now = time(1_700_000_000);
        let fired = event(&config(900.0), &labels, &coming, now, now);
        assert_eq!(fired.status, Status::Firing);
        assert_eq!(fired.labels["alertname"], "CapacityForecast");
        assert_eq!(fired.labels["forecast"], "rps");
        assert_eq!(fired.labels["service"], "checkout");
        assert!(
            fired.annotations["summary"].contains("is forecast to reach its capacity 900"),
            "{}",
            fired.annotations["summary"]
        );
        let resolved = event(&config(900.0), &labels, &quiet, now, now);
        assert_eq!(resolved.status, Status::Resolved);
        assert_eq!(resolved.fingerprint, fired.fingerprint);
    }
}
