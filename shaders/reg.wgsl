// The penalty term of the transposed data products, shared by dense.wgsl and sparse.wgsl (this
// file is appended to both). They declare `p` (with reg, coef, coef2, scale), `lam`, `v`, `out`.
// reg: none, coef*exp(lam_j)*v_jk, coef*v_jk, or a decay in place (see `finish`). The Rust side's
// values for these are checked against the constants when the pipeline is created.
const REG_NONE: u32 = 0u;
const REG_EXP_LAMBDA: u32 = 1u;
const REG_SCALED: u32 = 2u;
const REG_DECAY: u32 = 3u;
const REG_DECAY_CONST: u32 = 4u;

fn reg_term(j: u32, t: u32) -> f32 {
    if (p.reg == REG_EXP_LAMBDA) { return p.coef * exp(lam[j]) * v[t]; }
    if (p.reg == REG_SCALED) { return p.coef * v[t]; }
    return 0.0;
}

// The product's final value: with REG_DECAY(_CONST) the old out[t] decays in place,
// out = (coef2 + coef*exp(lam_j)) * out + scale * acc (REG_DECAY_CONST: no lam).
fn finish(j: u32, t: u32, acc: f32) -> f32 {
    if (p.reg == REG_DECAY) { return (p.coef2 + p.coef * exp(lam[j])) * out[t] + p.scale * acc; }
    if (p.reg == REG_DECAY_CONST) { return p.coef2 * out[t] + p.scale * acc; }
    return p.scale * acc + reg_term(j, t);
}
