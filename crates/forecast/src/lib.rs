//! Forecasts of metric series with seasonality, for predictive scaling.
//!
//! The crate is pure: no IO and no clock. A caller hands it samples as `(unix_secs, value)` pairs;
//! [`Series::from_points`] puts them on a regular grid, [`forecast`] fits a model and predicts the
//! next points with a prediction interval, [`first_crossing`] says when a forecast first reaches a
//! capacity, and [`backtest`] scores the forecaster against a seasonal-naive baseline on history.
//!
//! The model is MSTL (multiple seasonal-trend decomposition by Loess) with an AutoETS model on the
//! deseasonalised series, both from `augurs`. When the history is too short for any seasonal
//! period, it is plain AutoETS; when a model fails, a naive or seasonal-naive forecast stands in.
//! [`Forecast::model`] always says which model produced the numbers, and
//! [`Forecast::notes`] why a fallback was taken.
//!
//! ```
//! use homeostat_forecast::{first_crossing, forecast, Bound, Series, Settings};
//!
//! // Two days of a 5-minute series with a daily cycle.
//! let points: Vec<(i64, f64)> = (0..576)
//!     .map(|i| {
//!         let phase = i as f64 / 288.0 * std::f64::consts::TAU;
//!         (1_700_000_000 + i * 300, 100.0 + 40.0 * phase.sin())
//!     })
//!     .collect();
//! let settings = Settings::default();
//! let series = Series::from_points(&points, &settings)?;
//! let forecast = forecast(&series, 72, &settings)?;
//! if let Some(crossing) = first_crossing(&forecast, 130.0, Bound::Upper) {
//!     println!("capacity reached in {} s", crossing.lead_secs);
//! }
//! # Ok::<(), homeostat_forecast::Error>(())
//! ```

mod backtest;
mod model;
mod series;
mod stats;

use serde::{Deserialize, Serialize};

pub use backtest::{backtest, Backtest, OriginScore, Score};
pub use model::{forecast, Forecast, ForecastPoint, Model};
pub use series::Series;

/// The fewest points a series must keep, after gaps are handled, to be forecast at all.
pub const MIN_POINTS: usize = 3;

/// The most points a series may span once on its grid; a year of 1-minute samples fits.
pub const MAX_POINTS: usize = 1_000_000;

/// The most points a forecast may ask for, so a bad horizon cannot exhaust memory.
pub const MAX_HORIZON: usize = 100_000;

/// Seconds in a day and in a week, from which the automatic seasonal periods are derived.
const DAY_SECS: i64 = 86_400;
const WEEK_SECS: i64 = 7 * DAY_SECS;

/// How to forecast; embeddable in the daemon config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Seasonal periods in samples (288 is a day of 5-minute samples).
    /// `None` picks them from the step: a day if the history covers two days, and a week too if
    /// it covers two weeks. An empty list turns seasonality off.
    pub seasonal_periods: Option<Vec<usize>>,
    /// Coverage of the prediction interval, in (0, 1).
    pub level: f64,
    /// The sampling step; `None` takes the median spacing of the samples.
    pub step_secs: Option<i64>,
    /// Gaps of up to this many missing samples are filled linearly; before a longer gap the
    /// history is dropped, since a straight line across hours would teach the model a false cycle.
    pub max_gap_steps: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seasonal_periods: None,
            level: 0.95,
            step_secs: None,
            max_gap_steps: 12,
        }
    }
}

impl Settings {
    /// Checks the values that deserialization cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::InvalidLevel { level: self.level });
        }
        if let Some(step_secs) = self.step_secs {
            if step_secs <= 0 {
                return Err(Error::InvalidStep { step_secs });
            }
        }
        if let Some(periods) = &self.seasonal_periods {
            if let Some(&period) = periods.iter().find(|&&period| period < 2) {
                return Err(Error::InvalidPeriod { period });
            }
        }
        Ok(())
    }
}

/// Which part of a forecast to compare with a capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The point forecast: act when the expected value reaches the capacity.
    Point,
    /// The upper end of the interval: act early, when the capacity is plausibly reached.
    Upper,
    /// The lower end of the interval: act only when the capacity is almost surely reached.
    Lower,
}

/// The first forecast point at or above a capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Crossing {
    /// When the capacity is reached.
    pub at_unix_secs: i64,
    /// The compared value (point, upper or lower) at that time.
    pub value: f64,
    /// Seconds from the last observed sample to the crossing; at least one step.
    pub lead_secs: i64,
}

/// Returns the first point of `forecast` whose `bound` is at or above `capacity`, if any within the
/// horizon.
pub fn first_crossing(forecast: &Forecast, capacity: f64, bound: Bound) -> Option<Crossing> {
    forecast.points.iter().find_map(|point| {
        let value = match bound {
            Bound::Point => point.value,
            Bound::Upper => point.upper,
            Bound::Lower => point.lower,
        };
        (value >= capacity).then(|| Crossing {
            at_unix_secs: point.unix_secs,
            value,
            lead_secs: point.unix_secs.saturating_sub(forecast.last_unix_secs),
        })
    })
}

