//! A series on a regular grid, built from samples that may be jittered, duplicated or gappy.

use crate::{Error, Settings, MAX_POINTS, MIN_POINTS};

/// Values at `start_unix_secs + i * step_secs`, with no gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    start_unix_secs: i64,
    step_secs: i64,
    values: Vec<f64>,
    filled_points: usize,
    dropped_points: usize,
}

impl Series {
    /// Puts `(unix_secs, value)` samples, in time order, on a grid of `settings.step_secs` (or the
    /// median spacing).
    ///
    /// Each sample goes to the nearest grid slot; samples sharing a slot are averaged; empty slots
    /// are filled linearly when the gap is at most `settings.max_gap_steps`, and the history
    /// before a longer gap is dropped.
    pub fn from_points(points: &[(i64, f64)], settings: &Settings) -> Result<Series, Error> {
        settings.validate()?;
        if points.is_empty() {
            return Err(Error::Empty);
        }
        for (index, window) in points.windows(2).enumerate() {
            if window[1].0 < window[0].0 {
                return Err(Error::NonMonotonic {
                    index: index + 1,
                    previous_unix_secs: window[0].0,
                    unix_secs: window[1].0,
                });
            }
        }
        if let Some((index, &(unix_secs, value))) = points
            .iter()
            .enumerate()
            .find(|(_, (_, value))| !value.is_finite())
        {
            return Err(Error::NotFinite {
                index,
                unix_secs,
                value,
            });
        }
        let step_secs = match settings.step_secs {
            Some(step_secs) => step_secs,
            None => median_spacing(points).ok_or(Error::TooShort {
                points: 1,
                min_points: MIN_POINTS,
            })?,
        };

        // Slots are counted in i128 so that no timestamps, however far apart, overflow.
        // The grid sits on multiples of the step, as Prometheus aligns its query steps, so a
        // first sample that came a second late does not shift every forecast timestamp.
        let step = i128::from(step_secs);
        let first = (i128::from(points[0].0) + step / 2).div_euclid(step) * step;
        let slot_of = |unix_secs: i64| (i128::from(unix_secs) - first + step / 2).div_euclid(step);
        let mut slots: Vec<(i128, f64, usize)> = Vec::new();
        for &(unix_secs, value) in points {
            let slot = slot_of(unix_secs);
            match slots.last_mut() {
                Some((last, sum, count)) if *last == slot => {
                    *sum += value;
                    *count += 1;
                }
                _ => slots.push((slot, value, 1)),
            }
        }
        let max_jump = settings.max_gap_steps as i128 + 1;
        let keep_from = slots
            .windows(2)
            .rposition(|pair| pair[1].0 - pair[0].0 > max_jump)
            .map_or(0, |index| index + 1);
        let dropped_points = slots[..keep_from].iter().map(|slot| slot.2).sum();
        let slots = &slots[keep_from..];
        let span = slots[slots.len() - 1].0 - slots[0].0 + 1;
        if span > MAX_POINTS as i128 {
            return Err(Error::TooLong {
                points: usize::try_from(span).unwrap_or(usize::MAX),
                max: MAX_POINTS,
            });
        }

        let mut values = Vec::with_capacity(slots.len());
        let mut filled_points = 0;
        for (index, &(slot, sum, count)) in slots.iter().enumerate() {
            let value = sum / count as f64;
            if let Some(&(previous_slot, previous_sum, previous_count)) = index
                .checked_sub(1)
                .and_then(|previous| slots.get(previous))
            {
                let previous_value = previous_sum / previous_count as f64;
                let missing = (slot - previous_slot - 1) as usize;
                for k in 1..=missing {
                    let fraction = k as f64 / (missing + 1) as f64;
                    values.push(previous_value + (value - previous_value) * fraction);
                }
                filled_points += missing;
            }
            values.push(value);
        }
        if values.len() < MIN_POINTS {
            return Err(Error::TooShort {
                points: values.len(),
                min_points: MIN_POINTS,
            });
        }
        let start = first + slots[0].0 * step;
        Ok(Series {
            start_unix_secs: i64::try_from(start).unwrap_or(if start < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            step_secs,
            values,
            filled_points,
            dropped_points,
        })
    }

    /// Builds a series from values already on a grid.
    pub fn from_values(
        start_unix_secs: i64,
        step_secs: i64,
        values: Vec<f64>,
    ) -> Result<Series, Error> {
        let points: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &value)| {
                let offset = (i as i64).saturating_mul(step_secs);
                (start_unix_secs.saturating_add(offset), value)
            })
            .collect();
        let settings = Settings {
            step_secs: Some(step_secs),
            ..Settings::default()
        };
        Series::from_points(&points, &settings)
    }

    /// The first `len` points, for fitting on the history before a backtest origin.
    pub(crate) fn head(&self, len: usize) -> Series {
        Series {
            values: self.values[..len.min(self.values.len())].to_vec(),
            ..self.clone()
        }
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always false: a series has at least [`MIN_POINTS`] points.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn step_secs(&self) -> i64 {
        self.step_secs
    }

    pub fn start_unix_secs(&self) -> i64 {
        self.start_unix_secs
    }

    /// The time of the point `index` on the grid (which may be past the end).
    pub fn unix_secs_at(&self, index: usize) -> i64 {
        let offset = (index as i64).saturating_mul(self.step_secs);
        self.start_unix_secs.saturating_add(offset)
    }

    /// The time of the last point.
    pub fn last_unix_secs(&self) -> i64 {
        self.unix_secs_at(self.values.len().saturating_sub(1))
    }

    /// How many grid points were filled by linear interpolation.
    pub fn filled_points(&self) -> usize {
        self.filled_points
    }

    /// How many samples were dropped because they came before a gap longer than
    /// `max_gap_steps`.
    pub fn dropped_points(&self) -> usize {
        self.dropped_points
    }
}

