//! Model choice and fitting: MSTL with an AutoETS trend, then simpler models as fallbacks.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use augurs::ets::{AutoETS, FittedAutoETS};
use augurs::mstl::{FittedTrendModel, MSTLModel, TrendModel};
use augurs::{Fit, Predict};
use serde::Serialize;

use crate::stats::{seasonal_naive, Paths};
use crate::{Error, Series, Settings, DAY_SECS, MAX_HORIZON, WEEK_SECS};

/// The model that produced a forecast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Model {
    /// MSTL decomposition with these seasonal periods (in samples), and an ETS model, named in
    /// Hyndman's notation (`ETS(A,Ad,N)`), for the deseasonalised series.
    Mstl { periods: Vec<usize>, trend: String },
    /// An ETS model without seasonality, for histories shorter than two seasons.
    Ets { spec: String },
    /// The value one period earlier, when a fitted model failed.
    SeasonalNaive { period: usize },
    /// The last value, when every other model failed.
    Naive,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Model::Mstl { periods, trend } => {
                let periods: Vec<String> = periods.iter().map(usize::to_string).collect();
                write!(f, "MSTL({})+{trend}", periods.join(","))
            }
            Model::Ets { spec } => f.write_str(spec),
            Model::SeasonalNaive { period } => write!(f, "SNaive({period})"),
            Model::Naive => f.write_str("Naive"),
        }
    }
}

/// A forecast of the points after the end of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub model: Model,
    /// Why a simpler model or fewer periods were used, for logs; empty when all went to plan.
    pub notes: Vec<String>,
    /// The time of the last observed point; crossings are measured from it.
    pub last_unix_secs: i64,
    pub step_secs: i64,
    /// The coverage of `lower..=upper`.
    pub level: f64,
    pub points: Vec<ForecastPoint>,
}

/// One forecast point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForecastPoint {
    pub unix_secs: i64,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Forecasts the `horizon` points after the end of `series`.
pub fn forecast(series: &Series, horizon: usize, settings: &Settings) -> Result<Forecast, Error> {
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
    let (periods, mut notes) = seasonal_periods(series, settings);
    let (model, paths) = fit_and_predict(
        series.values(),
        &periods,
        horizon,
        settings.level,
        &mut notes,
    );
    let points = (0..horizon)
        .map(|h| ForecastPoint {
            unix_secs: series.unix_secs_at(series.len() + h),
            value: paths.point[h],
            lower: paths.lower[h],
            upper: paths.upper[h],
        })
        .collect();
    Ok(Forecast {
        model,
        notes,
        last_unix_secs: series.last_unix_secs(),
        step_secs: series.step_secs(),
        level: settings.level,
        points,
    })
}

/// The seasonal periods to model, each with at least two full seasons of history, shortest first.
pub(crate) fn seasonal_periods(series: &Series, settings: &Settings) -> (Vec<usize>, Vec<String>) {
    let mut notes = Vec::new();
    let len = series.len();
    let candidates: Vec<usize> = match &settings.seasonal_periods {
        Some(periods) => periods.clone(),
        None => {
            let step = series.step_secs();
            [DAY_SECS, WEEK_SECS]
                .into_iter()
                .filter(|&span| step <= span / 2)
                .map(|span| ((span + step / 2) / step) as usize)
                .collect()
        }
    };
    let mut periods = Vec::new();
    for (index, period) in candidates.into_iter().enumerate() {
        if len >= 2 * period {
            periods.push(period);
        } else if settings.seasonal_periods.is_some() || index == 0 {
            // A missing weekly period on a few days of history is expected; say nothing of it.
            notes.push(format!(
                "seasonal period of {period} points left out: it needs {} points of history, \
                 there are {len}",
                2 * period
            ));
        }
    }
    periods.sort_unstable();
    periods.dedup();
    (periods, notes)
}

