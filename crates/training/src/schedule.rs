//! Schedules of a hyperparameter over optimiser steps: temperature annealing from soft to hard
//! halting, and delayed, ramped activation of the halting regulariser.

use serde::{Deserialize, Serialize};

/// Curve of a [`Schedule`] between its start and end values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// v = a + t·(b − a).
    Linear,
    /// v = a·(b / a)^t, a straight line in log space; a and b must be positive.
    Exponential,
    /// v = b + (a − b)·(1 + cos πt) / 2, half a cosine period (Loshchilov and Hutter 2017).
    Cosine,
}

/// A value that is `start` up to optimiser step `start_step`, `end` from step `end_step` on,
/// and follows `shape` in between, with t = (step − start_step) / (end_step − start_step).
///
/// A delayed regulariser is a multiplier schedule with start 0 and end 1: weight 0 until
/// `start_step`, then ramped to full weight by `end_step`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub shape: Shape,
    pub start: f64,
    pub end: f64,
    /// Last step with the start value.
    #[serde(default)]
    pub start_step: u64,
    /// First step with the end value; at least `start_step`.
    pub end_step: u64,
}

impl Schedule {
    /// Value at optimiser step `step` (counted from 0 before the first update).
    pub fn value(&self, step: u64) -> f64 {
        if step <= self.start_step {
            return self.start;
        }
        if step >= self.end_step {
            return self.end;
        }
        let t = (step - self.start_step) as f64 / (self.end_step - self.start_step) as f64;
        match self.shape {
            Shape::Linear => self.start + t * (self.end - self.start),
            Shape::Exponential => self.start * (self.end / self.start).powf(t),
            Shape::Cosine => {
                self.end + (self.start - self.end) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }

    /// Describes the first problem with the schedule's values, if any.
    pub fn problem(&self) -> Option<String> {
        if !self.start.is_finite() || !self.end.is_finite() {
            return Some("finite start and end values".to_owned());
        }
        if self.end_step < self.start_step {
            return Some(format!(
                "end_step ({}) >= start_step ({})",
                self.end_step, self.start_step
            ));
        }
        if self.shape == Shape::Exponential && !(self.start > 0.0 && self.end > 0.0) {
            return Some("positive start and end values for an exponential schedule".to_owned());
        }
        None
    }
}

/// Optional schedules of a ponder recipe, `[schedule]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedules {
    /// Relaxation temperature of the Gumbel-sigmoid method; replaces its fixed temperature.
    pub temperature: Option<Schedule>,
    /// Multiplier of the halting regulariser (ponder cost or KL term).
    pub regulariser: Option<Schedule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(shape: Shape) -> Schedule {
        Schedule {
            shape,
            start: 1.0,
            end: 0.01,
            start_step: 100,
            end_step: 300,
        }
    }

    // Start 1, end 0.01 over steps 100..300; the middle is step 200 (t = 0.5).
    // Linear: 1 + 0.5·(0.01 − 1) = 0.505. Exponential: 1·0.01^0.5 = 0.1.
    // Cosine: 0.01 + 0.99·(1 + cos(π/2)) / 2 = 0.505.
    #[test]
    fn schedule_start_middle_end() {
        let cases = [
            (Shape::Linear, 0.505),
            (Shape::Exponential, 0.1),
            (Shape::Cosine, 0.505),
        ];
        for (shape, middle) in cases {
            let s = schedule(shape);
            assert_eq!(s.value(0), 1.0, "{shape:?} before start");
            assert_eq!(s.value(100), 1.0, "{shape:?} at start");
            assert!((s.value(200) - middle).abs() < 1e-12, "{shape:?} middle");
            assert_eq!(s.value(300), 0.01, "{shape:?} at end");
            assert_eq!(s.value(10_000), 0.01, "{shape:?} after end");
        }
    }

    // At t = 0.25 the shapes differ: linear 1 − 0.2475 = 0.7525, exponential
    // 0.01^0.25 ≈ 0.316228, cosine 0.01 + 0.99·(1 + √2/2)/2 ≈ 0.855008.
    #[test]
    fn schedule_quarter_point() {
        let quarter = |shape| schedule(shape).value(150);
        assert!((quarter(Shape::Linear) - 0.7525).abs() < 1e-12);
        assert!((quarter(Shape::Exponential) - 0.01f64.powf(0.25)).abs() < 1e-12);
        let cosine = 0.01 + 0.99 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
        assert!((quarter(Shape::Cosine) - cosine).abs() < 1e-12);
    }

    // A delayed regulariser: 0 until step 50, ramped linearly to 1 at step 150.
    #[test]
    fn delayed_activation() {
        let delay = Schedule {
            shape: Shape::Linear,
            start: 0.0,
            end: 1.0,
            start_step: 50,
            end_step: 150,
        };
        assert_eq!(delay.value(20), 0.0);
        assert_eq!(delay.value(50), 0.0);
        assert!((delay.value(100) - 0.5).abs() < 1e-12);
        assert_eq!(delay.value(150), 1.0);
    }

    #[test]
    fn schedule_problems() {
        let mut s = schedule(Shape::Exponential);
        assert!(s.problem().is_none());
        s.end = 0.0;
        assert!(s.problem().is_some());
        let mut s = schedule(Shape::Linear);
        s.end_step = 10;
        assert!(s.problem().is_some());
        // A step schedule (start_step = end_step) jumps from start to end.
        let step = Schedule {
            start_step: 5,
            end_step: 5,
            ..schedule(Shape::Linear)
        };
        assert!(step.problem().is_none());
        assert_eq!(step.value(5), 1.0);
        assert_eq!(step.value(6), 0.01);
    }
}