/// Scrape intervals that a median spacing within 5% is snapped to, so that jittered scrape times
/// cannot make a step of 299 s that drifts away from the samples over a long series.
const USUAL_STEPS_SECS: [i64; 20] = [
    1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1_200, 1_800, 3_600, 7_200, 10_800, 21_600,
    43_200, 86_400,
];

/// The median of the positive spacings between samples, snapped to a usual scrape interval
/// when close to one; `None` if no two samples differ in time.
fn median_spacing(points: &[(i64, f64)]) -> Option<i64> {
    let mut spacings: Vec<i64> = points
        .windows(2)
        .map(|pair| pair[1].0.saturating_sub(pair[0].0))
        .filter(|&spacing| spacing > 0)
        .collect();
    if spacings.is_empty() {
        return None;
    }
    let middle = spacings.len() / 2;
    let median = *spacings.select_nth_unstable(middle).1;
    let usual = USUAL_STEPS_SECS
        .into_iter()
        .find(|&usual| (i128::from(median) - i128::from(usual)).abs() * 20 <= i128::from(usual));
    Some(usual.unwrap_or(median))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(i64, f64)]) -> Result<Series, Error> {
        Series::from_points(points, &Settings::default())
    }

    #[test]
    fn regular_samples_are_kept_as_they_are() {
        let series = series(&[(120, 1.0), (180, 2.0), (240, 3.0)]).unwrap();
        assert_eq!(series.values(), &[1.0, 2.0, 3.0]);
        assert_eq!(series.step_secs(), 60);
        assert_eq!(series.start_unix_secs(), 120);
        assert_eq!(series.last_unix_secs(), 240);
        let late = Series::from_points(&[(121, 1.0), (181, 2.0), (239, 3.0)], &Settings::default());
        assert_eq!(late.unwrap().start_unix_secs(), 120);
        assert_eq!(series.filled_points(), 0);
    }

    #[test]
    fn jitter_duplicates_and_small_gaps_are_regularised() {
        // 60 s step; one sample late by 5 s, a duplicate, and two missing slots.
        let points = [
            (0, 1.0),
            (60, 2.0),
            (125, 3.0),
            (180, 4.0),
            (180, 6.0),
            (360, 8.0),
            (420, 9.0),
        ];
        let series = series(&points).unwrap();
        assert_eq!(series.values(), &[1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(series.filled_points(), 2);
    }

    #[test]
    fn a_jittered_step_is_snapped_to_the_usual_interval() {
        let points: Vec<(i64, f64)> = (0..100)
            .map(|i| (i * 300 + [0, 4, -2][i as usize % 3] - (i % 2), 1.0))
            .collect();
        let series = series(&points).unwrap();
        assert_eq!(series.step_secs(), 300);
        assert_eq!(series.len(), 100);
        let odd: Vec<(i64, f64)> = (0..10).map(|i| (i * 7, 1.0)).collect();
        assert_eq!(series_step(&odd), 7);
    }

    fn series_step(points: &[(i64, f64)]) -> i64 {
        series(points).unwrap().step_secs()
    }

    #[test]
    fn history_before_a_long_gap_is_dropped() {
        let mut points: Vec<(i64, f64)> = (0..10).map(|i| (i * 60, 1.0)).collect();
        points.extend((0..5).map(|i| (3_600 + i * 60, 2.0)));
        let series = series(&points).unwrap();
        assert_eq!(series.values(), &[2.0; 5]);
        assert_eq!(series.dropped_points(), 10);
        assert_eq!(series.start_unix_secs(), 3_600);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(series(&[]), Err(Error::Empty));
        assert!(matches!(
            series(&[(0, 1.0), (60, f64::NAN), (120, 1.0)]),
            Err(Error::NotFinite {
                index: 1,
                unix_secs: 60,
                ..
            })
        ));
        assert!(matches!(
            series(&[(0, 1.0), (60, 2.0), (30, 3.0)]),
            Err(Error::NonMonotonic { index: 2, .. })
        ));
        assert!(matches!(
            series(&[(0, 1.0), (60, 2.0)]),
            Err(Error::TooShort { points: 2, .. })
        ));
        assert!(matches!(
            series(&[(5, 1.0), (5, 2.0)]),
            Err(Error::TooShort { .. })
        ));
        // Absurd but ordered timestamps make an absurd step, not an overflow.
        let extreme = series(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]).unwrap();
        assert_eq!(extreme.len(), 3);
    }
}
