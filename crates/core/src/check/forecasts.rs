//! `forecasts:`: unique names, the query, the capacity, seconds that hold a step, the bound, the
//! level, seasonal periods, counts and a Prometheus to ask.

use super::Report;

pub(crate) fn check(report: &mut Report) {
    let config = report.config;
    report.unique(
        "forecasts",
        config.forecasts.iter().map(|f| f.name.as_str()),
    );
    for (index, forecast) in config.forecasts.iter().enumerate() {
        let mut error = |field: &str, message: String, hint: &str| {
            report.error(
                "forecasts",
                Some(index),
                field,
                message,
                Some(hint.to_string()),
            )
        };
        if forecast.name.trim().is_empty() {
            error(
                "name",
                "is empty".into(),
                "name the forecast: `checkout-rps`",
            );
        }
        if let Err(problem) = promql_parser::parser::parse(&forecast.query) {
            error(
                "query",
                format!("is not valid PromQL: {problem}"),
                "write the query whose value must stay under `capacity`",
            );
        }
        if !forecast.capacity.is_finite() {
            error(
                "capacity",
                "is not a number".into(),
                "`1200` requests per second, say",
            );
        }
        let seconds = [
            ("step_secs", forecast.step_secs, 1.0),
            ("interval_secs", forecast.interval_secs, 1.0),
            ("horizon_secs", forecast.horizon_secs, forecast.step_secs),
            (
                "history_secs",
                forecast.history_secs,
                3.0 * forecast.step_secs,
            ),
        ];
        for (field, value, least) in seconds {
            if !(value.is_finite() && value >= least) {
                error(
                    field,
                    format!("{value} is under {least} seconds"),
                    "the horizon must hold a step, and the history at least three",
                );
            }
        }
        if forecast.history_secs / forecast.step_secs > 11_000.0 {
            error(
                "history_secs",
                format!(
                    "{} steps of {} s; Prometheus answers at most 11,000 points",
                    (forecast.history_secs / forecast.step_secs).round(),
                    forecast.step_secs
                ),
                "lengthen `step_secs` or shorten `history_secs`",
            );
        }
        if !matches!(forecast.bound.as_str(), "upper" | "point" | "lower") {
            error(
                "bound",
                format!("`{}` is not a bound", forecast.bound),
                "use `upper`, `point` or `lower`",
            );
        }
        if !(forecast.level > 0.0 && forecast.level < 1.0) {
            error(
                "level",
                format!("{} is not a coverage between 0 and 1", forecast.level),
                "`0.95` for a 95% interval",
            );
        }
        if forecast
            .seasonal_periods
            .as_ref()
            .is_some_and(|periods| periods.iter().any(|p| *p < 2))
        {
            error(
                "seasonal_periods",
                "has a period under 2 steps".into(),
                "give periods in steps: `[288]` is a day of 5-minute steps",
            );
        }
        if forecast.max_series == 0 {
            error("max_series", "is 0".into(), "give a count of at least 1");
        }
        if config
            .prometheus_url(forecast.prometheus_url.as_deref())
            .is_none()
        {
            error(
                "prometheus_url",
                "a forecast needs a Prometheus to ask".into(),
                "set `prometheus.url`, or `prometheus_url` here",
            );
        }
    }
}
