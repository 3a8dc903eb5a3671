//! Reading a Prometheus histogram from `/metrics` text and estimating quantiles from its buckets.
//!
//! homeostat measures receipt-to-dispatch itself, so the bench only sees bucket counts: quantiles are interpolated
//! linearly within the bucket that holds the rank, as PromQL's `histogram_quantile` does, and are no finer than
//! the bucket bounds.

use std::fmt;

/// One histogram, summed over all its label sets other than `le`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound, cumulative count)`, sorted by bound; the last bound is `+Inf` when exposed.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// A quantile estimate, saying when the buckets cannot bound it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantile {
    /// Interpolated within a finite bucket, in the histogram's unit.
    Value(f64),
    /// The rank falls in the `+Inf` bucket: the quantile is above this, the largest finite bound.
    Above(f64),
    /// No observations in the window.
    Empty,
}

impl Quantile {
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Quantile::Value(value) => serde_json::json!(value),
            Quantile::Above(bound) => serde_json::json!({ "above": bound }),
            Quantile::Empty => serde_json::Value::Null,
        }
    }
}

impl fmt::Display for Quantile {
    /// Seconds shown as milliseconds, since the targets are stated in milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantile::Value(seconds) => write!(f, "{:.3} ms", seconds * 1e3),
            Quantile::Above(bound) => write!(f, "> {:.3} ms", bound * 1e3),
            Quantile::Empty => f.write_str("n/a"),
        }
    }
}

/// Finds the histogram `name` in Prometheus or OpenMetrics text; `None` if it has no buckets there.
pub fn parse(text: &str, name: &str) -> Option<Histogram> {
    let mut histogram = Histogram::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // A line that does not parse is skipped rather than failing the scrape: it may be another metric.
        let Some((suffix, labels, value)) = split_sample(rest) else {
            continue;
        };
        let Some(value) = parse_number(value) else {
            continue;
        };
        match suffix {
            "_bucket" => {
                let Some(bound) = label(labels, "le").and_then(parse_number) else {
                    continue;
                };
                match histogram
                    .buckets
                    .iter_mut()
                    .find(|(existing, _)| *existing == bound)
                {
                    Some((_, total)) => *total += value,
                    None => histogram.buckets.push((bound, value)),
                }
            }
            "_sum" => histogram.sum += value,
            "_count" => histogram.count += value,
            _ => {}
        }
    }
    if histogram.buckets.is_empty() {
        return None;
    }
    histogram
        .buckets
        .sort_by(|left, right| left.0.total_cmp(&right.0));
    Some(histogram)
}

/// Splits `_bucket{le="0.1"} 3 1700000000` into its suffix, label text and value.
fn split_sample(rest: &str) -> Option<(&str, &str, &str)> {
    let name_end = rest.find(['{', ' ', '\t']).unwrap_or(rest.len());
    let (suffix, after) = rest.split_at(name_end);
    let (labels, after) = match after.strip_prefix('{') {
        Some(inner) => {
            let close = inner.rfind('}')?;
            (&inner[..close], &inner[close + 1..])
        }
        None => ("", after),
    };
    // A timestamp may follow the value; it is not needed.
    let value = after.split_whitespace().next()?;
    Some((suffix, labels, value))
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == key).then(|| value.trim().trim_matches('"'))
    })
}

fn parse_number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

