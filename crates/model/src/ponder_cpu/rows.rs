//! The elementwise work of one ACT step, fused into one pass over each batch row: the cell
//! update, the output and halting heads in the forward direction, and their derivatives in the
//! backward direction. Each pass is compiled twice, for AVX2 + FMA and portably, and picks one
//! at run time.

use super::math::{has_avx2_fma, multiply_add, sigmoid, tanh};
use crate::ponder::CellKind;

/// Inputs and outputs of the forward pass of one step over the rows of a batch chunk.
///
/// Rows are contiguous. A state row has `hidden` values and a projection row `gates` values
/// (3 · hidden for the GRU, hidden for the RNN). A row of saved GRU activations has
/// 4 · hidden values: r, z, the candidate and the recurrent candidate term with its bias.
/// A head output row has classes + 1 values: the output logits, then the halting logit.
pub(crate) struct ForwardRows<'a> {
    pub cell: CellKind,
    pub hidden: usize,
    /// Input projection x·W + b of this step.
    pub projected: &'a [f32],
    /// Recurrent projection sₙ₋₁·U without bias, or `None` at step 1, where sₙ₋₁ = 0.
    pub recurrent: Option<&'a [f32]>,
    pub hidden_bias: &'a [f32],
    pub previous_state: &'a [f32],
    pub state: &'a mut [f32],
    /// Saved GRU activations; empty for the RNN.
    pub saved: &'a mut [f32],
    /// Output and halting weights, one row of `hidden` values per head output.
    pub heads: &'a [f32],
    pub head_bias: &'a [f32],
    pub head_outputs: &'a mut [f32],
}

/// Inputs and outputs of the backward pass of one step over the rows of a batch chunk, in the
/// layouts of [`ForwardRows`].
pub(crate) struct BackwardRows<'a> {
    pub cell: CellKind,
    pub hidden: usize,
    pub state: &'a [f32],
    pub previous_state: &'a [f32],
    pub saved: &'a [f32],
    pub heads: &'a [f32],
    /// Gradient of the loss with respect to the head outputs of this step.
    pub head_gradients: &'a [f32],
    /// Gradient with respect to sₙ that flows back from step n + 1.
    pub carry: &'a [f32],
    /// Receives the part of the gradient with respect to sₙ₋₁ that bypasses the recurrent
    /// projection (z ⊙ ds for the GRU, 0 for the RNN).
    pub previous_carry: &'a mut [f32],
    /// Receives the gradient with respect to the recurrent projection, bias included.
    pub recurrent_gradients: &'a mut [f32],
    /// Accumulates the gradient with respect to the input projection over steps.
    pub projected_gradients: &'a mut [f32],
    /// Accumulates the column sums of the recurrent gradient (the hidden bias gradient).
    pub hidden_bias_gradient: &'a mut [f32],
    /// At step 1, accumulates the column sums of that step's input projection gradient: the
    /// gradient of the first-step flag row of the input weight.
    pub flag_gradient: Option<&'a mut [f32]>,
}

/// Runs the forward pass of one step.
pub(crate) fn forward(rows: ForwardRows<'_>) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { forward_avx2(rows) };
        return;
    }
    forward_generic::<false>(rows);
}

/// Runs the backward pass of one step.
pub(crate) fn backward(rows: BackwardRows<'_>) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { backward_avx2(rows) };
        return;
    }
    backward_generic::<false>(rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2(rows: ForwardRows<'_>) {
    forward_generic::<true>(rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2(rows: BackwardRows<'_>) {
    backward_generic::<true>(rows);
}

/// Computes Σᵢ aᵢ bᵢ with eight independent partial sums, which LLVM keeps in one vector
/// register.
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut a_chunks = a.chunks_exact(8);
    let mut b_chunks = b.chunks_exact(8);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for lane in 0..8 {
            sums[lane] = multiply_add::<FMA>(x[lane], y[lane], sums[lane]);
        }
    }
    let mut total = 0.0;
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        total = multiply_add::<FMA>(*x, *y, total);
    }
    total + sums.iter().sum::<f32>()
}

