//! Checks that stop a run on numerical faults before they reach the model.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Tensor};

use crate::TrainingError;

/// Returns an error naming `quantity`, the epoch and the step when `value` is NaN or infinite.
pub fn check_finite(
    quantity: &str,
    value: f64,
    epoch: usize,
    step: u64,
) -> Result<(), TrainingError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TrainingError::NonFinite {
            quantity: quantity.to_owned(),
            value,
            epoch,
            step,
        })
    }
}

/// Returns an error when the gradient of any parameter of `model` holds a NaN or infinity, so
/// the optimiser step that would spread it into the weights is never taken.
///
/// The per-parameter checks are combined on the device and read back once per step; only when
/// one fails are the parameters searched for the first bad gradient.
pub fn check_finite_gradients<M: Module>(
    model: &M,
    gradients: &GradientsParams,
    epoch: usize,
    step: u64,
) -> Result<(), TrainingError> {
    let mut flags = FiniteFlags {
        gradients,
        flags: Vec::new(),
    };
    model.visit(&mut flags);
    if flags.flags.is_empty() {
        return Ok(());
    }
    let all_finite = Tensor::cat(flags.flags, 0).all().into_scalar::<bool>();
    if all_finite {
        return Ok(());
    }

    let mut search = FirstBadGradient {
        gradients,
        first_bad: None,
        index: 0,
    };
    model.visit(&mut search);
    let (index, value) = search.first_bad.unwrap_or((0, f64::NAN));
    Err(TrainingError::NonFinite {
        quantity: format!("gradient of parameter {index}"),
        value,
        epoch,
        step,
    })
}

/// Collects, without reading them back, whether each parameter's gradient is finite.
struct FiniteFlags<'a> {
    gradients: &'a GradientsParams,
    flags: Vec<Tensor<1, Bool>>,
}

impl ModuleVisitor for FiniteFlags<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(gradient) = self.gradients.get::<D>(param.id) {
            self.flags.push(gradient.is_finite().all());
        }
    }
}

/// Finds the first parameter, in visiting order, whose gradient is not finite.
struct FirstBadGradient<'a> {
    gradients: &'a GradientsParams,
    first_bad: Option<(usize, f64)>,
    index: usize,
}

impl ModuleVisitor for FirstBadGradient<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let index = self.index;
        self.index += 1;
        if self.first_bad.is_some() {
            return;
        }
        let Some(gradient) = self.gradients.get::<D>(param.id) else {
            return;
        };
        let finite = gradient.clone().is_finite().all().into_scalar::<bool>();
        if !finite {
            // Report the sum, which is NaN or ±inf, as the offending value.
            let value = gradient.sum().into_scalar::<f32>() as f64;
            self.first_bad = Some((index, value));
        }
    }
}
