//! A fixed-size sliding window of the latest values that answers median and MAD queries.

use serde::{Deserialize, Serialize};

/// The last `capacity` values, in arrival order (a ring) and sorted.
///
/// Pushing costs one binary search and one `memmove` of at most `capacity` values; the median is
/// a lookup and the median absolute deviation a walk of `capacity / 2` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WindowRepr", into = "WindowRepr")]
pub(crate) struct Window {
    capacity: usize,
    /// Values in arrival order; once full, `next` is the oldest.
    ring: Vec<f64>,
    next: usize,
    /// The same values, sorted with `f64::total_cmp`.
    sorted: Vec<f64>,
}

/// What is stored: the ring alone, as the sorted copy can be rebuilt from it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRepr {
    capacity: usize,
    ring: Vec<f64>,
    next: usize,
}

impl TryFrom<WindowRepr> for Window {
    type Error = String;

    fn try_from(repr: WindowRepr) -> Result<Self, Self::Error> {
        if repr.capacity == 0 || repr.ring.len() > repr.capacity {
            return Err(format!(
                "window holds {} values for a capacity of {}",
                repr.ring.len(),
                repr.capacity
            ));
        }
        if repr.next >= repr.capacity
            || (repr.ring.len() < repr.capacity && repr.next != repr.ring.len() % repr.capacity)
        {
            return Err(format!("window position {} is out of range", repr.next));
        }
        if repr.ring.iter().any(|value| !value.is_finite()) {
            return Err("window holds a value that is not finite".to_owned());
        }
        let mut sorted = repr.ring.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(Window {
            capacity: repr.capacity,
            ring: repr.ring,
            next: repr.next,
            sorted,
        })
    }
}

impl From<Window> for WindowRepr {
    fn from(window: Window) -> Self {
        WindowRepr {
            capacity: window.capacity,
            ring: window.ring,
            next: window.next,
        }
    }
}

impl Window {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Window {
            capacity,
            ring: Vec::with_capacity(capacity),
            next: 0,
            sorted: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn push(&mut self, value: f64) {
        if self.ring.len() < self.capacity {
            self.ring.push(value);
        } else {
            let oldest = std::mem::replace(&mut self.ring[self.next], value);
            if let Ok(at) = self
                .sorted
                .binary_search_by(|probe| probe.total_cmp(&oldest))
            {
                self.sorted.remove(at);
            }
        }
        self.next = (self.next + 1) % self.capacity;
        let at = self
            .sorted
            .partition_point(|probe| probe.total_cmp(&value).is_lt());
        self.sorted.insert(at, value);
    }

    /// The `rank`-th smallest value (0-based); `rank` must be below `len()`.
    pub(crate) fn sorted_at(&self, rank: usize) -> f64 {
        self.sorted.get(rank).copied().unwrap_or(0.0)
    }

    /// How many values are at least `value`.
    pub(crate) fn count_at_or_above(&self, value: f64) -> usize {
        self.sorted.len() - self.sorted.partition_point(|probe| *probe < value)
    }

    /// The sum of the `count` largest values.
    pub(crate) fn sum_of_top(&self, count: usize) -> f64 {
        self.sorted.iter().rev().take(count).sum()
    }

    /// The mean absolute deviation around `center`.
    pub(crate) fn mean_deviation(&self, center: f64) -> Option<f64> {
        if self.ring.is_empty() {
            return None;
        }
        let sum: f64 = self.ring.iter().map(|value| (value - center).abs()).sum();
        Some(sum / self.ring.len() as f64)
    }

    pub(crate) fn median(&self) -> Option<f64> {
        let len = self.sorted.len();
        if len == 0 {
            return None;
        }
        let upper = self.sorted[len / 2];
        if len % 2 == 1 {
            Some(upper)
        } else {
            Some((self.sorted[len / 2 - 1] + upper) / 2.0)
        }
    }

    /// The median absolute deviation around `center` (the window's median).
    ///
    /// The deviations on either side of the median are already sorted, so the k-th smallest is
    /// found by merging the two runs outwards from the median.
    pub(crate) fn mad(&self, center: f64) -> Option<f64> {
        let len = self.sorted.len();
        if len == 0 {
            return None;
        }
        let split = self.sorted.partition_point(|probe| *probe < center);
        let mut below = split; // Next candidate below is `below - 1`.
        let mut above = split; // Next candidate above is `above`.
        let wanted = len / 2 + 1;
        let mut deviation = 0.0;
        for _ in 0..wanted {
            let down = below.checked_sub(1).map(|at| center - self.sorted[at]);
            let up = self.sorted.get(above).map(|value| value - center);
            deviation = match (down, up) {
                (Some(down), Some(up)) if down <= up => {
                    below -= 1;
                    down
                }
                (_, Some(up)) => {
                    above += 1;
                    up
                }
                (Some(down), None) => {
                    below -= 1;
                    down
                }
                (None, None) => break,
            };
        }
        Some(deviation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let len = sorted.len();
        if len % 2 == 1 {
            sorted[len / 2]
        } else {
            (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0
        }
    }

    #[test]
    fn median_and_mad_match_a_naive_computation() {
        let mut window = Window::new(7);
        let mut history = Vec::new();
        for step in 0..40_u32 {
            let value = f64::from((step * 37) % 11) - 3.5;
            window.push(value);
            history.push(value);
            let latest = &history[history.len().saturating_sub(7)..];
            let median = naive_median(latest);
            assert_eq!(window.median(), Some(median));
            let deviations: Vec<f64> = latest.iter().map(|value| (value - median).abs()).collect();
            let mut sorted = deviations.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(
                window.mad(median),
                Some(sorted[sorted.len() / 2]),
                "step {step}"
            );
            assert_eq!(window.len(), latest.len());
        }
    }

    #[test]
    fn an_inconsistent_stored_window_is_refused() {
        let stored = r#"{"capacity":2,"ring":[1.0,2.0,3.0],"next":0}"#;
        assert!(serde_json::from_str::<Window>(stored).is_err());
    }
}
