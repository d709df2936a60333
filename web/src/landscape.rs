//! Panel 1, the landscape: Φ over the λ-plane of a two-feature ridge problem (one stacked solve
//! on the GPU, [`Landscape::outer_values`]), the exact hypergradient and each estimator's at the
//! selected point as arrows (several stochastic draws), the inner solver's path, and an animated
//! outer descent. `__bilevel.landscape` holds `{status, axis, values, lambda, hyper,
//! exact_hypergradient, exact_loss, estimates: {alg: [[h0, h1], …]}, inner_path, descent}`.

use std::rc::Rc;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::gpu::GpuBackend;
use bilevel_core::landscape::{DescentPoint, Landscape, LandscapeConfig};
use bilevel_core::problems::counted::OracleCounts;
use js_sys::Array;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, MouseEvent};

use crate::chart::{prepare, AXIS, FONT, PALETTE, TEXT};
use crate::panel::{Button, PanelBase};
use crate::{js_err, listen, next_command, next_frame, now_s, queued, send, set_prop, to_js, try_command, OnFirstShow, Shared};

/// The estimators drawn as arrows, in the table's order.
const ESTIMATORS: [AlgKind; 4] = [AlgKind::StocBiO, AlgKind::AidFp, AlgKind::AidCg, AlgKind::Reverse];
/// The starting point (the CLI's `landscape --lambda` default).
const START: [f64; 2] = [-1.0, 1.0];
/// CG iterations for the grid solve: the plane's condition number is about 26, so 60 reach
/// the 1e-7 relative residual where the solve stops moving (the iterations are still dispatched).
const GRID_CG: usize = 60;
/// The inner step size α (stable over the whole plane).
const ALPHA: f64 = 0.2;

enum Cmd {
    /// A slider moved: recompute the estimates.
    Update,
    Select([f64; 2]),
    Run,
    Pause,
    Reset,
}

/// Where the plot sits on the map canvas (CSS pixels).
#[derive(Clone, Copy)]
struct Frame {
    x0: f64,
    y0: f64,
    size: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn of(canvas: &HtmlCanvasElement, lo: f64, hi: f64) -> Frame {
        let (w, h) = (f64::from(canvas.client_width().max(200)), f64::from(canvas.client_height().max(150)));
        let size = (w - 70.0).min(h - 60.0).max(50.0);
        Frame { x0: 52.0, y0: 26.0, size, lo, hi }
    }
    fn px(&self, l0: f64) -> f64 {
        self.x0 + self.size * (l0 - self.lo) / (self.hi - self.lo)
    }
    fn py(&self, l1: f64) -> f64 {
        self.y0 + self.size * (1.0 - (l1 - self.lo) / (self.hi - self.lo))
    }
    /// The λ under a click, if it is inside the plot.
    fn lambda_at(&self, x: f64, y: f64) -> Option<[f64; 2]> {
        let u = (x - self.x0) / self.size;
        let v = 1.0 - (y - self.y0) / self.size;
        ((0.0..=1.0).contains(&u) && (0.0..=1.0).contains(&v))
            .then_some([self.lo + u * (self.hi - self.lo), self.lo + v * (self.hi - self.lo)])
    }
}

/// Everything drawn.
struct View {
    landscape: Landscape,
    values: Vec<f64>,
    lambda: [f64; 2],
    exact: Vec<f64>,
    exact_loss: f64,
    estimates: Vec<(AlgKind, Vec<Vec<f64>>, OracleCounts)>,
    path: Vec<[f64; 2]>,
    inner_solution: Vec<f64>,
    trail: Vec<DescentPoint>,
}

struct Ui {
    base: PanelBase,
    map: HtmlCanvasElement,
    inner: HtmlCanvasElement,
}