impl Histogram {
    /// Observations made between `before` and `self`, for counters that only grow while the process lives.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(bound, count)| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|(other, _)| *other == bound)
                    .map_or(0.0, |&(_, count)| count);
                (bound, (count - earlier).max(0.0))
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - before.sum,
            count: (self.count - before.count).max(0.0),
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile (0 to 1), assuming observations are spread evenly within each bucket and start at 0.
    pub fn quantile(&self, q: f64) -> Quantile {
        let total = self
            .buckets
            .last()
            .map_or(0.0, |&(_, count)| count)
            .max(self.count);
        if total <= 0.0 {
            return Quantile::Empty;
        }
        let rank = q * total;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for &(bound, count) in &self.buckets {
            if count >= rank && count > lower_count {
                if bound.is_infinite() {
                    return Quantile::Above(lower_bound);
                }
                let fraction = (rank - lower_count) / (count - lower_count);
                return Quantile::Value(lower_bound + (bound - lower_bound) * fraction);
            }
            lower_bound = bound;
            lower_count = count;
        }
        // The `+Inf` bucket was not exposed and `_count` exceeds the last bucket.
        Quantile::Above(lower_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "homeostat_dispatch_latency_seconds";

    fn text(counts: [u64; 4], sum: f64) -> String {
        format!(
            "# HELP {NAME} Receipt to dispatch.\n# TYPE {NAME} histogram\n\
             {NAME}_bucket{{rule=\"a\",le=\"0.0005\"}} {}\n\
             {NAME}_bucket{{rule=\"a\",le=\"0.001\"}} {}\n\
             {NAME}_bucket{{rule=\"a\",le=\"0.002\"}} {}\n\
             {NAME}_bucket{{rule=\"a\",le=\"+Inf\"}} {}\n\
             {NAME}_sum{{rule=\"a\"}} {sum}\n{NAME}_count{{rule=\"a\"}} {}\n\
             {NAME}_other_total 5\n# EOF\n",
            counts[0], counts[1], counts[2], counts[3], counts[3]
        )
    }

    #[test]
    fn parses_buckets_sum_and_count() {
        let histogram = parse(&text([10, 20, 30, 40], 0.5), NAME).unwrap();
        assert_eq!(
            histogram.buckets,
            vec![
                (0.0005, 10.0),
                (0.001, 20.0),
                (0.002, 30.0),
                (f64::INFINITY, 40.0)
            ]
        );
        assert_eq!(histogram.sum, 0.5);
        assert_eq!(histogram.count, 40.0);
    }

    #[test]
    fn sums_label_sets_and_ignores_other_metrics() {
        let both = format!(
            "{}{}",
            text([1, 2, 3, 4], 1.0),
            text([1, 2, 3, 4], 1.0).replace("\"a\"", "\"b\"")
        );
        let histogram = parse(&both, NAME).unwrap();
        assert_eq!(histogram.count, 8.0);
        assert_eq!(histogram.buckets[0], (0.0005, 2.0));
        assert!(parse("other_bucket{le=\"1\"} 1\n", NAME).is_none());
    }

    #[test]
    fn interpolates_within_the_bucket_of_the_rank() {
        let before = parse(&text([0, 0, 0, 0], 0.0), NAME).unwrap();
        let after = parse(&text([50, 90, 100, 100], 0.05), NAME).unwrap();
        let window = after.since(&before);
        // Rank 50 is the top of the first bucket; rank 99 is 90% of the way through (0.001, 0.002].
        assert_eq!(window.quantile(0.5), Quantile::Value(0.0005));
        match window.quantile(0.99) {
            Quantile::Value(value) => assert!((value - 0.0019).abs() < 1e-12, "{value}"),
            other => panic!("expected a value, got {other:?}"),
        }
        assert_eq!(window.mean(), Some(0.0005));
    }

    #[test]
    fn reports_ranks_in_the_infinite_bucket_as_above_the_last_bound() {
        let histogram = parse(&text([0, 0, 0, 10], 1.0), NAME).unwrap();
        assert_eq!(histogram.quantile(0.5), Quantile::Above(0.002));
        assert_eq!(Histogram::default().quantile(0.5), Quantile::Empty);
    }

    #[test]
    fn only_counts_the_window() {
        let before = parse(&text([10, 10, 10, 10], 0.01), NAME).unwrap();
        let after = parse(&text([10, 20, 20, 20], 0.02), NAME).unwrap();
        let window = after.since(&before);
        assert_eq!(window.count, 10.0);
        match window.quantile(0.5) {
            Quantile::Value(value) => assert!((value - 0.00075).abs() < 1e-12, "{value}"),
            other => panic!("expected a value, got {other:?}"),
        }
    }
}
