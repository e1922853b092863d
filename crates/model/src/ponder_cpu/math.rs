//! Branch-free exp, sigmoid and tanh that LLVM can vectorise, with the polynomials of the
//! Cephes library (`expf.c`, `tanhf.c`, S. L. Moshier).
//!
//! Every function takes `FMA`: with `true` the multiply-adds use `f32::mul_add`, which is one
//! instruction inside a function compiled with the `fma` target feature and a slow libm call
//! outside it, so callers pass `true` only from such functions.

/// Computes `a · b + c`, fused when `FMA` is set.
#[inline(always)]
pub(crate) fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Computes eˣ with a maximum relative error of about 1e-7 for x in [−87.3, 88].
///
/// Arguments above 88 saturate to e⁸⁸ ≈ 1.7e38 and arguments below −87.3 to e⁻⁸⁷·³ ≈ 1.2e-38,
/// so the result is always finite and positive. NaN stays NaN.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    // 1.5 · 2²³: adding it rounds x·log₂e to an integer n in the low mantissa bits.
    const ROUNDING_SHIFT: f32 = 12_582_912.0;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // The bounds keep n in [−126, 127], so 2ⁿ is a normal f32. Comparisons with NaN are false,
    // so NaN passes through both clamps.
    let x = if x > 88.0 { 88.0 } else { x };
    let x = if x < -87.3 { -87.3 } else { x };

    let shifted = multiply_add::<FMA>(x, std::f32::consts::LOG2_E, ROUNDING_SHIFT);
    let n = shifted - ROUNDING_SHIFT;
    let r = multiply_add::<FMA>(n, -LN2_HIGH, x);
    let r = multiply_add::<FMA>(n, -LN2_LOW, r);

    let mut p = 1.987_569_1e-4;
    p = multiply_add::<FMA>(p, r, 1.398_199_9e-3);
    p = multiply_add::<FMA>(p, r, 8.333_452e-3);
    p = multiply_add::<FMA>(p, r, 4.166_579_6e-2);
    p = multiply_add::<FMA>(p, r, 1.666_666_5e-1);
    p = multiply_add::<FMA>(p, r, 5e-1);
    let er = multiply_add::<FMA>(p, r * r, r + 1.0);

    // The bits of `shifted` are those of ROUNDING_SHIFT plus n, so the exponent field of 2ⁿ is
    // n + 127 = bits − 0x4B40_0000 + 127.
    let scale = f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    er * scale
}

/// Computes the logistic sigmoid 1 / (1 + e⁻ˣ); saturates to 1 above 87.3 and to about 6e-39
/// below −88.
#[inline(always)]
pub(crate) fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

/// Computes tanh x: the Cephes odd polynomial for |x| < 0.625, where 1 − 2 / (e²ˣ + 1) would
/// lose relative precision, and that formula elsewhere. Saturates to ±1; NaN stays NaN.
#[inline(always)]
pub(crate) fn tanh<const FMA: bool>(x: f32) -> f32 {
    let magnitude = x.abs();
    let large = 1.0 - 2.0 / (exp::<FMA>(2.0 * magnitude) + 1.0);
    let large = large.copysign(x);

    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = multiply_add::<FMA>(p, z, 2.063_909e-2);
    p = multiply_add::<FMA>(p, z, -5.373_971_6e-2);
    p = multiply_add::<FMA>(p, z, 1.333_144_2e-1);
    p = multiply_add::<FMA>(p, z, -3.333_328e-1);
    let small = multiply_add::<FMA>(p * z, x, x);

    if magnitude < 0.625 { small } else { large }
}

/// Returns whether the CPU runs AVX2 and FMA instructions, so the `avx2,fma` variants of the
/// kernels may be called.
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates `function` on a dense grid over [−120, 120] plus the infinities, and returns
    /// the largest relative error against `reference` (computed in f64) where the reference is
    /// a normal f32, after checking that no result is NaN.
    fn max_relative_error(function: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64) -> f64 {
        let mut worst = 0.0f64;
        let grid = (-1_200_000..=1_200_000).map(|i| i as f32 * 1e-4);
        for x in grid.chain([f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30]) {
            let value = function(x);
            let expected = reference(x as f64);
            assert!(!value.is_nan(), "NaN at x = {x}");
            assert!(value.is_finite(), "overflow to {value} at x = {x}");
            if expected.abs() >= f32::MIN_POSITIVE as f64 && expected.abs() <= f32::MAX as f64 {
                let error = (value as f64 - expected).abs() / expected.abs();
                worst = worst.max(error);
            } else {
                // Outside the normal range the clamps return a value within 1.2e-38 of 0.
                assert!(
                    (value as f64 - expected.min(f32::MAX as f64)).abs() < 1.2e-38
                        || expected > f32::MAX as f64,
                    "x = {x}: {value} against {expected}"
                );
            }
        }
        worst
    }

    fn check_both(name: &str, limit: f64, portable: fn(f32) -> f32, fused: fn(f32) -> f32) {
        let reference: fn(f64) -> f64 = match name {
            "exp" => f64::exp,
            "sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
            _ => f64::tanh,
        };
        let error = max_relative_error(portable, reference);
        assert!(error < limit, "{name} portable: relative error {error:e}");
        if has_avx2_fma() {
            let error = max_relative_error(fused, reference);
            assert!(error < limit, "{name} with FMA: relative error {error:e}");
        }
    }

    #[test]
    fn exp_matches_std_on_grid() {
        // exp is only compared where e^x is a normal f32, x in [−87.3, 88]; beyond, it saturates.
        let clamped = |function: fn(f32) -> f32| {
            move |x: f32| {
                if (-87.3..=88.0).contains(&x) {
                    function(x)
                } else {
                    (x as f64).clamp(-87.3, 88.0).exp() as f32
                }
            }
        };
        let portable = clamped(exp::<false>);
        let reference = |x: f64| x.clamp(-87.3, 88.0).exp();
        let error = max_relative_error(portable, reference);
        assert!(error < 3e-7, "exp portable: relative error {error:e}");
        assert_eq!(exp::<false>(f32::INFINITY), exp::<false>(88.0));
        assert!(exp::<false>(f32::NAN).is_nan());
        if has_avx2_fma() {
            let error = max_relative_error(clamped(exp::<true>), reference);
            assert!(error < 3e-7, "exp with FMA: relative error {error:e}");
        }
    }

    #[test]
    fn sigmoid_matches_std_on_grid() {
        check_both("sigmoid", 4e-7, sigmoid::<false>, sigmoid::<true>);
        assert_eq!(sigmoid::<false>(f32::INFINITY), 1.0);
        assert!(sigmoid::<false>(f32::NEG_INFINITY) < 1e-38);
        assert!(sigmoid::<false>(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_matches_std_on_grid() {
        check_both("tanh", 4e-7, tanh::<false>, tanh::<true>);
        assert_eq!(tanh::<false>(f32::INFINITY), 1.0);
        assert_eq!(tanh::<false>(-1e30), -1.0);
        assert!(tanh::<false>(f32::NAN).is_nan());
    }
}
