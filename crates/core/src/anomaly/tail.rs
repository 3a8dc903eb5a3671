//! How surprising a non-negative signal is, from the tail of its own recent history.
//!
//! This is the peaks-over-threshold idea of extreme value theory (as in SPOT, Siffer et al., KDD
//! 2017), kept to its simplest form: above its `1 - TAIL_FRACTION` quantile a signal's tail is
//! taken to be exponential with the mean excess seen over that quantile. A series with heavy
//! tails (spiky CPU, bursty traffic) thus learns that large deviations are common for it, and a
//! quiet series that small ones are not, without a hand-set threshold per series.

use serde::{Deserialize, Serialize};

use super::window::Window;

/// The share of history above the tail quantile.
const TAIL_FRACTION: f64 = 0.05;

/// The mean excess never goes below this, in the signal's units (robust z-scores), so that a
/// history of identical values does not make the next small change infinitely surprising.
const MIN_EXCESS: f64 = 0.25;

/// The recent history of one signal and the tail fitted to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tail {
    history: Window,
}

impl Tail {
    pub(crate) fn new(history_points: usize) -> Self {
        Tail {
            history: Window::new(history_points),
        }
    }

    /// The tail quantile and the mean excess over it, or `None` before any history.
    fn fit(&self) -> Option<(f64, f64)> {
        let len = self.history.len();
        if len == 0 {
            return None;
        }
        let above = ((len as f64 * TAIL_FRACTION).ceil() as usize).clamp(1, len);
        let quantile = self.history.sorted_at(len - above);
        let excess = self.history.sum_of_top(above) / above as f64 - quantile;
        Some((quantile, excess.max(MIN_EXCESS)))
    }

    /// The surprise of `signal`: `-log10` of the probability of a value at least this large.
    pub(crate) fn surprise(&self, signal: f64) -> f64 {
        let Some((quantile, excess)) = self.fit() else {
            return 0.0;
        };
        if signal <= quantile {
            return 0.0;
        }
        let fitted =
            -TAIL_FRACTION.log10() + (signal - quantile) / excess * std::f64::consts::LOG10_E;
        // A value that history holds `k` times at or above is not rarer than `k / len`, however
        // thin the fitted tail: a daily spike is expected once it has been seen.
        let at_or_above = self.history.count_at_or_above(signal);
        if at_or_above > 0 {
            fitted.min(-(at_or_above as f64 / self.history.len() as f64).log10())
        } else {
            fitted
        }
    }

    /// The signal whose surprise is `surprise`: the inverse of [`Tail::surprise`] above the quantile.
    pub(crate) fn signal_at(&self, surprise: f64) -> Option<f64> {
        let (quantile, excess) = self.fit()?;
        let above = (surprise + TAIL_FRACTION.log10()).max(0.0);
        Some(quantile + above * excess / std::f64::consts::LOG10_E)
    }

    pub(crate) fn learn(&mut self, signal: f64) {
        self.history.push(signal);
    }
}