/// What can go wrong; every variant is about the input, never an internal failure, since a model
/// that fails is replaced by a simpler one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("the series is empty")]
    Empty,
    #[error("value {index} (at unix time `{unix_secs}`) is `{value}`; values must be finite")]
    NotFinite {
        index: usize,
        unix_secs: i64,
        value: f64,
    },
    #[error(
        "timestamps go backwards at sample {index}: `{unix_secs}` after `{previous_unix_secs}`; \
         consider sorting the samples"
    )]
    NonMonotonic {
        index: usize,
        previous_unix_secs: i64,
        unix_secs: i64,
    },
    #[error(
        "the series spans {points} points of its step, over the limit of {max}; \
         consider a coarser step or a shorter history"
    )]
    TooLong { points: usize, max: usize },
    #[error("the series has {points} usable points, fewer than the {min_points} needed")]
    TooShort { points: usize, min_points: usize },
    #[error(
        "a backtest of {origins} origins of {horizon} points needs more than {needed} points, \
         the series has {points}; consider fewer origins or a shorter horizon"
    )]
    TooShortForBacktest {
        points: usize,
        needed: usize,
        origins: usize,
        horizon: usize,
    },
    #[error("level `{level}` is not in (0, 1)")]
    InvalidLevel { level: f64 },
    #[error("step `{step_secs}` s is not positive")]
    InvalidStep { step_secs: i64 },
    #[error("seasonal period `{period}` is below 2 samples")]
    InvalidPeriod { period: usize },
    #[error("the horizon is zero points")]
    ZeroHorizon,
    #[error("the horizon of {horizon} points is over the limit of {max}")]
    HorizonTooLong { horizon: usize, max: usize },
    #[error("a backtest needs at least one origin")]
    ZeroOrigins,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the samples, the answer is a forecast or an error, never a panic, and a
        /// forecast has the asked number of finite points with `lower <= value <= upper`.
        #[test]
        fn any_input_gives_a_forecast_or_an_error(
            mut points in prop::collection::vec((-20_000i64..20_000, -1e6f64..1e6), 0..400),
            odd in prop::option::of((0usize..400, prop::num::f64::ANY, any::<i64>())),
            sorted in any::<bool>(),
            horizon in 0usize..40,
            periods in prop::option::of(prop::collection::vec(0usize..100, 0..3)),
            max_gap_steps in prop_oneof![0usize..20, Just(usize::MAX)],
            step_secs in prop::option::of(prop_oneof![-1i64..1, 60i64..100, Just(i64::MAX)]),
        ) {
            if sorted {
                points.sort_by_key(|point| point.0);
            }
            if let Some((index, value, unix_secs)) = odd {
                if let Some(point) = points.get_mut(index) {
                    *point = (unix_secs, value);
                }
            }
            let settings = Settings {
                seasonal_periods: periods,
                max_gap_steps,
                step_secs,
                ..Settings::default()
            };
            if let Ok(series) = Series::from_points(&points, &settings) {
                if let Ok(forecast) = forecast(&series, horizon, &settings) {
                    prop_assert_eq!(forecast.points.len(), horizon);
                    for point in &forecast.points {
                        prop_assert!(point.value.is_finite());
                        prop_assert!(point.lower <= point.value && point.value <= point.upper);
                    }
                }
                let _ = backtest(&series, horizon, 2, &settings);
            }
        }
    }

    fn forecast_of(values: &[f64]) -> Forecast {
        Forecast {
            model: Model::Naive,
            notes: Vec::new(),
            last_unix_secs: 1_000,
            step_secs: 60,
            level: 0.95,
            points: values
                .iter()
                .enumerate()
                .map(|(i, &value)| ForecastPoint {
                    unix_secs: 1_000 + 60 * (i as i64 + 1),
                    value,
                    lower: value - 10.0,
                    upper: value + 10.0,
                })
                .collect(),
        }
    }

    #[test]
    fn crossing_is_the_first_point_at_or_above_capacity() {
        let forecast = forecast_of(&[50.0, 70.0, 85.0, 95.0, 100.0, 90.0]);
        let point = first_crossing(&forecast, 95.0, Bound::Point).unwrap();
        assert_eq!(point.at_unix_secs, 1_000 + 4 * 60);
        assert_eq!(point.lead_secs, 4 * 60);
        assert_eq!(point.value, 95.0);
        let upper = first_crossing(&forecast, 95.0, Bound::Upper).unwrap();
        assert_eq!(upper.lead_secs, 3 * 60);
        assert_eq!(upper.value, 95.0);
        let lower = first_crossing(&forecast, 95.0, Bound::Lower);
        assert_eq!(lower, None);
        assert_eq!(first_crossing(&forecast, 200.0, Bound::Upper), None);
        assert_eq!(
            first_crossing(&forecast, 0.0, Bound::Point)
                .unwrap()
                .lead_secs,
            60
        );
    }

    #[test]
    fn settings_deserialize_with_defaults_and_reject_unknown_fields() {
        let settings: Settings = serde_json::from_str(r#"{"seasonal_periods": [288]}"#).unwrap();
        assert_eq!(settings.seasonal_periods, Some(vec![288]));
        assert_eq!(settings.level, 0.95);
        assert!(serde_json::from_str::<Settings>(r#"{"levle": 0.8}"#).is_err());
        let bound: Bound = serde_json::from_str(r#""upper""#).unwrap();
        assert_eq!(bound, Bound::Upper);
    }

    #[test]
    fn settings_are_validated() {
        let bad = [
            Settings {
                level: 1.0,
                ..Settings::default()
            },
            Settings {
                level: f64::NAN,
                ..Settings::default()
            },
            Settings {
                step_secs: Some(0),
                ..Settings::default()
            },
            Settings {
                seasonal_periods: Some(vec![288, 1]),
                ..Settings::default()
            },
        ];
        for settings in bad {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
        assert_eq!(Settings::default().validate(), Ok(()));
    }
}