/// Sets the panel up; returns what showing it first does (compute the map).
pub(crate) fn start(gpu: &'static GpuBackend) -> Result<OnFirstShow, String> {
    let base = PanelBase::new("ls", "landscape")?;
    let ui = Rc::new(Ui { map: base.canvas("map")?, inner: base.canvas("inner")?, base });
    let control: Shared<Cmd> = Shared::default();
    for id in ["T", "Q", "eta", "batch", "draws"] {
        let (ui2, control) = (ui.clone(), control.clone());
        listen(&ui.base.el(id)?, "input", move |_| {
            let v = ui2.base.value(id).unwrap_or_default();
            ui2.base.set_cell(&format!("{id}-val"), &v);
            if !queued(&control, |c| matches!(c, Cmd::Update)) {
                send(&control, Cmd::Update);
            }
        });
    }
    {
        let (map, control) = (ui.map.clone(), control.clone());
        let config = LandscapeConfig::default();
        listen(&ui.map, "click", move |ev| {
            if let Some(ev) = ev.dyn_ref::<MouseEvent>() {
                if let Some(l) = Frame::of(&map, config.lo, config.hi).lambda_at(f64::from(ev.offset_x()), f64::from(ev.offset_y())) {
                    send(&control, Cmd::Select(l));
                }
            }
        });
    }
    ui.base.wire_buttons(&control, |b| match b {
        Button::Run => Cmd::Run,
        Button::Pause => Cmd::Pause,
        Button::Reset => Cmd::Reset,
    });
    let mut started = false;
    // The map is the panel's content, not a run: computed on first show even with autorun=0.
    Ok(Box::new(move |_autorun| {
        if started {
            return;
        }
        started = true;
        let (ui, control) = (ui.clone(), control.clone());
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = drive(gpu, &ui, &control).await {
                ui.base.fail(&e, true);
            }
        });
    }))
}

/// The sliders' settings; `β` for the descent.
fn read_hyper(base: &PanelBase) -> Result<(Hyper, u64, AlgKind, usize), String> {
    let batch = base.whole("batch", "batch size", 1, 1000)?;
    let hyper = Hyper {
        t: base.whole("T", "T", 1, 1000)?,
        q: base.whole("Q", "Q / K", 1, 1000)?,
        eta: base.number("eta", "η", 1e-6, 10.0)?,
        alpha: ALPHA,
        beta: base.number("beta", "β", 1e-9, 1e6)?,
        batch_size: batch,
        val_batch_size: batch,
    };
    let draws = base.whole("draws", "draws", 1, 64)? as u64;
    let alg: AlgKind = base.value("alg")?.parse().map_err(|e: bilevel_core::Error| e.to_string())?;
    let steps = base.whole("steps", "outer steps", 1, 10_000)?;
    Ok((hyper, draws, alg, steps))
}

