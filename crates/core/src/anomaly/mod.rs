//! Streaming anomaly detection for metric series.
