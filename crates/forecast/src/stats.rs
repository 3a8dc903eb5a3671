//! Small statistics: the normal quantile and the seasonal-naive forecast.

/// The quantile function of the standard normal distribution, by Acklam's rational
/// approximation (relative error below 1.2e-9), which is plenty for interval widths.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Point, lower and upper forecasts.
pub(crate) struct Paths {
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

/// The seasonal-naive forecast (each point repeats the value one `period` earlier; a period of 1
/// is the naive forecast) with the interval of Hyndman and Athanasopoulos, FPP3 section 5.5: the
/// residual deviation grows with the square root of the number of whole seasons ahead.
pub(crate) fn seasonal_naive(values: &[f64], period: usize, horizon: usize, level: f64) -> Paths {
    let period = period.clamp(1, values.len().max(1));
    let last_season = &values[values.len() - period..];
    let sigma = seasonal_naive_residuals(values, period)
        .map(|residual| residual * residual)
        .sum::<f64>()
        .sqrt()
        / (values.len().saturating_sub(period).max(1) as f64).sqrt();
    let z = normal_quantile(0.5 + level / 2.0);
    let mut paths = Paths {
        point: Vec::with_capacity(horizon),
        lower: Vec::with_capacity(horizon),
        upper: Vec::with_capacity(horizon),
    };
    for h in 0..horizon {
        let point = last_season[h % period];
        let half_width = z * sigma * ((h / period + 1) as f64).sqrt();
        paths.point.push(point);
        paths.lower.push(point - half_width);
        paths.upper.push(point + half_width);
    }
    paths
}

/// `y[t] - y[t - period]` over the series.
pub(crate) fn seasonal_naive_residuals(
    values: &[f64],
    period: usize,
) -> impl Iterator<Item = f64> + '_ {
    values
        .iter()
        .skip(period)
        .zip(values)
        .map(|(now, before)| now - before)
}

/// The mean absolute in-sample error of the seasonal-naive forecast: the MASE scale.
pub(crate) fn seasonal_naive_mae(values: &[f64], period: usize) -> Option<f64> {
    let count = values
        .len()
        .checked_sub(period)
        .filter(|&count| count > 0)?;
    let sum: f64 = seasonal_naive_residuals(values, period).map(f64::abs).sum();
    Some(sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_551_6),
            (0.975, 1.959_964),
            (0.005, -2.575_829),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-6, "{p}");
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let values = [1.0, 2.0, 3.0, 1.0, 2.0, 4.0];
        let paths = seasonal_naive(&values, 3, 4, 0.95);
        assert_eq!(paths.point, vec![1.0, 2.0, 4.0, 1.0]);
        assert!(paths.lower[3] < paths.lower[0]);
        assert_eq!(seasonal_naive_mae(&values, 3), Some(1.0 / 3.0));
        assert_eq!(seasonal_naive_mae(&values, 6), None);
    }
}
