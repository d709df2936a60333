// The penalty term of the transposed data products, shared by dense.wgsl and sparse.wgsl (this
// file is appended to both). They declare `p` (with reg, coef, coef2, scale), `lam`, `v`, `out`.
// reg: 0 none, 1 coef*exp(lam_j)*v_jk, 2 coef*v_jk, 3/4 in place (see `finish`).

fn reg_term(j: u32, t: u32) -> f32 {
    if (p.reg == 1u) { return p.coef * exp(lam[j]) * v[t]; }
    if (p.reg == 2u) { return p.coef * v[t]; }
    return 0.0;
}

// The product's final value: with reg 3/4 the old out[t] decays in place,
// out = (coef2 + coef*exp(lam_j)) * out + scale * acc (4: no lam).
fn finish(j: u32, t: u32, acc: f32) -> f32 {
    if (p.reg == 3u) { return (p.coef2 + p.coef * exp(lam[j])) * out[t] + p.scale * acc; }
    if (p.reg == 4u) { return p.coef2 * out[t] + p.scale * acc; }
    return p.scale * acc + reg_term(j, t);
}
