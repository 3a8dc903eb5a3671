//! Streaming anomaly detection for metric series.
//!
//! A [`Detector`] follows one series, one value at a time, and scores each value from that value
//! and the ones before it only. Per value it:
//!
//! 1. predicts the value with up to three baselines: the median of a sliding window (level and
//!    trend), and daily and weekly profiles (seasonality), keeping the one that explains the value
//!    best, each with its own robust scale, and turns the standardized residual into a point
//!    surprise `-log10(p)`, where `p` comes from the tail of the series' own recent residuals
//!    (`tail`). On a series that a seasonal profile explains much better than the window, the
//!    value's departure from the profile is also scored against its own recent tail, so that a
//!    missing daily peak or a changed daily shape, which the window absorbs, is still seen;
//! 2. measures how novel the latest short sequence of values is, in a few bins of the range seen
//!    so far (`context`, after CAD OSE): a repeated pattern, however spiky, becomes familiar;
//! 3. averages the last few of the larger of those raw scores and asks how unlikely that
//!    average is under its own long-run distribution (`likelihood`, after HTM's anomaly
//!    likelihood): a run of small deviations or novel sequences is a sustained change;
//! 4. scores the larger of the novelty (beyond the series' usual novelty) and the sustained
//!    surprise, discounted by the recent peak so that an episode raises one alarm, and starts a
//!    cooldown after an alarm. Only a value that is news itself scores: one that keeps to the
//!    seasonal profile of a series that profile explains, or whose every short sequence is
//!    familiar, scores 0 whatever the sustained surprise.
//!
//! What the detector calls normal is learned from values outside alarm episodes only: the
//! residuals of an alarm and its cooldown do not enter the tails and averages that calibrate the
//! surprises (as SPOT does not learn the values it flags), so a second anomaly like the first is
//! as surprising as the first. The baselines and the sequence memory learn every value, so that
//! a lasting change becomes the new normal.
//!
//! Input is taken as it comes: a timestamp before the previous one is read as the previous one
//! (the clock is clamped), repeated timestamps and gaps are scored like any other value, and
//! each is counted ([`Input`]); only values that are not finite numbers are refused, and counted.
//!
//! See `docs/anomaly.md` for the reasoning, the settings and the evaluation on NAB.

mod context;
mod likelihood;
mod season;
mod tail;
mod window;

use serde::{Deserialize, Serialize};

use context::Context;
use likelihood::Likelihood;
use season::{Profile, Rates};
use tail::Tail;
use window::Window;

/// The surprise (`-log10` of a tail probability) that maps to a score of 1.
const MAX_SURPRISE: f64 = 10.0;

/// Seconds in a day and in a week, the periods of the seasonal profiles.
const DAY_SECS: i64 = 86_400;
const WEEK_SECS: i64 = 7 * DAY_SECS;

/// Slots of the daily profile (15 minutes each) and of the weekly one (an hour each).
const DAY_SLOTS: usize = 96;
const WEEK_SLOTS: usize = 168;

/// How fast the baselines' errors forget: about a day of 5-minute values.
const ERROR_RATE: f64 = 1.0 / 288.0;

/// How fast a seasonal slot's mean follows new values, per value.
const SLOT_RATE: f64 = 0.1;

/// A residual counts at most this many current errors when it updates an error.
const ERROR_CLIP: f64 = 4.0;

/// The scale never goes below this share of the median baseline's long-run error, so that a
/// series that sits still most of the time (idle disks, quantized CPU) does not make every
/// small move infinitely surprising.
const FLOOR_SHARE: f64 = 0.5;

/// The share of the recent peak surprise taken off the current surprise.
const PEAK_SHARE: f64 = 0.3;

/// A seasonal profile whose error is below this share of the sliding median's error explains the
/// series (a strong daily or weekly pattern): then a value that departs from the profile is news
/// even when the sliding median explains it (a missing daily peak, a changed daily shape).
const SEASONAL_SHARE: f64 = 0.5;

/// The least point surprise (one in 100) with which a value beyond the range seen is novel at
/// every order of the sequence novelty.
const BEYOND_SURPRISE: f64 = 2.0;

/// The largest standardized residual kept, so that sums over the tail stay finite.
const MAX_SIGNAL: f64 = 1e9;

/// Point surprises averaged into the sustained-deviation signal, as in HTM's anomaly likelihood.
const LIKELIHOOD_RECENT: usize = 10;

/// Averages whose normal fit calibrates the sustained-deviation signal, refitted every
/// `LIKELIHOOD_REFIT` values.
const LIKELIHOOD_HISTORY: usize = 1024;
const LIKELIHOOD_REFIT: usize = 100;