async fn drive(gpu: &'static GpuBackend, ui: &Ui, control: &Shared<Cmd>) -> Result<(), String> {
    let base = &ui.base;
    let landscape = Landscape::new(LandscapeConfig::default()).map_err(|e| e.to_string())?;
    let g = landscape.config.grid;
    base.set_status("computing", &format!("Computing Φ on a {g} × {g} grid…"));
    let t0 = now_s();
    let values = landscape.outer_values(gpu, &landscape.grid_points(), GRID_CG).await.map_err(|e| e.to_string())?;
    let grid_s = now_s() - t0;
    let axis: Vec<f64> = (0..g).map(|k| landscape.axis(k)).collect();
    set_prop(&base.state, "axis", &to_js(&axis));
    set_prop(&base.state, "values", &to_js(&values));
    set_prop(&base.state, "grid_ms", &(grid_s * 1000.0).into());
    let mut view = View {
        landscape,
        values,
        lambda: START,
        exact: vec![0.0; 2],
        exact_loss: f64::NAN,
        estimates: Vec::new(),
        path: Vec::new(),
        inner_solution: vec![0.0; 2],
        trail: Vec::new(),
    };
    draw(ui, &view)?;
    crate::record_first_result("landscape");

    let mut pending: Option<Cmd> = None;
    loop {
        base.clear_error();
        match read_hyper(base) {
            Ok((hyper, draws, _, _)) => {
                base.set_status("computing", "Estimating…");
                if let Err(e) = estimate(gpu, &mut view, &hyper, draws).await {
                    base.fail(&e, false);
                } else {
                    publish(base, &view, &hyper);
                    base.set_status("ready", "Ready: click the map, move a slider, or run the descent");
                }
            }
            Err(e) => base.fail(&e, false),
        }
        draw(ui, &view)?;
        let cmd = match pending.take() {
            Some(c) => c,
            None => next_command(control).await,
        };
        match cmd {
            Cmd::Update | Cmd::Pause => {}
            Cmd::Select(l) => {
                view.lambda = l;
                view.trail.clear();
            }
            Cmd::Reset => {
                for (id, v) in [("T", "20"), ("Q", "20"), ("eta", "0.2"), ("batch", "8"), ("draws", "8")] {
                    base.set_value(id, v);
                    base.set_cell(&format!("{id}-val"), v);
                }
                view.lambda = START;
                view.trail.clear();
                set_prop(&base.state, "descent", &Array::new());
            }
            Cmd::Run => pending = descend(gpu, ui, control, &mut view).await?,
        }
    }
}

