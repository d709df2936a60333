//! The GLM losses row by row: residuals ℓ', values ℓ and curvatures ℓ''·u of the squared,
//! logistic and softmax losses (the reference the fused and GPU kernels are tested against).

use super::*;

pub(super) fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `ℓ'(z)` into `r` and `ℓ(z)` returned, for one row (see [`LossKind`]).
pub fn row_residual<T: Real>(kind: LossKind, z: &[T], t: T, r: &mut [T]) -> T {
    residual_and_loss(kind, z, t, r, true)
}

/// `ℓ'(z)` into `r`, and `ℓ(z)` returned when `want_loss` (else 0).
#[inline(always)]
pub(super) fn residual_and_loss<T: Real>(kind: LossKind, z: &[T], t: T, r: &mut [T], want_loss: bool) -> T {
    match kind {
        LossKind::Squared => {
            r[0] = z[0] - t;
            to_t::<T>(0.5) * r[0] * r[0]
        }
        LossKind::Logistic => {
            r[0] = sigmoid(z[0]) - t;
            // softplus(z) − t z, stable for large |z|.
            if want_loss {
                z[0].max(T::zero()) + (-z[0].abs()).exp().ln_1p() - t * z[0]
            } else {
                T::zero()
            }
        }
        LossKind::Softmax => {
            let m = z.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            // e^{z−m} once per entry, kept in r until the sum is known.
            let mut sum = T::zero();
            for (rv, &zv) in r.iter_mut().zip(z) {
                *rv = (zv - m).exp();
                sum = sum + *rv;
            }
            let label = t.to_usize().unwrap_or(usize::MAX);
            for (kk, rv) in r.iter_mut().enumerate() {
                *rv = *rv / sum - if kk == label { T::one() } else { T::zero() };
            }
            if want_loss {
                m + sum.ln() - z.get(label).copied().unwrap_or(T::nan())
            } else {
                T::zero()
            }
        }
    }
}

/// `ℓ''(z)·u` into `m`, for one row.
pub(crate) fn row_curvature<T: Real>(kind: LossKind, z: &[T], u: &[T], m: &mut [T]) {
    match kind {
        LossKind::Squared => m[0] = u[0],
        LossKind::Logistic => {
            let s = sigmoid(z[0]);
            m[0] = s * (T::one() - s) * u[0];
        }
        LossKind::Softmax => {
            // P = softmax(z) (e^{z−max} once per entry, kept in m), then M = P∘(U − ⟨P, U⟩1).
            let mx = z.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let mut sum = T::zero();
            for (mv, &zv) in m.iter_mut().zip(z) {
                *mv = (zv - mx).exp();
                sum = sum + *mv;
            }
            m.iter_mut().for_each(|mv| *mv = *mv / sum);
            let pu = m.iter().zip(u).fold(T::zero(), |a, (&p, &uv)| a + p * uv);
            for (mv, &uv) in m.iter_mut().zip(u) {
                *mv = *mv * (uv - pu);
            }
        }
    }
}