/// Converts a mean absolute deviation to a standard deviation for normal data.
const MEAN_DEVIATION_TO_SIGMA: f64 = 1.2533;

/// The shortest warm-up: below it the first scored value could alarm on nothing.
const MIN_WARMUP_POINTS: u32 = 32;

/// Converts a median absolute deviation to a standard deviation for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// The version of the detector's state: a snapshot of an older version holds what an older
/// algorithm learned, and is better learned afresh (see [`Detector::state_version`]).
pub const STATE_VERSION: u32 = 2;

/// An interval longer than this many times the usual one counts as a gap: at least one value is
/// missing, allowing for a jittered clock.
const GAP_FACTOR: f64 = 2.0;

/// Intervals whose median is the usual interval.
const INTERVALS: usize = 15;

/// Why a value was not scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("value `{value}` is not a finite number; it is skipped")]
    NonFinite { value: f64 },
}

/// What the detector made of its input's clock and values, counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Input {
    /// Values scored.
    pub scored: u64,
    /// Timestamps before the previous one: each is scored and learned at the previous one's
    /// time (the clock is clamped), so the profiles and gaps see time move forward only.
    pub steps_back: u64,
    /// The largest step back, in seconds.
    pub largest_step_back_secs: i64,
    /// Timestamps equal to the previous one.
    pub repeats: u64,
    /// Intervals longer than twice the usual one (the median of the latest 15): values missing.
    pub gaps: u64,
    /// Values that were not finite numbers (NaN, infinities): skipped, the detector unchanged
    /// but for this count.
    pub non_finite: u64,
}

/// The detector's settings. Every field has a default that needs no tuning per series; out of
/// range values are brought into range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Values learned before any is scored (at least 32); scores are 0 and `learning` is true
    /// meanwhile.
    pub warmup_points: u32,
    /// Values in the sliding window whose median and spread are the non-seasonal baseline
    /// (4 to 1024).
    pub window_points: u32,
    /// Past residuals from which the normal tail is learned, and over which the recent peak
    /// surprise fades (16 to 8192).
    pub history_points: u32,
    /// Learn daily and weekly profiles, and use one when it explains a value better than the
    /// window.
    pub seasonality: bool,
    /// After a score at or above `alarm_score`, the next this many scores are 0 (one alarm per
    /// episode, as an incident is opened once), and their values do not teach the detector what
    /// is normal. The default is half the default window: the sliding median has absorbed a
    /// level shift after half a window, and with it the evidence of the shift's onset.
    pub cooldown_points: u32,
    /// The score that starts a cooldown (0 to 1).
    pub alarm_score: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warmup_points: 150,
            window_points: 128,
            history_points: 512,
            seasonality: true,
            cooldown_points: 64,
            alarm_score: 0.5,
        }
    }
}

impl Settings {
    /// The settings with every field brought into its documented range.
    fn clamped(&self) -> Settings {
        Settings {
            // The sequence memory and the likelihood need a few dozen values before their
            // estimates mean anything: a shorter warm-up alarmed on its first scored value.
            warmup_points: self.warmup_points.max(MIN_WARMUP_POINTS),
            window_points: self.window_points.clamp(4, 1024),
            history_points: self.history_points.clamp(16, 8192),
            seasonality: self.seasonality,
            cooldown_points: self.cooldown_points,
            alarm_score: if self.alarm_score.is_nan() {
                1.0
            } else {
                self.alarm_score.clamp(0.0, 1.0)
            },
        }
    }

    /// An upper bound of the detector's state in memory, in bytes, for these settings: it does
    /// not grow with the length of the series: about 39 KiB for the defaults, under 300 KiB for
    /// the largest settings.
    pub fn state_bytes(&self) -> usize {
        let settings = self.clamped();
        let f64_bytes = std::mem::size_of::<f64>();
        // A window holds its values twice: in arrival order and sorted.
        let window = |points: u32| 2 * points as usize * f64_bytes;
        let slot_bytes = std::mem::size_of::<f64>() + std::mem::size_of::<u32>();
        std::mem::size_of::<Detector>()
            + window(settings.window_points)
            + 2 * window(settings.history_points)
            + (DAY_SLOTS + WEEK_SLOTS) * slot_bytes.next_multiple_of(f64_bytes)
            + (LIKELIHOOD_RECENT + LIKELIHOOD_HISTORY) * f64_bytes
            + window(INTERVALS as u32)
            + Context::state_bytes()
    }
}

