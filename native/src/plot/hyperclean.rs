//! The hyper-cleaning figure, from one results file of `bilevel hyperclean`: (a) test accuracy
//! against solver time, with the uniform-weight baseline and the clean-data bound as dashed
//! lines; (b) how well "weight σ(λ_i) < ½" finds the corrupted labels, by outer iteration; (c) the
//! lowest-weight training images with their given and true labels.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use serde_json::Value;

/// The figure's size in pixels.
pub const SIZE: (u32, u32) = (1860, 660);

/// One outer iteration's numbers the figure uses.
struct Point {
    iter: f64,
    time_s: f64,
    test_acc: f64,
    precision: f64,
    recall: f64,
}

/// One of the most down-weighted training samples (the `downweighted` line's entries).
#[derive(Deserialize)]
struct Image {
    weight: f64,
    given_label: usize,
    true_label: usize,
    side: usize,
    pixels: Vec<u8>,
}

/// A hyper-cleaning results file, read.
pub struct Cleaning {
    /// The algorithm and backend, from the summary line (absent while a run is going).
    alg: Option<String>,
    backend: Option<String>,
    /// (uniform weights, clean data) test accuracies.
    baselines: Option<(f64, f64)>,
    points: Vec<Point>,
    images: Vec<Image>,
}

impl Cleaning {
    /// The run in `path` if it is a hyper-cleaning one (its records carry precision and recall);
    /// `None` for other results, and for files that are not JSON lines (the general reader names
    /// the bad line).
    pub fn read(path: &Path) -> Result<Option<Cleaning>> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut run = Cleaning { alg: None, backend: None, baselines: None, points: Vec::new(), images: Vec::new() };
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(line) else { return Ok(None) };
            let at = || format!("{}:{}", path.display(), i + 1);
            if v.get("baselines").is_some() {
                match (v["uniform_test_acc"].as_f64(), v["clean_test_acc"].as_f64()) {
                    (Some(u), Some(c)) => run.baselines = Some((u, c)),
                    _ => bail!("{}: a baselines line needs uniform_test_acc and clean_test_acc", at()),
                }
            } else if let Some(images) = v.get("downweighted") {
                run.images = Vec::<Image>::deserialize(images).with_context(|| format!("{}: bad downweighted entries", at()))?;
                if let Some(bad) = run.images.iter().find(|im| im.pixels.len() != im.side * im.side) {
                    bail!("{}: an image of side {} needs {} pixels, has {}", at(), bad.side, bad.side * bad.side, bad.pixels.len());
                }
            } else if v.get("summary").is_some() {
                run.alg = v["alg"].as_str().map(str::to_string);
                run.backend = v["backend"].as_str().map(str::to_string);
            } else if v.get("precision").is_some() {
                let num = |k: &str| v[k].as_f64().with_context(|| format!("{}: a hyper-cleaning record needs a number {k}", at()));
                run.points.push(Point {
                    iter: num("iter")?,
                    time_s: num("time_s")?,
                    test_acc: num("test_acc")?,
                    precision: num("precision")?,
                    recall: num("recall")?,
                });
            }
        }
        Ok((!run.points.is_empty()).then_some(run))
    }
}

fn de<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

const BLUE_LINE: RGBColor = RGBColor(31, 90, 180);
const UNIFORM: RGBColor = RGBColor(200, 110, 0);
const CLEAN: RGBColor = RGBColor(20, 140, 60);
const WRONG: RGBColor = RGBColor(200, 25, 25);
const RIGHT: RGBColor = RGBColor(20, 120, 45);

pub fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, run: &Cleaning) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(de)?;
    let alg = run.alg.as_deref().unwrap_or("the bilevel solver");
    let title = format!(
        "MNIST hyper-cleaning: {alg}{} learns one weight σ(λ_i) per training image so that a model trained on the \
         weighted images fits clean validation data",
        run.backend.as_deref().map_or(String::new(), |b| format!(" on {b}"))
    );
    let (head, body) = root.split_vertically(64);
    head.draw(&Text::new(title, (20, 12), ("sans-serif", 22).into_font().color(&BLACK))).map_err(de)?;
    let subtitle = "Some training labels are corrupted; the validation labels are clean. A low weight means the solver \
                    judged the sample's label wrong.";
    head.draw(&Text::new(subtitle, (20, 40), ("sans-serif", 16).into_font().color(&RGBColor(70, 70, 70)))).map_err(de)?;
    let (a, rest) = body.split_horizontally(660);
    let (b, c) = rest.split_horizontally(620);
    accuracy(&a, run, alg)?;
    detector(&b, run)?;
    images(&c, &run.images)?;
    root.present().map_err(de)?;
    Ok(())
}

