//! How unlikely the recent average of a raw anomaly score is, under that score's own history.
//!
//! This is the "anomaly likelihood" of Numenta's HTM detector (Ahmad et al., Neurocomputing 2017),
//! written afresh: the mean of the last few raw scores is compared with a normal distribution
//! fitted to the long-run history of such means, and its tail probability is the likelihood.
//! Averaging makes a sustained change (a new level, more noise, a broken pattern) stand out while
//! an isolated noisy value is diluted; the fit makes the result comparable across series, whatever
//! the raw score's usual level on each.

use serde::{Deserialize, Serialize};

/// The least standard deviation of the averaged raw score, so that a series whose raw score has
/// been constant does not make the slightest change infinitely unlikely.
const MIN_DEVIATION: f64 = 0.02;

/// The least mean of the averaged raw score, as in HTM: a raw score that is usually 0 is still
/// expected to be a little above 0 now and then.
const MIN_MEAN: f64 = 0.03;

/// The recent raw scores and the history of their averages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Likelihood {
    /// The last raw scores (at most `recent_points`), oldest first once full at `recent_next`.
    recent: Vec<f64>,
    recent_next: usize,
    recent_points: usize,
    /// The averages of the raw score, at most `history_points`, oldest at `history_next` once full.
    history: Vec<f64>,
    history_next: usize,
    history_points: usize,
    /// The normal distribution fitted to `history`, refitted every `refit_points` values.
    mean: f64,
    deviation: f64,
    since_fit: usize,
    refit_points: usize,
}

impl Likelihood {
    pub(crate) fn new(recent_points: usize, history_points: usize, refit_points: usize) -> Self {
        Likelihood {
            recent: Vec::with_capacity(recent_points.max(1)),
            recent_next: 0,
            recent_points: recent_points.max(1),
            history: Vec::with_capacity(history_points.max(1)),
            history_next: 0,
            history_points: history_points.max(1),
            mean: MIN_MEAN,
            deviation: MIN_DEVIATION,
            since_fit: 0,
            refit_points: refit_points.max(1),
        }
    }

    /// The surprise `-log10(p)` of the recent average with `raw` (in [0, 1]) as its newest
    /// value, where `p` is its upper tail probability under the fitted distribution.
    pub(crate) fn surprise(&self, raw: f64) -> f64 {
        let len = self.recent.len();
        let sum: f64 = self.recent.iter().sum();
        let average = if len < self.recent_points {
            (sum + raw) / (len + 1) as f64
        } else {
            // The newest value takes the oldest's place.
            let oldest = self.recent[self.recent_next % len];
            (sum - oldest + raw) / len as f64
        };
        let z = (average - self.mean) / self.deviation.max(MIN_DEVIATION);
        upper_tail_surprise(z)
    }

    /// Learns `raw` into the recent average and, if `calibrate`, the average into the history
    /// the distribution is fitted to: the averages of an alarm episode are not what is usual.
    pub(crate) fn learn(&mut self, raw: f64, calibrate: bool) {
        push(
            &mut self.recent,
            &mut self.recent_next,
            self.recent_points,
            raw,
        );
        if !calibrate {
            return;
        }
        let average = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        push(
            &mut self.history,
            &mut self.history_next,
            self.history_points,
            average,
        );
        self.since_fit += 1;
        // Refit on every value until the history holds a refit's worth: the starting guesses
        // would otherwise judge the first scored values of a short warm-up, and alarm on them.
        if self.since_fit >= self.refit_points || self.history.len() < self.refit_points {
            self.since_fit = 0;
            self.fit();
        }
    }

    fn fit(&mut self) {
        let len = self.history.len() as f64;
        let mean = self.history.iter().sum::<f64>() / len;
        let variance = self
            .history
            .iter()
            .map(|value| (value - mean) * (value - mean))
            .sum::<f64>()
            / len;
        self.mean = mean.max(MIN_MEAN);
        self.deviation = variance.sqrt().max(MIN_DEVIATION);
    }
}

fn push(ring: &mut Vec<f64>, next: &mut usize, capacity: usize, value: f64) {
    // Written so that a restored state with an inconsistent position cannot index out of range.
    let capacity = capacity.max(1);
    ring.truncate(capacity);
    if ring.len() < capacity {
        ring.push(value);
        *next = ring.len() % capacity;
    } else {
        let at = *next % capacity;
        ring[at] = value;
        *next = (at + 1) % capacity;
    }
}

/// `-log10` of the standard normal upper tail probability at `z`, computed in logs so that it
/// stays finite far out in the tail (the complementary error function of Numerical Recipes,
/// relative error under 1.2e-7).
pub(crate) fn upper_tail_surprise(z: f64) -> f64 {
    if z <= 0.0 {
        // Below the mean the tail holds over half the mass: no surprise worth reporting.
        return 0.0;
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x);
    let polynomial = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    // p = erfc(x) / 2 = t * exp(polynomial) / 2.
    let ln_p = t.ln() + polynomial - std::f64::consts::LN_2;
    (-ln_p * std::f64::consts::LOG10_E).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_surprise_matches_the_normal_distribution() {
        assert_eq!(upper_tail_surprise(-1.0), 0.0);
        assert_eq!(upper_tail_surprise(0.0), 0.0);
        // P(Z > 1.6449) = 0.05, P(Z > 4.2649) = 1e-5, P(Z > 7.9413) = 1e-15.
        assert!((upper_tail_surprise(1.6449) - 1.301).abs() < 1e-3);
        assert!((upper_tail_surprise(4.2649) - 5.0).abs() < 1e-3);
        assert!((upper_tail_surprise(7.9413) - 15.0).abs() < 1e-2);
        assert!(upper_tail_surprise(1e6).is_finite());
    }

    #[test]
    fn a_sustained_rise_is_unlikely_and_a_single_one_is_not() {
        let mut likelihood = Likelihood::new(10, 1024, 100);
        let mut surprises = Vec::new();
        for index in 0..2000 {
            let raw = if index == 1000 || index >= 1500 {
                0.6
            } else {
                0.05 * f64::from(index % 3)
            };
            surprises.push(likelihood.surprise(raw));
            likelihood.learn(raw, true);
        }
        assert!(surprises[1000] < 5.0, "{}", surprises[1000]);
        assert!(surprises[1505] > 5.0, "{}", surprises[1505]);
    }
}
