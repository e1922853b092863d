//! Helpers over a module's parameters.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Reads every float parameter of `module` once. Burn draws a parameter's initial values
/// lazily, at its first use, so this fixes them while the caller still controls the device's
/// random generator (after seeding it, for example).
pub fn draw_parameters<M: Module>(module: &M) {
    module.visit(&mut DrawParameters);
}

struct DrawParameters;

impl ModuleVisitor for DrawParameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
