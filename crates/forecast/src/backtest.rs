//! Rolling-origin evaluation of the forecaster against a seasonal-naive baseline.

use serde::Serialize;

use crate::model::seasonal_periods;
use crate::stats::{seasonal_naive, seasonal_naive_mae};
use crate::{forecast, Error, Model, Series, Settings, MAX_HORIZON, MIN_POINTS};

/// Errors of one forecaster over one or more origins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Mean absolute percentage error, over actuals that are not zero; `None` if all are.
    pub mape: Option<f64>,
    /// Mean absolute error scaled by the in-sample MAE of the seasonal-naive forecast (Hyndman
    /// and Koehler, 2006): below 1 beats that forecast's one-season-ahead errors. `None` when the
    /// history is flat, so the scale is zero.
    pub mase: Option<f64>,
}

/// The backtest at one origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OriginScore {
    /// The time of the first forecast point; the model saw only the points before it.
    pub origin_unix_secs: i64,
    pub model: Model,
    /// The period of the seasonal-naive baseline and of the MASE scale at this origin: the
    /// longest seasonal period the model used (so a week, when it models one, and the baseline
    /// knows weekends), or 1 (the naive forecast) without seasonality.
    pub baseline_period: usize,
    pub score: Score,
    pub seasonal_naive: Score,
    /// The share of actuals inside the prediction interval.
    pub coverage: f64,
}

/// A rolling-origin backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    pub horizon: usize,
    pub step_secs: i64,
    pub level: f64,
    pub origins: Vec<OriginScore>,
    /// Means over the origins.
    pub score: Score,
    pub seasonal_naive: Score,
    pub coverage: f64,
}

/// Backtests the forecaster on `series`: the last `origins` windows of `horizon` points are each
/// forecast from the points before them, and scored with the seasonal-naive forecast beside.
pub fn backtest(
    series: &Series,
    horizon: usize,
    origins: usize,
    settings: &Settings,
) -> Result<Backtest, Error> {
    settings.validate()?;
    if horizon == 0 {
        return Err(Error::ZeroHorizon);
    }
    if horizon > MAX_HORIZON {
        return Err(Error::HorizonTooLong {
            horizon,
            max: MAX_HORIZON,
        });
    }
    if origins == 0 {
        return Err(Error::ZeroOrigins);
    }
    let held_out = horizon.saturating_mul(origins);
    let needed = held_out.saturating_add(MIN_POINTS);
    if series.len() < needed {
        return Err(Error::TooShortForBacktest {
            points: series.len(),
            needed,
            origins,
            horizon,
        });
    }
    let first_origin = series.len() - held_out;
    let mut scores = Vec::with_capacity(origins);
    for k in 0..origins {
        let origin = first_origin + k * horizon;
        let history = series.head(origin);
        let (periods, _) = seasonal_periods(&history, settings);
        let baseline_period = periods.last().copied().unwrap_or(1);
        let actual = &series.values()[origin..origin + horizon];
        let forecast = forecast(&history, horizon, settings)?;
        let predicted: Vec<f64> = forecast.points.iter().map(|point| point.value).collect();
        let baseline = seasonal_naive(history.values(), baseline_period, horizon, settings.level);
        let scale = seasonal_naive_mae(history.values(), baseline_period);
        let inside = forecast
            .points
            .iter()
            .zip(actual)
            .filter(|(point, actual)| (point.lower..=point.upper).contains(actual))
            .count();
        scores.push(OriginScore {
            origin_unix_secs: series.unix_secs_at(origin),
            model: forecast.model,
            baseline_period,
            score: score(actual, &predicted, scale),
            seasonal_naive: score(actual, &baseline.point, scale),
            coverage: inside as f64 / horizon as f64,
        });
    }
    Ok(Backtest {
        horizon,
        step_secs: series.step_secs(),
        level: settings.level,
        score: mean_score(scores.iter().map(|origin| origin.score)),
        seasonal_naive: mean_score(scores.iter().map(|origin| origin.seasonal_naive)),
        coverage: scores.iter().map(|origin| origin.coverage).sum::<f64>() / origins as f64,
        origins: scores,
    })
}

fn score(actual: &[f64], predicted: &[f64], scale: Option<f64>) -> Score {
    let errors = || {
        actual
            .iter()
            .zip(predicted)
            .map(|(a, p)| (a, (a - p).abs()))
    };
    let percentages: Vec<f64> = errors()
        .filter(|(actual, _)| **actual != 0.0)
        .map(|(actual, error)| 100.0 * error / actual.abs())
        .collect();
    let mae = errors().map(|(_, error)| error).sum::<f64>() / actual.len().max(1) as f64;
    Score {
        mape: mean(&percentages),
        mase: scale.filter(|&scale| scale > 0.0).map(|scale| mae / scale),
    }
}

fn mean_score(scores: impl Iterator<Item = Score> + Clone) -> Score {
    let mapes: Vec<f64> = scores.clone().filter_map(|score| score.mape).collect();
    let mases: Vec<f64> = scores.filter_map(|score| score.mase).collect();
    Score {
        mape: mean(&mapes),
        mase: mean(&mases),
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    #[test]
    fn scores_follow_their_definitions() {
        let score = score(&[0.0, 10.0, 20.0], &[1.0, 12.0, 17.0], Some(2.0));
        assert_eq!(score.mape, Some((20.0 + 15.0) / 2.0));
        assert_eq!(score.mase, Some(2.0 / 2.0));
    }

    #[test]
    fn the_model_beats_seasonal_naive_on_a_trending_cycle() {
        let values: Vec<f64> = (0..6 * 288)
            .map(|i| {
                let day = i as f64 / 288.0;
                100.0 + 10.0 * day + 30.0 * (TAU * day).sin()
            })
            .collect();
        let series = Series::from_values(0, 300, values).unwrap();
        let backtest = backtest(&series, 72, 3, &Settings::default()).unwrap();
        assert_eq!(backtest.origins.len(), 3);
        assert!(backtest
            .origins
            .iter()
            .all(|origin| origin.baseline_period == 288));
        let model = backtest.score.mase.unwrap();
        let baseline = backtest.seasonal_naive.mase.unwrap();
        assert!(model < baseline, "model {model}, baseline {baseline}");
    }

    #[test]
    fn too_short_a_series_is_an_error() {
        let series = Series::from_values(0, 60, vec![1.0; 20]).unwrap();
        assert!(matches!(
            backtest(&series, 10, 2, &Settings::default()),
            Err(Error::TooShortForBacktest { needed: 23, .. })
        ));
        assert_eq!(
            backtest(&series, 5, 0, &Settings::default()),
            Err(Error::ZeroOrigins)
        );
    }
}