/// Fits the best model that works and predicts with it.
fn fit_and_predict(
    values: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
    notes: &mut Vec<String>,
) -> (Model, Paths) {
    if let Some(&shortest) = periods.first() {
        match guarded(|| mstl(values, periods, horizon, level)) {
            Ok((trend, paths)) => {
                let model = Model::Mstl {
                    periods: periods.to_vec(),
                    trend,
                };
                return (model, paths);
            }
            Err(error) => notes.push(format!("MSTL failed, using seasonal naive: {error}")),
        }
        let paths = seasonal_naive(values, shortest, horizon, level);
        return (Model::SeasonalNaive { period: shortest }, paths);
    }
    match guarded(|| ets(values, horizon, level)) {
        Ok((spec, paths)) => return (Model::Ets { spec }, paths),
        Err(error) => notes.push(format!("ETS failed, using naive: {error}")),
    }
    (Model::Naive, seasonal_naive(values, 1, horizon, level))
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs a model, turning a panic inside it or a non-finite result into an error, so that odd data
/// costs a fallback and never a task.
fn guarded(
    run: impl FnOnce() -> Result<(String, Paths), BoxError>,
) -> Result<(String, Paths), String> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Err(_) => Err("the model panicked".to_owned()),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok((name, paths))) => {
            let all_finite = [&paths.point, &paths.lower, &paths.upper]
                .iter()
                .all(|path| path.iter().all(|value| value.is_finite()));
            if all_finite {
                Ok((name, paths))
            } else {
                Err(format!("{name} forecast values that are not finite"))
            }
        }
    }
}

fn mstl(
    values: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
) -> Result<(String, Paths), BoxError> {
    let trend = EtsTrend::default();
    let fitted = MSTLModel::new(periods.to_vec(), &trend).fit(values)?;
    let forecast = fitted.predict(horizon, level)?;
    let name = trend
        .chosen
        .get()
        .cloned()
        .unwrap_or_else(|| "ETS".to_owned());
    Ok((name, paths_of(forecast, horizon)?))
}

fn ets(values: &[f64], horizon: usize, level: f64) -> Result<(String, Paths), BoxError> {
    let fitted = AutoETS::non_seasonal().fit(values)?;
    let forecast = fitted.predict(horizon, level)?;
    Ok((ets_name(&fitted), paths_of(forecast, horizon)?))
}

fn paths_of(forecast: augurs::Forecast, horizon: usize) -> Result<Paths, BoxError> {
    let intervals = forecast.intervals.ok_or("the model gave no intervals")?;
    if forecast.point.len() != horizon || intervals.lower.len() != horizon {
        return Err("the model gave fewer points than asked".into());
    }
    Ok(Paths {
        point: forecast.point,
        lower: intervals.lower,
        upper: intervals.upper,
    })
}

/// The ETS model in Hyndman's notation: error, trend (`d` if damped), season.
fn ets_name(fitted: &FittedAutoETS) -> String {
    let model = fitted.model();
    let kind = model.model_type();
    let damped = if model.damped() { "d" } else { "" };
    format!("ETS({},{}{damped},{})", kind.error, kind.trend, kind.season)
}

/// AutoETS as the MSTL trend model, remembering which ETS model it chose so the forecast can
/// name it (the fitted MSTL model does not expose its trend model).
#[derive(Debug, Default)]
struct EtsTrend {
    chosen: OnceLock<String>,
}

impl TrendModel for &EtsTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("AutoETS")
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn FittedTrendModel + Sync + Send>, BoxError> {
        let fitted = AutoETS::non_seasonal().fit(y)?;
        let _already_set = self.chosen.set(ets_name(&fitted));
        Ok(Box::new(FittedEtsTrend { fitted }))
    }
}

#[derive(Debug)]
struct FittedEtsTrend {
    fitted: FittedAutoETS,
}

impl FittedTrendModel for FittedEtsTrend {
    fn predict_inplace(
        &self,
        horizon: usize,
        level: Option<f64>,
        forecast: &mut augurs::Forecast,
    ) -> Result<(), BoxError> {
        Ok(self.fitted.predict_inplace(horizon, level, forecast)?)
    }

    fn predict_in_sample_inplace(
        &self,
        level: Option<f64>,
        forecast: &mut augurs::Forecast,
    ) -> Result<(), BoxError> {
        Ok(self.fitted.predict_in_sample_inplace(level, forecast)?)
    }