#[inline(always)]
fn forward_generic<const FMA: bool>(rows: ForwardRows<'_>) {
    let hidden = rows.hidden;
    let gates = rows.projected.len() / rows.state.len() * hidden;
    let head_count = rows.head_bias.len();
    let batch = rows.state.len() / hidden;
    for b in 0..batch {
        let projected = &rows.projected[b * gates..(b + 1) * gates];
        let recurrent = rows.recurrent.map(|r| &r[b * gates..(b + 1) * gates]);
        let previous = &rows.previous_state[b * hidden..(b + 1) * hidden];
        let state = &mut rows.state[b * hidden..(b + 1) * hidden];
        match rows.cell {
            CellKind::Rnn => {
                for j in 0..hidden {
                    let recurrent = recurrent.map_or(0.0, |r| r[j]) + rows.hidden_bias[j];
                    state[j] = tanh::<FMA>(projected[j] + recurrent);
                }
            }
            CellKind::Gru => {
                let saved = &mut rows.saved[b * 4 * hidden..(b + 1) * 4 * hidden];
                let (reset, rest) = saved.split_at_mut(hidden);
                let (update, rest) = rest.split_at_mut(hidden);
                let (candidate, candidate_recurrent) = rest.split_at_mut(hidden);
                let gates = GruGates {
                    projected,
                    hidden_bias: rows.hidden_bias,
                    previous,
                };
                let outputs = GruOutputs {
                    state,
                    reset,
                    update,
                    candidate,
                    candidate_recurrent,
                };
                match recurrent {
                    Some(recurrent) => gru_row::<FMA, true>(&gates, recurrent, outputs),
                    // Step 1 has no recurrent projection (sₙ₋₁ = 0); the slice is not read.
                    None => gru_row::<FMA, false>(&gates, &[], outputs),
                }
            }
        }
        let outputs = &mut rows.head_outputs[b * head_count..(b + 1) * head_count];
        for (o, output) in outputs.iter_mut().enumerate() {
            let weights = &rows.heads[o * hidden..(o + 1) * hidden];
            *output = dot::<FMA>(state, weights) + rows.head_bias[o];
        }
    }
}

/// Inputs of the GRU update of one row, each `gates` or `hidden` values long.
struct GruGates<'a> {
    projected: &'a [f32],
    hidden_bias: &'a [f32],
    previous: &'a [f32],
}

/// Outputs of the GRU update of one row, each `hidden` values long.
struct GruOutputs<'a> {
    state: &'a mut [f32],
    reset: &'a mut [f32],
    update: &'a mut [f32],
    candidate: &'a mut [f32],
    candidate_recurrent: &'a mut [f32],
}