/// The estimates, the inner path and the closed form at `view.lambda`.
async fn estimate(gpu: &GpuBackend, view: &mut View, hyper: &Hyper, draws: u64) -> Result<(), String> {
    let l = &view.landscape;
    let lambda = view.lambda;
    let (exact, exact_loss) = l.exact(&lambda);
    view.exact = exact;
    view.exact_loss = exact_loss;
    view.inner_solution = l.inner_solution(&lambda);
    view.estimates.clear();
    for alg in ESTIMATORS {
        let n = if alg.is_stochastic() { draws } else { 1 };
        let mut hs = Vec::new();
        let mut counts = OracleCounts::default();
        for seed in 0..n {
            let (h, c) = l.estimate_counted(gpu, alg, hyper, &lambda, seed).await.map_err(|e| e.to_string())?;
            hs.push(h);
            counts = c;
        }
        view.estimates.push((alg, hs, counts));
    }
    view.path = l.inner_path(gpu, hyper, &lambda, 0).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn publish(base: &PanelBase, view: &View, hyper: &Hyper) {
    let s = &base.state;
    set_prop(s, "lambda", &to_js(&view.lambda));
    set_prop(s, "hyper", &to_js(hyper));
    set_prop(s, "exact_hypergradient", &to_js(&view.exact));
    set_prop(s, "exact_loss", &view.exact_loss.into());
    let est: serde_json::Map<String, serde_json::Value> =
        view.estimates.iter().map(|(a, h, _)| (a.name().to_string(), serde_json::json!(h))).collect();
    set_prop(s, "estimates", &to_js(&est));
    set_prop(s, "inner_path", &to_js(&view.path));
    set_prop(s, "inner_solution", &to_js(&view.inner_solution));
}

/// The animated outer descent from the selected point; returns a command that ended it early.
async fn descend(gpu: &'static GpuBackend, ui: &Ui, control: &Shared<Cmd>, view: &mut View) -> Result<Option<Cmd>, String> {
    let base = &ui.base;
    let (hyper, _, alg, steps) = match read_hyper(base) {
        Ok(v) => v,
        Err(e) => {
            base.fail(&e, false);
            return Ok(None);
        }
    };
    let mut run = match view.landscape.descent(gpu, alg, &hyper, &view.lambda, 0) {
        Ok(r) => r,
        Err(e) => {
            base.fail(&e.to_string(), false);
            return Ok(None);
        }
    };
    view.trail.clear();
    let records = Array::new();
    set_prop(&base.state, "descent", &records);
    set_prop(&base.state, "descent_config", &to_js(&serde_json::json!({ "alg": alg.name(), "hyper": hyper, "start": view.lambda })));
    let mut paused = false;
    while view.trail.len() < steps {
        while let Some(cmd) = try_command(control) {
            match cmd {
                Cmd::Pause => paused = !paused,
                Cmd::Update => {}
                other => return Ok(Some(other)),
            }
        }
        if paused {
            base.set_status("paused", &format!("Paused at step {}", view.trail.len()));
            match next_command(control).await {
                Cmd::Pause => paused = false,
                Cmd::Update => {}
                other => return Ok(Some(other)),
            }
            continue;
        }
        base.set_status("running", &format!("Descent with {alg}: step {} / {steps}", view.trail.len() + 1));
        match run.step().await {
            Ok(p) => {
                records.push(&to_js(&p));
                view.trail.push(p);
            }
            Err(e) => {
                base.fail(&format!("{e}: try a smaller β"), false);
                return Ok(None);
            }
        }
        draw(ui, view)?;
        next_frame().await;
    }
    // The estimates at where the descent ended.
    let end = gpu_vector_pair(gpu, &run.outer.x).await?;
    view.lambda = end;
    set_prop(&base.state, "descent_done", &true.into());
    Ok(None)
}

async fn gpu_vector_pair(gpu: &GpuBackend, v: &<GpuBackend as bilevel_core::Backend>::Vector) -> Result<[f64; 2], String> {
    use bilevel_core::Backend;
    let x = gpu.read_vector(v).await.map_err(|e| e.to_string())?;
    Ok([x[0], x[1]])
}

/// Viridis-like colour ramp for t ∈ [0, 1].
fn ramp(t: f64) -> (u8, u8, u8) {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw(ui: &Ui, view: &View) -> Result<(), String> {
    draw_map(&ui.map, view).map_err(js_err)?;
    draw_inner(&ui.inner, view).map_err(js_err)?;
    table(&ui.base, view);
    Ok(())
}

fn draw_map(canvas: &HtmlCanvasElement, view: &View) -> Result<(), JsValue> {
    let (ctx, _, _) = prepare(canvas)?;
    let c = &view.landscape.config;
    let f = Frame::of(canvas, c.lo, c.hi);
    let g = c.grid;
    // Colour by log Φ so the valley floor shows detail.
    let logs: Vec<f64> = view.values.iter().map(|v| v.ln()).collect();
    let (lo, hi) = logs.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-12);
    let cell = f.size / (g - 1) as f64;
    for i in 0..g {
        for j in 0..g {
            let (r, gr, b) = ramp((logs[i * g + j] - lo) / span);
            ctx.set_fill_style_str(&format!("rgb({r},{gr},{b})"));
            let (x, y) = (f.px(view.landscape.axis(j)) - cell / 2.0, f.py(view.landscape.axis(i)) - cell / 2.0);
            ctx.fill_rect(x.max(f.x0), y.max(f.y0), cell + 0.6, cell + 0.6);
        }
    }
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(f.x0 + f.size, 0.0, 40.0, f.y0 + f.size + 40.0);
    // Contours (marching squares, linear interpolation on the grid).
    ctx.set_stroke_style_str("rgba(255,255,255,0.55)");
    ctx.set_line_width(1.0);
    for k in 1..10 {
        contour(&ctx, view, &f, &logs, lo + span * k as f64 / 10.0);
    }
    ctx.set_stroke_style_str(AXIS);
    ctx.stroke_rect(f.x0, f.y0, f.size, f.size);
    // Axes.
    ctx.set_fill_style_str(TEXT);
    ctx.set_font(FONT);
    ctx.set_text_align("center");
    ctx.set_text_baseline("top");
    for k in (c.lo.ceil() as i64)..=(c.hi.floor() as i64) {
        let v = k as f64;
        ctx.fill_text(&format!("{k}"), f.px(v), f.y0 + f.size + 4.0)?;
    }
    ctx.fill_text("λ₀ (strong feature's log-penalty)", f.x0 + f.size / 2.0, f.y0 + f.size + 20.0)?;
    ctx.set_text_align("right");
    ctx.set_text_baseline("middle");
    for k in (c.lo.ceil() as i64)..=(c.hi.floor() as i64) {
        ctx.fill_text(&format!("{k}"), f.x0 - 6.0, f.py(k as f64))?;
    }
    ctx.save();
    ctx.translate(14.0, f.y0 + f.size / 2.0)?;
    ctx.rotate(-std::f64::consts::FRAC_PI_2)?;
    ctx.set_text_align("center");
    ctx.fill_text("λ₁ (weak feature)", 0.0, 0.0)?;
    ctx.restore();
    ctx.set_text_align("left");
    ctx.set_text_baseline("alphabetic");
    ctx.set_font(&format!("600 {FONT}"));
    ctx.fill_text(&format!("Φ(λ), validation loss: {:.3} … {:.3} (log colour scale)", lo.exp(), hi.exp()), f.x0, 16.0)?;
    ctx.set_font(FONT);

    // The descent trail.
    if !view.trail.is_empty() {
        ctx.set_stroke_style_str("#ffffff");
        ctx.set_line_width(2.0);
        ctx.begin_path();
        for (k, p) in view.trail.iter().enumerate() {
            let (x, y) = (f.px(p.lambda[0]), f.py(p.lambda[1]));
            if k == 0 {
                ctx.move_to(x, y);
            } else {
                ctx.line_to(x, y);
            }
        }
        ctx.stroke();
        ctx.set_fill_style_str("#ffffff");
        for p in &view.trail {
            ctx.begin_path();
            ctx.arc(f.px(p.lambda[0]), f.py(p.lambda[1]), 2.5, 0.0, std::f64::consts::TAU)?;
            ctx.fill();
        }
    }
    // Arrows: −ĥ (the descent direction), scaled so the exact one is a fixed length.
    let (x, y) = (f.px(view.lambda[0]), f.py(view.lambda[1]));
    // One scale for all arrows: the exact one's length, or the deterministic estimates' when
    // they are larger (near the optimum the exact one vanishes, biased estimates do not).
    let reference = view
        .estimates
        .iter()
        .filter(|(_, hs, _)| hs.len() == 1)
        .map(|(_, hs, _)| norm(&hs[0]))
        .fold(norm(&view.exact), f64::max)
        .max(1e-300);
    let unit = 0.2 * f.size / reference;
    ctx.save();
    ctx.begin_path();
    ctx.rect(f.x0, f.y0, f.size, f.size);
    ctx.clip();
    let arrow = |h: &[f64], colour: &str, width: f64| -> Result<(), JsValue> {
        let (mut dx, mut dy) = (-h[0] * unit, h[1] * unit);
        let len = (dx * dx + dy * dy).sqrt();
        let max = 0.45 * f.size;
        if len > max {
            dx *= max / len;
            dy *= max / len;
        }
        draw_arrow(&ctx, x, y, x + dx, y + dy, colour, width)
    };
    for (k, (_, hs, _)) in view.estimates.iter().enumerate() {
        let colour = PALETTE[k + 1];
        for h in hs {
            arrow(h, colour, if hs.len() > 1 { 1.2 } else { 2.5 })?;
        }
    }
    if view.exact_loss.is_finite() {
        arrow(&view.exact, "#000000", 3.0)?;
    }
    ctx.restore();
    ctx.set_fill_style_str("#ffffff");
    ctx.set_stroke_style_str("#000000");
    ctx.begin_path();
    ctx.arc(x, y, 5.0, 0.0, std::f64::consts::TAU)?;
    ctx.fill();
    ctx.stroke();
    Ok(())
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn draw_arrow(ctx: &CanvasRenderingContext2d, x0: f64, y0: f64, x1: f64, y1: f64, colour: &str, width: f64) -> Result<(), JsValue> {
    ctx.set_stroke_style_str(colour);
    ctx.set_fill_style_str(colour);
    ctx.set_line_width(width);
    ctx.begin_path();
    ctx.move_to(x0, y0);
    ctx.line_to(x1, y1);
    ctx.stroke();
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len = (dx * dx + dy * dy).sqrt();
    if len > 1.0 {
        let (ux, uy) = (dx / len, dy / len);
        let head = 5.0 + 2.0 * width;
        ctx.begin_path();
        ctx.move_to(x1, y1);
        ctx.line_to(x1 - head * ux + head * 0.5 * uy, y1 - head * uy - head * 0.5 * ux);
        ctx.line_to(x1 - head * ux - head * 0.5 * uy, y1 - head * uy + head * 0.5 * ux);
        ctx.close_path();
        ctx.fill();
    }
    Ok(())
}

/// One contour level of the grid `values` (marching squares).
fn contour(ctx: &CanvasRenderingContext2d, view: &View, f: &Frame, values: &[f64], level: f64) {
    let g = view.landscape.config.grid;
    let at = |i: usize, j: usize| values[i * g + j];
    let point = |i: usize, j: usize| (f.px(view.landscape.axis(j)), f.py(view.landscape.axis(i)));
    let lerp = |(x0, y0): (f64, f64), (x1, y1): (f64, f64), v0: f64, v1: f64| {
        let t = if v1 != v0 { (level - v0) / (v1 - v0) } else { 0.5 };
        (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    };
    ctx.begin_path();
    for i in 0..g - 1 {
        for j in 0..g - 1 {
            let corners = [(i, j), (i, j + 1), (i + 1, j + 1), (i + 1, j)];
            let v: Vec<f64> = corners.iter().map(|&(a, b)| at(a, b)).collect();
            let mut crossings = Vec::with_capacity(4);
            for e in 0..4 {
                let (a, b) = (e, (e + 1) % 4);
                if (v[a] < level) != (v[b] < level) {
                    crossings.push(lerp(point(corners[a].0, corners[a].1), point(corners[b].0, corners[b].1), v[a], v[b]));
                }
            }
            for pair in crossings.chunks_exact(2) {
                ctx.move_to(pair[0].0, pair[0].1);
                ctx.line_to(pair[1].0, pair[1].1);
            }
        }
    }
    ctx.stroke();
}

/// The inner problem's plane: the SGD path from w = 0 and w*(λ).
fn draw_inner(canvas: &HtmlCanvasElement, view: &View) -> Result<(), JsValue> {
    let (ctx, w, h) = prepare(canvas)?;
    ctx.set_fill_style_str(TEXT);
    ctx.set_font(&format!("600 {FONT}"));
    ctx.fill_text(&format!("Inner problem at λ: {} SGD steps from w = 0", view.path.len().saturating_sub(1)), 12.0, 16.0)?;
    ctx.set_font(FONT);
    if view.path.is_empty() {
        return Ok(());
    }
    let ws = &view.inner_solution;
    let pts: Vec<[f64; 2]> = view.path.iter().copied().chain([[ws[0], ws[1]]]).collect();
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &pts {
        xlo = xlo.min(p[0]);
        xhi = xhi.max(p[0]);
        ylo = ylo.min(p[1]);
        yhi = yhi.max(p[1]);
    }
    let pad = 0.1 * (xhi - xlo).max(yhi - ylo).max(1e-6);
    let (xlo, xhi, ylo, yhi) = (xlo - pad, xhi + pad, ylo - pad, yhi + pad);
    let (x0, y0, pw, ph) = (48.0, 30.0, w - 64.0, h - 70.0);
    let px = |v: f64| x0 + pw * (v - xlo) / (xhi - xlo);
    let py = |v: f64| y0 + ph * (1.0 - (v - ylo) / (yhi - ylo));
    ctx.set_stroke_style_str(AXIS);
    ctx.set_line_width(1.0);
    ctx.stroke_rect(x0, y0, pw, ph);
    ctx.set_text_align("center");
    ctx.fill_text("w₀", x0 + pw / 2.0, y0 + ph + 30.0)?;
    ctx.fill_text(&format!("{xlo:.2}"), x0 + 14.0, y0 + ph + 14.0)?;
    ctx.fill_text(&format!("{xhi:.2}"), x0 + pw - 14.0, y0 + ph + 14.0)?;
    ctx.set_text_align("right");
    ctx.fill_text("w₁", x0 - 8.0, y0 + ph / 2.0)?;
    ctx.fill_text(&format!("{ylo:.2}"), x0 - 4.0, y0 + ph - 4.0)?;
    ctx.fill_text(&format!("{yhi:.2}"), x0 - 4.0, y0 + 12.0)?;
    ctx.set_text_align("left");
    ctx.set_stroke_style_str(PALETTE[1]);
    ctx.set_line_width(1.5);
    ctx.begin_path();
    for (k, p) in view.path.iter().enumerate() {
        if k == 0 {
            ctx.move_to(px(p[0]), py(p[1]));
        } else {
            ctx.line_to(px(p[0]), py(p[1]));
        }
    }
    ctx.stroke();
    ctx.set_fill_style_str(PALETTE[1]);
    for p in &view.path {
        ctx.begin_path();
        ctx.arc(px(p[0]), py(p[1]), 2.5, 0.0, std::f64::consts::TAU)?;
        ctx.fill();
    }
    ctx.set_fill_style_str("#000000");
    ctx.begin_path();
    ctx.arc(px(ws[0]), py(ws[1]), 5.0, 0.0, std::f64::consts::TAU)?;
    ctx.fill();
    ctx.fill_text("w*(λ)", px(ws[0]) + 8.0, py(ws[1]) - 6.0)?;
    Ok(())
}

fn table(base: &PanelBase, view: &View) {
    base.set_cell("lambda", &format!("({:.2}, {:.2})", view.lambda[0], view.lambda[1]));
    let Ok(body) = base.el("table") else { return };
    let exact_norm = norm(&view.exact).max(1e-300);
    let mut html = format!(
        "<tr><td style=\"text-align:left\"><span class=\"swatch\" style=\"background:#000\"></span>exact (closed form)</td><td>{:.4}</td><td>{:.4}</td><td>0</td><td>–</td><td>–</td></tr>",
        -view.exact[0], -view.exact[1]
    );
    for (k, (alg, hs, counts)) in view.estimates.iter().enumerate() {
        let n = hs.len() as f64;
        let mean: Vec<f64> = (0..2).map(|j| hs.iter().map(|h| h[j]).sum::<f64>() / n).collect();
        let err = norm(&[mean[0] - view.exact[0], mean[1] - view.exact[1]]) / exact_norm;
        let spread = if hs.len() > 1 {
            let var = hs.iter().map(|h| (h[0] - mean[0]).powi(2) + (h[1] - mean[1]).powi(2)).sum::<f64>() / (n - 1.0);
            format!("{:.3}", var.sqrt() / exact_norm)
        } else {
            "– (deterministic)".into()
        };
        let calls = counts.calls();
        let label = if hs.len() > 1 { format!("{alg} (mean of {})", hs.len()) } else { alg.to_string() };
        html.push_str(&format!(
            "<tr><td style=\"text-align:left\"><span class=\"swatch\" style=\"background:{}\"></span>{label}</td><td>{:.4}</td><td>{:.4}</td><td>{err:.3}</td><td>{spread}</td><td>{calls} ({} rows)</td></tr>",
            PALETTE[k + 1], -mean[0], -mean[1], counts.samples
        ));
    }
    body.set_inner_html(&html);
}
