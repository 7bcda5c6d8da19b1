//! GELU with the exact normal CDF, x·Φ(x), Keras' default (`approximate=False`). dfdx 0.13's
//! `accurate_gelu` computes this forward but its backward is wrong (at x = -1 it gives -0.18
//! where the derivative Φ(x) + x·φ(x) is -0.083), so this op has its own.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::Backend;

/// erf(x), Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7, under f32's resolution
/// near 1).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// Φ(x) and φ(x) of the standard normal.
fn cdf_pdf(x: f64) -> (f64, f64) {
    (0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2)), (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt())
}

/// x·Φ(x) elementwise, recorded on `x`'s tape, on the device's own kernels
/// ([`Backend::try_gelu`]); panics if the device fails.
pub fn gelu<D: Backend, T: Tape<f32, D>>(x: Tensor<(usize, usize), f32, D, T>) -> Tensor<(usize, usize), f32, D, T> {
    D::try_gelu(x).unwrap_or_else(|e| super::failed::<D>("gelu", e))
}

/// [`gelu`] on the host, the CPU's implementation.
pub(super) fn on_host<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
) -> Tensor<(usize, usize), f32, D, T> {
    let (x, mut tape) = x.split_tape();
    let y: Vec<f32> = super::host(&x).par_iter().map(|&v| (f64::from(v) * cdf_pdf(f64::from(v)).0) as f32).collect();
    let out = x.device().tensor_from_vec(y, *x.shape());
    if T::OWNS_TAPE {
        let out_handle = out.clone();
        tape.add_backward_op(move |grads| {
            let host = super::host(&x);
            let dx: Vec<f32> = D::with_grad(grads, &out_handle, |dy| {
                host.par_iter()
                    .zip(dy)
                    .map(|(&v, &d)| {
                        let (cdf, pdf) = cdf_pdf(f64::from(v));
                        (f64::from(d) * (cdf + f64::from(v) * pdf)) as f32
                    })
                    .collect()
            })?;
            D::add_grad(grads, &x, &dx)
        });
    }
    out.put_tape(tape)
}
