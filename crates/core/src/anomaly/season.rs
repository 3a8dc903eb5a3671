//! A seasonal profile: the usual value for each slot of a period (a day, a week), learned online.

use serde::{Deserialize, Serialize};

/// One slot of the period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Slot {
    /// Exponentially weighted mean of the values seen in this slot.
    mean: f64,
    /// How many values this slot has seen (saturating).
    points: u32,
}

/// The usual value per slot of a period, plus a shared offset that follows level shifts.
///
/// The prediction for a time is its slot's mean plus `offset`, a fast moving average of the
/// latest residuals: after a level shift the offset carries the new level at once, while the
/// slot means catch up over the following periods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Profile {
    period_secs: i64,
    slots: Vec<Slot>,
    offset: f64,
    /// Exponentially weighted mean absolute residual: this profile's error.
    error: f64,
    /// How many residuals `error` is made of (saturating).
    errors_seen: u32,
}

/// The least number of values a slot must have seen to predict.
const MIN_SLOT_POINTS: u32 = 2;

impl Profile {
    pub(crate) fn new(period_secs: i64, slots: usize) -> Self {
        Profile {
            period_secs: period_secs.max(1),
            slots: vec![Slot::default(); slots.max(1)],
            offset: 0.0,
            error: 0.0,
            errors_seen: 0,
        }
    }

    pub(crate) fn period_secs(&self) -> i64 {
        self.period_secs
    }

    fn slot_of(&self, at_unix_secs: i64) -> usize {
        let within = at_unix_secs.rem_euclid(self.period_secs);
        let slot = i128::from(within) * self.slots.len() as i128 / i128::from(self.period_secs);
        usize::try_from(slot).unwrap_or(0).min(self.slots.len() - 1)
    }

    /// The usual value at `at_unix_secs`, once its slot has been seen enough.
    pub(crate) fn predict(&self, at_unix_secs: i64) -> Option<f64> {
        let slot = self.slots.get(self.slot_of(at_unix_secs))?;
        (slot.points >= MIN_SLOT_POINTS).then_some(slot.mean + self.offset)
    }

    /// The mean absolute residual, once it rests on `min_points` residuals; `rate` is the
    /// error's learning rate (see [`unbiased`]).
    pub(crate) fn error(&self, min_points: u32, rate: f64) -> Option<f64> {
        (self.errors_seen >= min_points)
            .then(|| unbiased(self.error, rate, self.errors_seen.into()))
    }

    /// Learns `value` at `at_unix_secs`. `slot_rate` weighs a new value in its slot's mean,
    /// `fast_rate` the offset and `error_rate` the error; `limit` caps a residual's pull on
    /// the error, so that one spike does not make the profile look bad for long.
    pub(crate) fn learn(&mut self, at_unix_secs: i64, value: f64, rates: Rates) {
        let index = self.slot_of(at_unix_secs);
        let Some(slot) = self.slots.get(index).copied() else {
            return;
        };
        if slot.points >= MIN_SLOT_POINTS {
            let residual = value - (slot.mean + self.offset);
            let limit = if self.errors_seen > 0 {
                4.0 * unbiased(self.error, rates.error, self.errors_seen.into())
                    .max(f64::MIN_POSITIVE)
            } else {
                f64::INFINITY
            };
            self.error += rates.error * (residual.abs().min(limit) - self.error);
            self.errors_seen = self.errors_seen.saturating_add(1);
            self.offset += rates.offset * residual.clamp(-limit, limit);
        }
        let slot = &mut self.slots[index];
        // The first values of a slot set its mean quickly; later ones move it at `rates.slot`.
        let rate = (1.0 / f64::from(slot.points.saturating_add(1))).max(rates.slot);
        // The slot learns the value net of the offset, so the offset is not counted twice.
        slot.mean += rate * (value - self.offset - slot.mean);
        slot.points = slot.points.saturating_add(1);
    }
}

/// Learning rates of a [`Profile`], each in (0, 1].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rates {
    pub(crate) slot: f64,
    pub(crate) offset: f64,
    pub(crate) error: f64,
}

/// An exponentially weighted mean that started at 0, corrected for that start: after `updates`
/// updates at `rate`, the weights of the values seen sum to `1 - (1 - rate)^updates`, not 1, and
/// the mean is that much too small (for a day of values at the default rate, 37% too small after
/// 128). Uncorrected, a profile that started later than the sliding median looked better than
/// it was for weeks, and a young error clipped the residuals that should have raised it.
pub(crate) fn unbiased(average: f64, rate: f64, updates: u64) -> f64 {
    let weight = 1.0 - (1.0 - rate).powf(updates as f64);
    if weight > 0.0 {
        average / weight
    } else {
        average
    }
}