/// Panel (a): test accuracy against solver time, and the two baselines.
fn accuracy<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, run: &Cleaning, alg: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let pts: Vec<(f64, f64)> = run.points.iter().map(|p| (p.time_s, 100.0 * p.test_acc)).collect();
    // The axis spans the trained models and the baselines; the zero model (iteration 0, chance
    // level) would squash them into a line, so its segment enters from below.
    let trained = run.points.iter().filter(|p| p.iter > 0.0 || run.points.len() == 1);
    let mut values: Vec<f64> = trained.map(|p| 100.0 * p.test_acc).collect();
    if let Some((u, c)) = run.baselines {
        values.extend([100.0 * u, 100.0 * c]);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(0.5);
    // Room above the highest line for the legend, so it covers no data.
    let top = (hi + pad + (hi - lo + 2.0 * pad) * 0.3).min(100.0);
    let x_max = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-6);
    let mut chart = ChartBuilder::on(area)
        .caption("(a) test accuracy: learned weights against fixed ones", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max * 1.02, (lo - pad)..top)
        .map_err(de)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("solver time (s; evaluation excluded)")
        .y_desc("test accuracy (%)")
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(de)?;
    let line = |color: RGBColor, width: u32| ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: width };
    let last = run.points.last().map_or(0.0, |p| 100.0 * p.test_acc);
    chart
        .draw_series(LineSeries::new(pts, line(BLUE_LINE, 3)))
        .map_err(de)?
        .label(format!("{alg}, learned weights: {last:.2} % at the end"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], line(BLUE_LINE, 3)));
    if let Some((u, c)) = run.baselines {
        for (value, color, label) in [
            (c, CLEAN, format!("clean samples only, weight 1 (the bound): {:.2} %", 100.0 * c)),
            (u, UNIFORM, format!("every sample weighted equally (no cleaning): {:.2} %", 100.0 * u)),
        ] {
            let flat = vec![(0.0, 100.0 * value), (x_max * 1.02, 100.0 * value)];
            chart
                .draw_series(DashedLineSeries::new(flat, 10, 6, line(color, 2)))
                .map_err(de)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], line(color, 2)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(de)?;
    Ok(())
}

/// Panel (b): the detector "weight < ½" against the corruption mask, by outer iteration.
fn detector<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, run: &Cleaning) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let x_max = run.points.iter().map(|p| p.iter).fold(0.0, f64::max).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption("(b) finding the corrupted labels: weight σ(λ_i) < ½", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..100.0)
        .map_err(de)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("outer iteration (one update of all the weights)")
        .y_desc("% of samples")
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(de)?;
    let style = |color: RGBColor| ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 3 };
    let curve = |value: fn(&Point) -> f64| -> Vec<(f64, f64)> { run.points.iter().map(|p| (p.iter, 100.0 * value(p))).collect() };
    let series = [
        ("precision: of the samples weighted < ½, % corrupted", BLUE_LINE, curve(|p| p.precision)),
        ("recall: of the corrupted samples, % weighted < ½", WRONG, curve(|p| p.recall)),
    ];
    for (label, color, pts) in series {
        let end = pts.last().map_or(0.0, |p| p.1);
        chart
            .draw_series(LineSeries::new(pts, style(color)))
            .map_err(de)?
            .label(format!("{label} ({end:.1} % at the end)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style(color)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(de)?;
    Ok(())
}

/// Panel (c): the lowest-weight training images in a grid, ink dark on white, each captioned
/// with its given and true label (red where they differ: a corrupted label) and its weight.
fn images<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, images: &[Image]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let centre = |size: u32, color: RGBColor| ("sans-serif", size).into_font().color(&color).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw(&Text::new(format!("(c) the {} lowest-weight training images", images.len()), (w / 2, 14), centre(20, BLACK))).map_err(de)?;
    area.draw(&Text::new("σ(λ_i): each training sample's learned weight (0–1)", (w / 2, 40), centre(15, BLACK))).map_err(de)?;
    if images.is_empty() {
        area.draw(&Text::new("(no down-weighted images in this results file)", (w / 2, h / 2), centre(16, BLACK))).map_err(de)?;
        return Ok(());
    }
    let (top, bottom) = (66, 30);
    let cols = (images.len() as f64).sqrt().ceil() as i32;
    let rows = (images.len() as i32 + cols - 1) / cols;
    let (cell_w, cell_h) = ((w - 20) / cols, (h - top - bottom) / rows);
    let text_h = 38;
    for (k, image) in images.iter().enumerate() {
        let (col, row) = (k as i32 % cols, k as i32 / cols);
        let side = image.side.max(1) as i32;
        let scale = ((cell_w - 12).min(cell_h - text_h - 6) / side).max(1);
        let (x0, y0) = (10 + col * cell_w + (cell_w - side * scale) / 2, top + row * cell_h);
        let wrong = image.given_label != image.true_label;
        let color = if wrong { WRONG } else { RIGHT };
        for (p, &value) in image.pixels.iter().enumerate() {
            let (px, py) = (x0 + (p as i32 % side) * scale, y0 + (p as i32 / side) * scale);
            let grey = 255 - value;
            if grey < 255 {
                area.draw(&Rectangle::new([(px, py), (px + scale, py + scale)], RGBColor(grey, grey, grey).filled())).map_err(de)?;
            }
        }
        let frame = ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 2 };
        area.draw(&Rectangle::new([(x0 - 2, y0 - 2), (x0 + side * scale + 1, y0 + side * scale + 1)], frame)).map_err(de)?;
        let cx = 10 + col * cell_w + cell_w / 2;
        let label = format!("given {} · true {}", image.given_label, image.true_label);
        area.draw(&Text::new(label, (cx, y0 + side * scale + 4), centre(15, color))).map_err(de)?;
        area.draw(&Text::new(format!("σ = {:.3}", image.weight), (cx, y0 + side * scale + 21), centre(13, BLACK))).map_err(de)?;
    }
    let legend = "red: the given label is wrong (corrupted) · green: it is right";
    area.draw(&Text::new(legend, (w / 2, h - bottom + 6), centre(15, BLACK))).map_err(de)?;
    Ok(())
}
