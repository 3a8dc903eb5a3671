//! How novel the latest short sequence of values is: the share of the sequences ending at the
//! current value, of lengths 1 to `ORDERS`, that the series has not shown recently.
//!
//! This is the idea of the Contextual Anomaly Detector (CAD OSE, Smirnov, in NAB) in a simple,
//! bounded form: values are put in a few bins of the range seen so far, and each sequence of bins
//! is remembered in a hashed bit set. A pattern the series repeats (a daily cron spike, a square
//! wave) becomes familiar however large it is, while a new level, a new shape or a first spike
//! is novel. Two generations of bit sets are kept, so old patterns are forgotten and the state
//! is bounded.

use serde::{Deserialize, Serialize};

/// Bins of the range: few, so that noise within a level does not look novel.
const BINS: f64 = 8.0;

/// The longest sequence remembered, in values.
const ORDERS: usize = 4;

/// Each longer sequence weighs this much less than the next shorter one in the novelty, so that
/// a new value or pair of values counts more than a new long sequence, which noise alone makes.
const ORDER_WEIGHT_DECAY: f64 = 0.7;

/// How fast the usual novelty follows the novelty, per value.
const USUAL_RATE: f64 = 0.01;

/// Bits per generation; a generation is retired after `WORDS * 64 / 4` new bits.
const WORDS: usize = 512;

/// How far the range grows past a value outside it, as a share of the range, so that a slowly
/// growing series does not move its bins at every new high.
const RANGE_MARGIN: f64 = 0.1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Context {
    low: f64,
    high: f64,
    started: bool,
    /// The bins of the latest values, newest first.
    recent: Vec<u8>,
    current: Vec<u64>,
    previous: Vec<u64>,
    /// Bits set in `current` since it was started.
    current_bits: usize,
    /// The usual novelty, an exponentially weighted mean.
    usual: f64,
    /// Values seen, up to `1 / USUAL_RATE`: until then `usual` is their plain mean, so it is not
    /// pulled towards its starting 0 while the first values are scored.
    #[serde(default)]
    seen: u32,
}

/// How novel a value is, in [0, 1].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Novelty {
    /// The weighted share of the sequences ending at the value that were not seen recently.
    pub(crate) raw: f64,
    /// How far `raw` is above the series' usual novelty, as a share of the way to 1: noise makes
    /// some long sequences new all the time on some series, and that is not news.
    pub(crate) excess: f64,
}

impl Context {
    pub(crate) fn new() -> Self {
        Context {
            low: 0.0,
            high: 0.0,
            started: false,
            recent: Vec::with_capacity(ORDERS),
            current: vec![0; WORDS],
            previous: vec![0; WORDS],
            current_bits: 0,
            usual: 0.0,
            seen: 0,
        }
    }

    /// The heap bytes this holds: two generations of bits and the latest bins.
    pub(crate) fn state_bytes() -> usize {
        2 * WORDS * std::mem::size_of::<u64>() + ORDERS
    }

    /// Learns `value` and returns its novelty. `rare` says whether the value's residual is rare
    /// for the series: only then does a value beyond the range count as novel at every order.
    pub(crate) fn observe(&mut self, value: f64, rare: bool) -> Novelty {
        if !self.started {
            self.started = true;
            self.low = value;
            self.high = value;
        }
        let span = self.high - self.low;
        // A rare value beyond the range seen by more than a bin is new at every order, even though
        // the grown range puts it in a bin that the old highs or lows filled.
        let beyond = rare && (value - self.high).max(self.low - value) > span / BINS;
        if value > self.high {
            self.high = value + RANGE_MARGIN * span;
        } else if value < self.low {
            self.low = value - RANGE_MARGIN * span;
        }
        let span = self.high - self.low;
        let bin = if span > 0.0 && span.is_finite() {
            ((value - self.low) / span * BINS)
                .floor()
                .clamp(0.0, BINS - 1.0) as u8
        } else {
            0
        };
        // A restored state of another size is brought back to this one rather than trusted.
        self.current.resize(WORDS, 0);
        self.previous.resize(WORDS, 0);
        self.recent.insert(0, bin);
        self.recent.truncate(ORDERS);
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut unseen = 0.0;
        let mut total = 0.0;
        let mut weight = 1.0;
        for (order, bin) in self.recent.iter().enumerate() {
            hash = (hash ^ u64::from(*bin) ^ ((order as u64) << 8)).wrapping_mul(0x0100_0000_01b3);
            let mixed = hash ^ (hash >> 29);
            let bit = (mixed % (WORDS as u64 * 64)) as usize;
            let (word, mask) = (bit / 64, 1_u64 << (bit % 64));
            let seen = self.current[word] & mask != 0 || self.previous[word] & mask != 0;
            if !seen {
                unseen += weight;
            }
            total += weight;
            weight *= ORDER_WEIGHT_DECAY;
            if self.current[word] & mask == 0 {
                self.current[word] |= mask;
                self.current_bits += 1;
            }
        }
        if self.current_bits >= WORDS * 64 / 4 {
            self.previous = std::mem::replace(&mut self.current, vec![0; WORDS]);
            self.current_bits = 0;
        }
        let novelty = if beyond { 1.0 } else { unseen / total };
        let usual = self.usual;
        let ramp = (1.0 / USUAL_RATE) as u32;
        self.seen = (self.seen + 1).min(ramp);
        let rate = USUAL_RATE.max(1.0 / f64::from(self.seen));
        self.usual += rate * (novelty - self.usual);
        Novelty {
            raw: novelty,
            excess: ((novelty - usual) / (1.0 - usual)).clamp(0.0, 1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_pattern_becomes_familiar_and_a_new_level_is_novel() {
        let mut context = Context::new();
        let pattern = [0.0, 10.0, 3.0, 7.0, 5.0];
        let mut last = 1.0;
        for round in 0..20 {
            for value in pattern {
                last = context.observe(value, true).raw;
            }
            if round == 0 {
                continue;
            }
            assert!(last == 0.0, "round {round}: {last}");
        }
        assert_eq!(context.observe(30.0, true).raw, 1.0);
        assert!(context.observe(30.0, true).excess > 0.5);
    }
}
