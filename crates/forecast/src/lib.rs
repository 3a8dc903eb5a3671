//! Forecasts of metric series with seasonality, for predictive scaling.
