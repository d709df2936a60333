//! The live chart: two panels on one 2D canvas, outer loss (linear) and the hypergradient's
//! relative error (log scale), both against the outer iteration.

use bilevel_core::toy::ToyRecord;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

pub(crate) const BLUE: &str = "#1f6fd1";
pub(crate) const ORANGE: &str = "#e07b00";
pub(crate) const GREEN: &str = "#1a9a55";
pub(crate) const AXIS: &str = "#8a94a3";
const GRID: &str = "#e6e9ee";
pub(crate) const TEXT: &str = "#333a44";
pub(crate) const FONT: &str = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

/// A series to draw: colour, dashed or not, and its points (non-finite values are skipped).
pub(crate) struct Series<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A distinct colour per series (the first three are the toy chart's).
pub(crate) const PALETTE: [&str; 8] = [BLUE, ORANGE, GREEN, "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d35400"];

/// The x axis of a chart panel: its range `[0, max]`, its label, whether it counts whole things.
pub(crate) struct XAxis<'a> {
    pub max: f64,
    pub label: &'a str,
    pub whole: bool,
}

/// The canvas's 2D context with its backing store sized for the device pixel ratio, the
/// transform set to CSS pixels and the background cleared; returns it with the CSS size.
pub(crate) fn prepare(canvas: &HtmlCanvasElement) -> Result<(CanvasRenderingContext2d, f64, f64), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let dpr = window.device_pixel_ratio().max(1.0);
    let (w, h) = (f64::from(canvas.client_width().max(200)), f64::from(canvas.client_height().max(150)));
    let (bw, bh) = ((w * dpr).round() as u32, (h * dpr).round() as u32);
    if canvas.width() != bw || canvas.height() != bh {
        canvas.set_width(bw);
        canvas.set_height(bh);
    }
    let ctx: CanvasRenderingContext2d =
        canvas.get_context("2d")?.ok_or("no 2D canvas context")?.dyn_into().map_err(|_| "the 2D canvas context has an unexpected type")?;
    ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0)?;
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(0.0, 0.0, w, h);
    ctx.set_font(FONT);
    Ok((ctx, w, h))
}

/// Where a panel sits in CSS pixels and what range it shows.
struct Panel {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    xmax: f64,
    ylo: f64,
    yhi: f64,
}

impl Panel {
    /// Inset so the first and last points are not cut by the frame.
    const INSET: f64 = 6.0;

    fn px(&self, x: f64) -> f64 {
        self.x0 + Self::INSET + (self.w - 2.0 * Self::INSET) * (x / self.xmax)
    }
    fn py(&self, y: f64) -> f64 {
        self.y0 + self.h * (1.0 - (y - self.ylo) / (self.yhi - self.ylo))
    }
}

/// "Nice" tick positions covering [lo, hi], about `n` of them, and the decimals to print.
fn ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, usize) {
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw * 0.75).unwrap_or(10.0 * mag);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), decimals)
}

/// Draws the chart for `records` of a run of `epochs` outer iterations.
pub fn draw(canvas: &HtmlCanvasElement, records: &[ToyRecord], epochs: usize) -> Result<(), JsValue> {
    let (ctx, w, h) = prepare(canvas)?;

    let xmax = epochs.max(records.len()).max(1) as f64;
    let at = |f: fn(&ToyRecord) -> f64| -> Vec<(f64, f64)> { records.iter().map(|r| (r.iter as f64, f(r))).collect() };
    // Side by side when there is room, stacked otherwise.
    let side = w >= 640.0;
    let (pw, ph) = if side { (w / 2.0, h) } else { (w, h / 2.0) };
    let second = if side { (pw, 0.0) } else { (0.0, ph) };

    let loss = [
        Series { label: "f(w) on the validation set", colour: BLUE, dashed: false, points: at(|r| r.outer_loss) },
        Series { label: "exact Φ(λ)", colour: ORANGE, dashed: true, points: at(|r| r.exact_outer_loss) },
    ];
    let x = XAxis { max: xmax, label: "outer iteration", whole: true };
    panel(&ctx, (0.0, 0.0, pw, ph), "Outer loss", &x, &loss, false)?;
    let err = [Series { label: "‖ĥ − ∇Φ‖ / ‖∇Φ‖", colour: GREEN, dashed: false, points: at(|r| r.hypergrad_rel_err) }];
    panel(&ctx, (second.0, second.1, pw, ph), "Hypergradient relative error (log scale)", &x, &err, true)
}