/// Computes one row's GRU update. `RECURRENT` is false at step 1, where `recurrent` is not
/// read.
#[inline(always)]
fn gru_row<const FMA: bool, const RECURRENT: bool>(
    gates: &GruGates<'_>,
    recurrent: &[f32],
    outputs: GruOutputs<'_>,
) {
    let hidden = outputs.state.len();
    let (projected_reset, rest) = gates.projected[..3 * hidden].split_at(hidden);
    let (projected_update, projected_candidate) = rest.split_at(hidden);
    let (bias_reset, rest) = gates.hidden_bias[..3 * hidden].split_at(hidden);
    let (bias_update, bias_candidate) = rest.split_at(hidden);
    let (recurrent_reset, recurrent_update, recurrent_candidate) = if RECURRENT {
        let (reset, rest) = recurrent[..3 * hidden].split_at(hidden);
        let (update, candidate) = rest.split_at(hidden);
        (reset, update, candidate)
    } else {
        (&[][..], &[][..], &[][..])
    };
    let previous = &gates.previous[..hidden];
    let GruOutputs {
        state,
        reset,
        update,
        candidate,
        candidate_recurrent,
    } = outputs;
    let (reset, update) = (&mut reset[..hidden], &mut update[..hidden]);
    let candidate = &mut candidate[..hidden];
    let candidate_recurrent = &mut candidate_recurrent[..hidden];
    // LLVM did not vectorise a plain loop over j. It does vectorise blocks of 8 lanes in
    // fixed-size arrays, one AVX2 register per array. The remainder runs one element at a time.
    const LANES: usize = 8;
    let blocks = hidden / LANES * LANES;
    let mut start = 0;
    while start < blocks {
        let mut r = [0.0f32; LANES];
        let mut z = [0.0f32; LANES];
        let mut rc = [0.0f32; LANES];
        let mut c = [0.0f32; LANES];
        for lane in 0..LANES {
            let j = start + lane;
            let (recurrent_r, recurrent_z, recurrent_c) = if RECURRENT {
                (
                    recurrent_reset[j],
                    recurrent_update[j],
                    recurrent_candidate[j],
                )
            } else {
                (0.0, 0.0, 0.0)
            };
            r[lane] = projected_reset[j] + (recurrent_r + bias_reset[j]);
            z[lane] = projected_update[j] + (recurrent_z + bias_update[j]);
            rc[lane] = recurrent_c + bias_candidate[j];
        }
        for lane in 0..LANES {
            r[lane] = sigmoid::<FMA>(r[lane]);
            z[lane] = sigmoid::<FMA>(z[lane]);
        }
        for lane in 0..LANES {
            c[lane] = multiply_add::<FMA>(r[lane], rc[lane], projected_candidate[start + lane]);
        }
        for value in &mut c {
            *value = tanh::<FMA>(*value);
        }
        for lane in 0..LANES {
            let j = start + lane;
            reset[j] = r[lane];
            update[j] = z[lane];
            candidate[j] = c[lane];
            candidate_recurrent[j] = rc[lane];
            state[j] = multiply_add::<FMA>(z[lane], previous[j] - c[lane], c[lane]);
        }
        start += LANES;
    }
    for j in blocks..hidden {
        let (recurrent_r, recurrent_z, recurrent_c) = if RECURRENT {
            (
                recurrent_reset[j],
                recurrent_update[j],
                recurrent_candidate[j],
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        let r = sigmoid::<FMA>(projected_reset[j] + (recurrent_r + bias_reset[j]));
        let z = sigmoid::<FMA>(projected_update[j] + (recurrent_z + bias_update[j]));
        let rc = recurrent_c + bias_candidate[j];
        let c = tanh::<FMA>(multiply_add::<FMA>(r, rc, projected_candidate[j]));
        reset[j] = r;
        update[j] = z;
        candidate[j] = c;
        candidate_recurrent[j] = rc;
        state[j] = multiply_add::<FMA>(z, previous[j] - c, c);
    }
}

#[inline(always)]
fn backward_generic<const FMA: bool>(rows: BackwardRows<'_>) {
    let hidden = rows.hidden;
    let batch = rows.state.len() / hidden;
    let gates = rows.recurrent_gradients.len() / batch;
    let head_count = rows.heads.len() / hidden;
    let mut flag_gradient = rows.flag_gradient;
    for b in 0..batch {
        let state = &rows.state[b * hidden..(b + 1) * hidden];
        let previous = &rows.previous_state[b * hidden..(b + 1) * hidden];
        let carry = &rows.carry[b * hidden..(b + 1) * hidden];
        let previous_carry = &mut rows.previous_carry[b * hidden..(b + 1) * hidden];
        let head_gradients = &rows.head_gradients[b * head_count..(b + 1) * head_count];
        let recurrent_gradients = &mut rows.recurrent_gradients[b * gates..(b + 1) * gates];
        let projected_gradients = &mut rows.projected_gradients[b * gates..(b + 1) * gates];

        // ds = carry + Σₒ (dL/d outputₒ) · headₒ, the heads being the output and halting units.
        previous_carry.copy_from_slice(carry);
        for (o, &gradient) in head_gradients.iter().enumerate() {
            let weights = &rows.heads[o * hidden..(o + 1) * hidden];
            for j in 0..hidden {
                previous_carry[j] = multiply_add::<FMA>(gradient, weights[j], previous_carry[j]);
            }
        }
        // `previous_carry` now contains ds for this row. The loop below overwrites it, value by
        // value, with the direct part of dsₙ₋₁.
        match rows.cell {
            CellKind::Rnn => {
                for j in 0..hidden {
                    let ds = previous_carry[j];
                    let s = state[j];
                    let d_pre = ds * (1.0 - s * s);
                    recurrent_gradients[j] = d_pre;
                    projected_gradients[j] += d_pre;
                    previous_carry[j] = 0.0;
                    if let Some(flag) = flag_gradient.as_deref_mut() {
                        flag[j] += d_pre;
                    }
                }
            }
            CellKind::Gru => {
                let saved = &rows.saved[b * 4 * hidden..(b + 1) * 4 * hidden];
                let (reset, rest) = saved.split_at(hidden);
                let (update, rest) = rest.split_at(hidden);
                let (candidate, candidate_recurrent) = rest.split_at(hidden);
                let (d_reset, rest) = recurrent_gradients.split_at_mut(hidden);
                let (d_update, d_candidate_recurrent) = rest.split_at_mut(hidden);
                let (p_reset, rest) = projected_gradients.split_at_mut(hidden);
                let (p_update, p_candidate) = rest.split_at_mut(hidden);
                for j in 0..hidden {
                    let ds = previous_carry[j];
                    let (r, z, c) = (reset[j], update[j], candidate[j]);
                    // s = c + z (sₙ₋₁ − c)
                    let dz = ds * (previous[j] - c);
                    let dc = ds * (1.0 - z);
                    let d_pre_c = dc * (1.0 - c * c);
                    let dr = d_pre_c * candidate_recurrent[j];
                    let d_pre_r = dr * r * (1.0 - r);
                    let d_pre_z = dz * z * (1.0 - z);
                    d_reset[j] = d_pre_r;
                    d_update[j] = d_pre_z;
                    d_candidate_recurrent[j] = d_pre_c * r;
                    p_reset[j] += d_pre_r;
                    p_update[j] += d_pre_z;
                    p_candidate[j] += d_pre_c;
                    previous_carry[j] = ds * z;
                    if let Some(flag) = flag_gradient.as_deref_mut() {
                        flag[j] += d_pre_r;
                        flag[hidden + j] += d_pre_z;
                        flag[2 * hidden + j] += d_pre_c;
                    }
                }
            }
        }
        for (sum, value) in rows
            .hidden_bias_gradient
            .iter_mut()
            .zip(&*recurrent_gradients)
        {
            *sum += value;
        }
    }
}
