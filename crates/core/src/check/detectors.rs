//! `detectors:`: unique names, an instant-vector query, intervals, the score threshold, counts
//! and a Prometheus to ask.

use super::Report;

pub(crate) fn check(report: &mut Report) {
    let config = report.config;
    report.unique(
        "detectors",
        config.detectors.iter().map(|d| d.name.as_str()),
    );
    for (index, detector) in config.detectors.iter().enumerate() {
        let mut error = |field: &str, message: String, hint: &str| {
            report.error(
                "detectors",
                Some(index),
                field,
                message,
                Some(hint.to_string()),
            )
        };
        if detector.name.trim().is_empty() {
            error(
                "name",
                "is empty".into(),
                "name the detector: `checkout-latency`",
            );
        }
        if let Err(problem) = promql_parser::parser::parse(&detector.query) {
            error(
                "query",
                format!("is not valid PromQL: {problem}"),
                "write an instant-vector query, as in a Prometheus alert rule",
            );
        }
        if !(detector.interval_secs.is_finite() && detector.interval_secs >= 1.0) {
            error(
                "interval_secs",
                format!(
                    "{} is not a number of seconds of at least 1",
                    detector.interval_secs
                ),
                "score every `60` seconds, say",
            );
        }
        let threshold = detector.threshold();
        if !(threshold > 0.0 && threshold <= 1.0) {
            error(
                "threshold",
                format!("{threshold} is not a score above 0 and at most 1"),
                "`0.5` fires on about a one-in-100,000 deviation",
            );
        }
        if !(detector.backfill_secs.is_finite() && detector.backfill_secs >= 0.0) {
            error(
                "backfill_secs",
                format!("{} is not a number of seconds", detector.backfill_secs),
                "`604800` learns from the last week; `0` from now on",
            );
        }
        if !(detector.forget_after_secs.is_finite()
            && detector.forget_after_secs >= detector.interval_secs)
        {
            error(
                "forget_after_secs",
                format!(
                    "{} is shorter than the interval",
                    detector.forget_after_secs
                ),
                "forget a series after an hour without it: `3600`",
            );
        }
        if detector.max_series == 0 || detector.resolve_after == 0 {
            let field = if detector.max_series == 0 {
                "max_series"
            } else {
                "resolve_after"
            };
            error(field, "is 0".into(), "give a count of at least 1");
        }
        if config
            .prometheus_url(detector.prometheus_url.as_deref())
            .is_none()
        {
            error(
                "prometheus_url",
                "a detector needs a Prometheus to ask".into(),
                "set `prometheus.url`, or `prometheus_url` here",
            );
        }
    }
}