/// One chart: title, legend, axes with ticks, the series clipped to the plot area.
pub(crate) fn panel(
    ctx: &CanvasRenderingContext2d,
    (left, top, width, height): (f64, f64, f64, f64),
    title: &str,
    x_axis: &XAxis<'_>,
    series: &[Series<'_>],
    log: bool,
) -> Result<(), JsValue> {
    let xmax = if x_axis.max > 0.0 && x_axis.max.is_finite() { x_axis.max } else { 1.0 };
    let tf = |v: f64| if log { v.log10() } else { v };
    let ys: Vec<f64> =
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite() && (!log || *v > 0.0)).map(tf).collect();
    let (mut ylo, mut yhi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !ylo.is_finite() {
        (ylo, yhi) = if log { (-4.0, 0.0) } else { (0.0, 1.0) };
    }
    if log {
        ylo = ylo.floor();
        yhi = yhi.ceil().max(ylo + 1.0);
    } else {
        let pad = ((yhi - ylo) * 0.08).max(yhi.abs() * 1e-6).max(1e-12);
        ylo -= pad;
        yhi += pad;
    }
    let p =
        Panel { x0: left + 62.0, y0: top + 46.0, w: (width - 62.0 - 16.0).max(10.0), h: (height - 46.0 - 36.0).max(10.0), xmax, ylo, yhi };

    ctx.set_fill_style_str(TEXT);
    ctx.set_text_align("left");
    ctx.set_text_baseline("alphabetic");
    ctx.set_font(&format!("600 {FONT}"));
    ctx.fill_text(title, p.x0, top + 16.0)?;
    ctx.set_font(FONT);
    // Legend under the title.
    let mut lx = p.x0;
    for s in series {
        line_style(ctx, s.colour, s.dashed)?;
        ctx.begin_path();
        ctx.move_to(lx, top + 32.0);
        ctx.line_to(lx + 18.0, top + 32.0);
        ctx.stroke();
        ctx.set_fill_style_str(TEXT);
        ctx.fill_text(s.label, lx + 24.0, top + 36.0)?;
        lx += 24.0 + ctx.measure_text(s.label)?.width() + 18.0;
    }

    // Grid and tick labels.
    line_style(ctx, GRID, false)?;
    ctx.set_fill_style_str(TEXT);
    ctx.set_text_align("right");
    ctx.set_text_baseline("middle");
    // Log ticks are (log10 value, label): every decade, plus 2 and 5 when few decades show.
    let yt: Vec<(f64, String)> = if log {
        let span = (yhi - ylo) as usize;
        let every = span.div_ceil(6).max(1);
        let mantissas: &[f64] = if span <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        (0..=span)
            .step_by(every)
            .flat_map(|k| {
                let e = ylo as i64 + k as i64;
                mantissas.iter().map(move |&m| (m.log10() + e as f64, format!("{m}e{e}")))
            })
            .filter(|(v, _)| *v <= yhi + 1e-9)
            .collect()
    } else {
        let (t, dec) = ticks(ylo, yhi, 5);
        t.into_iter().map(|v| (v, format!("{v:.dec$}"))).collect()
    };
    for (v, label) in &yt {
        let y = p.py(*v);
        ctx.begin_path();
        ctx.move_to(p.x0, y);
        ctx.line_to(p.x0 + p.w, y);
        ctx.stroke();
        ctx.fill_text(label, p.x0 - 6.0, y)?;
    }
    ctx.set_text_align("center");
    ctx.set_text_baseline("top");
    // Whole numbers only on a counting axis.
    let (xt, xdec) = if x_axis.whole { (ticks(0.0, xmax, (xmax as usize).clamp(1, 6)).0, 0) } else { ticks(0.0, xmax, 5) };
    for &v in &xt {
        let x = p.px(v);
        ctx.begin_path();
        ctx.move_to(x, p.y0);
        ctx.line_to(x, p.y0 + p.h);
        ctx.stroke();
        ctx.fill_text(&format!("{v:.xdec$}"), x, p.y0 + p.h + 5.0)?;
    }
    ctx.fill_text(x_axis.label, p.x0 + p.w / 2.0, p.y0 + p.h + 20.0)?;
    line_style(ctx, AXIS, false)?;
    ctx.stroke_rect(p.x0, p.y0, p.w, p.h);

    // The series, clipped to the plot area.
    ctx.save();
    ctx.begin_path();
    ctx.rect(p.x0, p.y0, p.w, p.h);
    ctx.clip();
    for s in series {
        line_style(ctx, s.colour, s.dashed)?;
        ctx.set_line_width(2.0);
        ctx.begin_path();
        let mut pen_down = false;
        let mut shown = Vec::new();
        // Long runs: about 2,000 points per line are plenty (the last one always shows).
        let stride = (s.points.len() / 2000).max(1);
        let last = s.points.len().saturating_sub(1);
        let kept = s.points.iter().enumerate();
        for (_, &(x, y)) in kept.filter(|(i, _)| i % stride == 0 || *i == last) {
            if !(y.is_finite() && (!log || y > 0.0)) {
                pen_down = false;
                continue;
            }
            let (cx, cy) = (p.px(x), p.py(tf(y)));
            if pen_down {
                ctx.line_to(cx, cy);
            } else {
                ctx.move_to(cx, cy);
            }
            pen_down = true;
            shown.push((cx, cy));
        }
        ctx.stroke();
        // Dots while there are few points, so the first iterations are visible too.
        if shown.len() <= 60 && (!s.dashed || shown.len() == 1) {
            ctx.set_fill_style_str(s.colour);
            for (cx, cy) in shown {
                ctx.begin_path();
                ctx.arc(cx, cy, 2.5, 0.0, std::f64::consts::TAU)?;
                ctx.fill();
            }
        }
    }
    ctx.restore();
    Ok(())
}

fn line_style(ctx: &CanvasRenderingContext2d, colour: &str, dashed: bool) -> Result<(), JsValue> {
    ctx.set_stroke_style_str(colour);
    ctx.set_line_width(1.0);
    let dash = js_sys::Array::new();
    if dashed {
        dash.push(&JsValue::from(6.0));
        dash.push(&JsValue::from(4.0));
    }
    ctx.set_line_dash(&dash)
}

#[cfg(test)]
mod tests {
    use super::ticks;

    #[test]
    fn ticks_are_round() {
        let (t, d) = ticks(0.0, 30.0, 6);
        assert_eq!(t, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]);
        assert_eq!(d, 0);
        let (t, d) = ticks(0.112, 0.168, 5);
        assert_eq!(d, 2);
        assert!(t.len() >= 3 && t[0] >= 0.112 && *t.last().unwrap() <= 0.168);
    }
}