/// The verdict on one value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// How anomalous the value is, in [0, 1]: the larger of the value's novelty (1 for a rare value
    /// beyond the range seen, about 0.6 for a pair of values never seen in a row) and the
    /// surprise `-log10(p)` / 10 of a sustained change (0.5 is about one in 100,000), less part
    /// of the recent peak. 0 during warm-up and cooldown.
    pub score: f64,
    /// The value the detector expected at this time.
    pub expected: f64,
    /// The range the detector considered normal at this time: a value outside it deviates from
    /// `expected` by more than one in 100,000 of this series' residuals would. It describes the
    /// residual part of the score; a value inside it can still score high for being part of a
    /// novel sequence.
    pub expected_low: f64,
    pub expected_high: f64,
    /// The detector is still warming up; `score` is 0.
    pub learning: bool,
}

/// A streaming anomaly detector for one metric series. Its state is bounded (see
/// [`Settings::state_bytes`]) and serializable, so it can be snapshot and restored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// The algorithm this state was learned by; 0 for snapshots taken before it was recorded.
    #[serde(default)]
    version: u32,
    settings: Settings,
    points: u64,
    first_at: Option<i64>,
    last_at: Option<i64>,
    /// The latest values: their median is the non-seasonal baseline.
    level: Window,
    /// Exponentially weighted mean absolute error of the median baseline.
    level_error: f64,
    daily: Profile,
    weekly: Profile,
    /// The recent standardized residuals, whose tail says how rare a residual is.
    tail: Tail,
    /// The recent standardized residuals from the seasonal profiles alone (absent in snapshots
    /// taken before it was added, and until a profile speaks).
    #[serde(default)]
    season_tail: Option<Tail>,
    /// The recent peak surprise, fading linearly to 0 over `history_points` values.
    recent_peak: f64,
    cooldown_left: u32,
    /// How unlikely the recent average point surprise is: sustained deviations.
    likelihood: Likelihood,
    /// How novel the latest short sequence of values is.
    context: Context,
    /// The latest intervals between timestamps, in seconds, whose median is the usual interval.
    #[serde(default = "intervals")]
    intervals: Window,
    #[serde(default)]
    input: Input,
}

fn intervals() -> Window {
    Window::new(INTERVALS)
}

impl Detector {
    pub fn new(settings: &Settings) -> Self {
        let settings = settings.clamped();
        Detector {
            version: STATE_VERSION,
            points: 0,
            first_at: None,
            last_at: None,
            level: Window::new(settings.window_points as usize),
            level_error: 0.0,
            daily: Profile::new(DAY_SECS, DAY_SLOTS),
            weekly: Profile::new(WEEK_SECS, WEEK_SLOTS),
            tail: Tail::new(settings.history_points as usize),
            season_tail: None,
            recent_peak: 0.0,
            cooldown_left: 0,
            likelihood: Likelihood::new(LIKELIHOOD_RECENT, LIKELIHOOD_HISTORY, LIKELIHOOD_REFIT),
            context: Context::new(),
            intervals: intervals(),
            input: Input::default(),
            settings,
        }
    }

    /// The version of the algorithm that learned this state: [`STATE_VERSION`] for a detector
    /// made by this build, less for one restored from an older snapshot, which a caller should
    /// replace with a new detector (and relearn from history) rather than continue.
    pub fn state_version(&self) -> u32 {
        self.version
    }

    /// What the detector made of its input so far: values scored, clock steps back, repeated
    /// timestamps, gaps and values skipped.
    pub fn input(&self) -> Input {
        self.input
    }