    fn training_data_size(&self) -> Option<usize> {
        Some(self.fitted.training_data_size())
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    /// A deterministic pseudo-random normal sample, so tests need no RNG crate.
    fn noise(seed: &mut u64) -> f64 {
        let mut uniform = || {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((*seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
    }

    /// Days of a 5-minute series: level 100, a trend, a daily sine of amplitude 30, and noise.
    fn daily(days: usize, trend_per_day: f64, noise_sd: f64) -> Vec<f64> {
        let mut seed = 7;
        (0..days * 288)
            .map(|i| {
                let day = i as f64 / 288.0;
                100.0 + trend_per_day * day + 30.0 * (TAU * day).sin() + noise_sd * noise(&mut seed)
            })
            .collect()
    }

    fn series_of(values: &[f64]) -> Series {
        Series::from_values(1_699_999_800, 300, values.to_vec()).unwrap()
    }

    #[test]
    fn a_sine_with_trend_is_forecast_closely() {
        let values = daily(9, 5.0, 0.0);
        let (history, future) = values.split_at(7 * 288);
        let forecast = forecast(&series_of(history), 288, &Settings::default()).unwrap();
        assert!(matches!(&forecast.model, Model::Mstl { periods, .. } if periods == &[288]));
        let mape = future
            .iter()
            .zip(&forecast.points)
            .map(|(actual, point)| (actual - point.value).abs() / actual)
            .sum::<f64>()
            / 288.0;
        assert!(mape < 0.02, "MAPE {mape}, model {}", forecast.model);
        assert_eq!(forecast.points[0].unix_secs, 1_699_999_800 + 7 * 288 * 300);
        assert_eq!(forecast.last_unix_secs, 1_699_999_800 + (7 * 288 - 1) * 300);
    }

    #[test]
    fn intervals_contain_most_actuals_on_noisy_data() {
        let values = daily(10, 2.0, 8.0);
        let (history, future) = values.split_at(7 * 288);
        let forecast = forecast(&series_of(history), 288, &Settings::default()).unwrap();
        let inside = future
            .iter()
            .zip(&forecast.points)
            .filter(|(actual, point)| (point.lower..=point.upper).contains(actual))
            .count();
        let coverage = inside as f64 / 288.0;
        assert!(
            coverage > 0.85,
            "coverage {coverage}, model {}",
            forecast.model
        );
        assert!(forecast
            .points
            .iter()
            .all(|p| p.lower <= p.value && p.value <= p.upper));
    }

    #[test]
    fn short_history_falls_back_to_ets() {
        let values = daily(1, 0.0, 1.0);
        let forecast = forecast(&series_of(&values), 12, &Settings::default()).unwrap();
        assert!(
            matches!(forecast.model, Model::Ets { .. }),
            "{}",
            forecast.model
        );
        assert_eq!(forecast.notes.len(), 1, "{:?}", forecast.notes);
        let tiny = forecast_of(&[1.0, 2.0, 3.0]);
        assert_eq!(tiny.points.len(), 3);
    }

    fn forecast_of(values: &[f64]) -> Forecast {
        forecast(&series_of(values), 3, &Settings::default()).unwrap()
    }

    #[test]
    fn weekly_period_is_added_on_two_weeks_of_history() {
        let series = series_of(&daily(14, 0.0, 1.0));
        let (periods, notes) = seasonal_periods(&series, &Settings::default());
        assert_eq!(periods, vec![288, 2016]);
        assert!(notes.is_empty());
        let explicit = Settings {
            seasonal_periods: Some(vec![12, 5_000]),
            ..Settings::default()
        };
        let (periods, notes) = seasonal_periods(&series, &explicit);
        assert_eq!(periods, vec![12]);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn a_constant_series_is_forecast_as_constant() {
        let forecast = forecast_of(&[5.0; 50]);
        assert!(forecast.points.iter().all(|p| (p.value - 5.0).abs() < 1e-6));
    }

    #[test]
    fn zero_horizon_is_an_error() {
        let series = series_of(&[1.0, 2.0, 3.0]);
        assert_eq!(
            forecast(&series, 0, &Settings::default()),
            Err(Error::ZeroHorizon)
        );
    }
}