    /// The settings in use, brought into their ranges.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Scores `value` at `at_unix_secs`, then learns it. A value that is not finite is refused
    /// (and counted); a timestamp before the previous one is read as the previous one.
    pub fn observe(&mut self, at_unix_secs: i64, value: f64) -> Result<Score, Error> {
        if !value.is_finite() {
            self.input.non_finite += 1;
            return Err(Error::NonFinite { value });
        }
        let at_unix_secs = self.clock(at_unix_secs);
        let (expected, scale) = self.baseline(at_unix_secs, value);
        // Only values near `f64::MAX` make this infinite or NaN (infinity over infinity).
        let signal = ((value - expected).abs() / scale).min(MAX_SIGNAL);
        let signal = if signal.is_nan() { MAX_SIGNAL } else { signal };
        let point_surprise = self.tail.surprise(signal).min(MAX_SURPRISE);
        let season = self.season_signal(at_unix_secs, value);
        let season_surprise = match (&season, &self.season_tail) {
            (Some((signal, true)), Some(tail)) => tail.surprise(*signal).min(MAX_SURPRISE),
            _ => 0.0,
        };
        // A new extreme counts as novel at every order only if its residual is also rare for this
        // series: on plain noise the range keeps growing by small steps, which are not news.
        let novelty = self
            .context
            .observe(value, point_surprise >= BEYOND_SURPRISE);
        // Either kind of raw evidence feeds the sustained signal: a run of deviating values or
        // of novel sequences, each of which alone may be noise, is unlikely as a whole.
        let raw = (point_surprise.max(season_surprise) / MAX_SURPRISE).max(novelty.raw);
        let sustained_surprise = self.likelihood.surprise(raw).min(MAX_SURPRISE);
        let raw_surprise = (novelty.excess * MAX_SURPRISE).max(sustained_surprise);
        // Only a value that is news itself is reported; a run of evidence waits for one. A value
        // that keeps to the seasonal profiles is not news if
        // - a profile explains the series (see `SEASONAL_SHARE`): the profile predicts it,
        //   however its sequence is binned (a pair of bins new after the range grew) or whatever
        //   the sustained signal says after a change; or
        // - its every short sequence was seen recently (a spike of a size the series often
        //   shows, in a familiar context), even when the point surprise is high: the tail forgets
        //   after `history_points` values, the sequence memory remembers longer which spikes are
        //   the series' habit.
        let keeps_to_profile = season_surprise < BEYOND_SURPRISE;
        let explained = season.is_some_and(|(_, explains)| explains);
        let reported = if keeps_to_profile && (explained || novelty.raw <= 0.0) {
            0.0
        } else {
            raw_surprise
        };
        let surprise = reported - PEAK_SHARE * self.recent_peak;
        let learning = self.points < u64::from(self.settings.warmup_points);
        let mut score = if learning {
            0.0
        } else {
            (surprise / MAX_SURPRISE).clamp(0.0, 1.0)
        };
        // An alarm and the values of its cooldown are one episode: they are scored, but do not
        // teach the calibrations what is normal.
        let mut episode = self.cooldown_left > 0;
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            score = 0.0;
        } else if score >= self.settings.alarm_score && score > 0.0 {
            self.cooldown_left = self.settings.cooldown_points;
            episode = true;
        }
        let band = self
            .tail
            .signal_at(MAX_SURPRISE / 2.0)
            .map_or(f64::INFINITY, |signal| signal * scale);
        let result = Score {
            score,
            expected,
            expected_low: expected - band,
            expected_high: expected + band,
            learning,
        };
        let fade = MAX_SURPRISE / f64::from(self.settings.history_points);
        // The warm-up's novelty is the series being learned, not an episode: it would otherwise
        // discount the first real anomaly after it. A value that is not news is no episode either.
        let episode_surprise = if learning { 0.0 } else { reported };
        self.recent_peak = (self.recent_peak - fade).max(episode_surprise).max(0.0);
        self.likelihood.learn(raw, !episode);
        self.learn(at_unix_secs, value, signal, season, !episode);
        self.input.scored += 1;
        Ok(result)
    }

    /// The median baseline's mean absolute error (see [`season::unbiased`]).
    fn level_error(&self) -> f64 {
        season::unbiased(self.level_error, ERROR_RATE, self.points.saturating_sub(1))
    }

    /// The time to score a value at: `at_unix_secs`, or the previous value's time if it is
    /// earlier. Counts steps back, repeats and gaps.
    fn clock(&mut self, at_unix_secs: i64) -> i64 {
        let Some(previous) = self.last_at else {
            return at_unix_secs;
        };
        if at_unix_secs < previous {
            self.input.steps_back += 1;
            self.input.largest_step_back_secs = self
                .input
                .largest_step_back_secs
                .max(previous.saturating_sub(at_unix_secs));
            return previous;
        }
        if at_unix_secs == previous {
            self.input.repeats += 1;
            return previous;
        }
        let interval = (at_unix_secs - previous) as f64;
        if self.intervals.len() >= INTERVALS / 2 {
            if let Some(usual) = self.intervals.median() {
                if interval > GAP_FACTOR * usual {
                    self.input.gaps += 1;
                }
            }
        }
        self.intervals.push(interval);
        at_unix_secs
    }

    /// The value expected at `at_unix_secs` and the scale of normal deviations from it, from the
    /// baseline under which `value` deviates least: any baseline that explains a value (the
    /// window for a new level, the daily profile for the daily peak) keeps it from alarming.
    fn baseline(&self, at_unix_secs: i64, value: f64) -> (f64, f64) {
        let Some(median) = self.level.median() else {
            return (value, 1.0);
        };
        let mad = self.level.mad(median).unwrap_or(0.0) * MAD_TO_SIGMA;
        // Half the mean deviation stands in when over half the window is one value (MAD 0).
        let mean_deviation =
            self.level.mean_deviation(median).unwrap_or(0.0) * MEAN_DEVIATION_TO_SIGMA / 2.0;
        let floor = (1e-3 * median.abs() + 1e-9).max(FLOOR_SHARE * self.level_error());
        let mut best = (median, mad.max(mean_deviation).max(floor));
        if !self.settings.seasonality {
            return best;
        }
        let seen_secs = self.first_at.map_or(0, |first| at_unix_secs - first);
        for profile in [&self.daily, &self.weekly] {
            // A profile speaks once it has seen one and a half of its periods.
            if seen_secs < profile.period_secs() * 3 / 2 {
                continue;
            }
            let predicted = profile.predict(at_unix_secs);
            let error = profile.error(self.settings.window_points, ERROR_RATE);
            if let (Some(predicted), Some(error)) = (predicted, error) {
                let scale = (error * MEAN_DEVIATION_TO_SIGMA).max(floor);
                if (value - predicted).abs() / scale < (value - best.0).abs() / best.1 {
                    best = (predicted, scale);
                }
            }
        }
        best
    }

    /// The departure of `value` from the seasonal profiles, in their own scale (the smaller of
    /// the daily and weekly one), and whether a profile explains the series (see
    /// `SEASONAL_SHARE`); `None` until a profile speaks.
    fn season_signal(&self, at_unix_secs: i64, value: f64) -> Option<(f64, bool)> {
        if !self.settings.seasonality {
            return None;
        }
        let median = self.level.median()?;
        let floor = (1e-3 * median.abs() + 1e-9).max(FLOOR_SHARE * self.level_error());
        let seen_secs = self.first_at.map_or(0, |first| at_unix_secs - first);
        // The profile that explains the value best, and whether one explains the series.
        let mut best: Option<f64> = None;
        let mut explains = false;
        for profile in [&self.daily, &self.weekly] {
            if seen_secs < profile.period_secs() * 3 / 2 {
                continue;
            }
            let predicted = profile.predict(at_unix_secs);
            let error = profile.error(self.settings.window_points, ERROR_RATE);
            if let (Some(predicted), Some(error)) = (predicted, error) {
                let scale = (error * MEAN_DEVIATION_TO_SIGMA).max(floor);
                let signal = ((value - predicted).abs() / scale).min(MAX_SIGNAL);
                let signal = if signal.is_nan() { MAX_SIGNAL } else { signal };
                best = Some(best.map_or(signal, |best: f64| best.min(signal)));
                explains |= error < SEASONAL_SHARE * self.level_error();
            }
        }
        best.map(|signal| (signal, explains))
    }

    /// Learns `value`; `calibrate` says whether its residuals may teach the tails what is
    /// normal (not in an alarm episode).
    fn learn(
        &mut self,
        at_unix_secs: i64,
        value: f64,
        signal: f64,
        season: Option<(f64, bool)>,
        calibrate: bool,
    ) {
        if let Some(median) = self.level.median() {
            let residual = (value - median).abs();
            let limit = if self.points > 1 {
                ERROR_CLIP * self.level_error().max(f64::MIN_POSITIVE)
            } else {
                f64::INFINITY
            };
            self.level_error += ERROR_RATE * (residual.min(limit) - self.level_error);
        }
        self.level.push(value);
        if self.settings.seasonality {
            let rates = Rates {
                slot: SLOT_RATE,
                offset: 2.0 / (f64::from(self.settings.window_points) + 1.0),
                error: ERROR_RATE,
            };
            self.daily.learn(at_unix_secs, value, rates);
            self.weekly.learn(at_unix_secs, value, rates);
        }
        if calibrate {
            // A single extreme value should not teach the tail that anything goes.
            let cap = self.tail.signal_at(MAX_SURPRISE).unwrap_or(signal);
            self.tail.learn(signal.min(cap));
            if let Some((signal, _)) = season {
                let history_points = self.settings.history_points as usize;
                let tail = self
                    .season_tail
                    .get_or_insert_with(|| Tail::new(history_points));
                let cap = tail.signal_at(MAX_SURPRISE).unwrap_or(signal);
                tail.learn(signal.min(cap));
            }
        }
        self.points += 1;
        self.first_at.get_or_insert(at_unix_secs);
        self.last_at = Some(at_unix_secs);
    }
}

#[cfg(test)]
mod tests;
