//! `bilevel plot`: test loss and accuracy against running time, one line per results file, like
//! the reference figures; `--reference` overlays the reference's published 20 Newsgroups curves.
//! Meta-learning runs (`bilevel meta`) draw their training query loss and meta-test accuracy,
//! optionally smoothed (`--smooth`). One hyper-cleaning results file (records with precision and
//! recall) draws its own figure instead ([`hyperclean`]): accuracy against the baselines, the
//! corrupted-label detector, and the most down-weighted images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use plotters::prelude::*;
use serde_json::Value;

mod hyperclean;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
pub struct PlotArgs {
    /// Results files (JSON lines from hyperclean, l2reg, ijcnn1, toy or meta).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// The figure: .png or .svg.
    #[arg(short = 'o', long)]
    out: PathBuf,
    /// Overlay the reference code's published 20 Newsgroups curves.
    #[arg(long)]
    reference: bool,
    /// Where the reference CSVs are (default: ../shared/reference, from the current folder or
    /// else from the repository).
    #[arg(long)]
    reference_dir: Option<PathBuf>,
    /// The x axis: running time or outer iteration.
    #[arg(long, default_value = "time", value_parser = ["time", "iter"])]
    x: String,
    /// Moving average over this many records (meta-learning accuracies are per meta-batch, noisy).
    #[arg(long, default_value_t = 1)]
    smooth: usize,
}

/// One curve: its label and (x, loss, accuracy) points.
struct Series {
    label: String,
    points: Vec<(f64, f64, Option<f64>)>,
    dashed: bool,
    /// A meta-learning run: the loss is the training tasks' query loss.
    meta: bool,
}

fn read_results(path: &Path, by_time: bool) -> Result<Series> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut points = Vec::new();
    let mut meta = false;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        if v.get("final").is_some() {
            if let (Some(alg), Some(ways), Some(shots)) = (v["alg"].as_str(), v["ways"].as_u64(), v["shots"].as_u64()) {
                label = format!("{alg} {ways}-way {shots}-shot ({})", v["backend"].as_str().unwrap_or("?"));
            }
            continue;
        }
        // Hyper-cleaning's extra lines (baselines, down-weighted images) are not records.
        if v.get("baselines").is_some() || v.get("downweighted").is_some() {
            continue;
        }
        if v.get("summary").is_some() {
            if let (Some(name), Some(alg)) = (v["name"].as_str(), v["alg"].as_str()) {
                label = format!("{name} {alg}");
            }
            continue;
        }
        let x = if by_time { v["time_s"].as_f64() } else { v["iter"].as_f64() };
        meta |= v.get("train_loss").is_some() && v.get("test_loss").is_none();
        let loss = v["test_loss"].as_f64().or(v["outer_loss"].as_f64()).or(v["train_loss"].as_f64());
        match (x, loss) {
            (Some(x), Some(loss)) => points.push((x, loss, v["test_acc"].as_f64())),
            _ => bail!("{}:{}: a record needs time_s/iter and test_loss (or outer_loss, train_loss)", path.display(), i + 1),
        }
    }
    if points.is_empty() {
        bail!("{}: no records", path.display());
    }
    Ok(Series { label, points, dashed: false, meta })
}

/// A trailing moving average over `window` points (loss and accuracy; x unchanged).
fn smooth(s: &mut Series, window: usize) {
    if window <= 1 {
        return;
    }
    let orig = s.points.clone();
    for (i, p) in s.points.iter_mut().enumerate() {
        let w = &orig[i.saturating_sub(window - 1)..=i];
        p.1 = w.iter().map(|q| q.1).sum::<f64>() / w.len() as f64;
        let accs: Vec<f64> = w.iter().filter_map(|q| q.2).collect();
        p.2 = (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64);
    }
}

/// The reference CSVs (`series,time_s,value`): loss and accuracy curves by series name.
fn read_reference(dir: &Path) -> Result<Vec<Series>> {
    let read = |name: &str| -> Result<BTreeMap<String, Vec<(f64, f64)>>> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the reference curves {}", path.display()))?;
        let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let parse = |s: &str| s.trim().parse::<f64>().with_context(|| format!("{}:{}: {s:?} is not a number", path.display(), i + 1));
            if f.len() != 3 {
                bail!("{}:{}: expected series,time_s,value", path.display(), i + 1);
            }
            // Points beyond 60 s are clip artefacts of the published plot.
            let (t, v) = (parse(f[1])?, parse(f[2])?);
            if t <= 60.0 {
                out.entry(f[0].to_string()).or_default().push((t, v));
            }
        }
        Ok(out)
    };
    let (loss, acc) = (read("20news_test_loss_alg.csv")?, read("20news_test_acc_alg.csv")?);
    Ok(loss
        .into_iter()
        .map(|(name, pts)| {
            let accs = acc.get(&name).cloned().unwrap_or_default();
            let points = pts.iter().enumerate().map(|(i, &(t, l))| (t, l, accs.get(i).map(|a| a.1))).collect();
            Series { label: format!("reference {name}"), points, dashed: true, meta: false }
        })
        .collect())
}

impl PlotArgs {
    /// A plot of `results` into `out` (for `reproduce`).
    pub fn new(results: Vec<PathBuf>, out: PathBuf, reference: bool) -> Self {
        PlotArgs { results, out, reference, reference_dir: None, x: "time".into(), smooth: 1 }
    }
}

pub fn run(args: PlotArgs) -> Result<()> {
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    if !matches!(ext.as_str(), "png" | "svg") {
        bail!("--out must end in .png or .svg, got {}", args.out.display());
    }
    if let ([path], false) = (args.results.as_slice(), args.reference) {
        if let Some(run) = hyperclean::Cleaning::read(path)? {
            register_font()?;
            let size = hyperclean::SIZE;
            match ext.as_str() {
                "svg" => hyperclean::draw(SVGBackend::new(&args.out, size).into_drawing_area(), &run),
                _ => hyperclean::draw(BitMapBackend::new(&args.out, size).into_drawing_area(), &run),
            }
            .with_context(|| format!("cannot draw {}", args.out.display()))?;
            println!("wrote {}", args.out.display());
            return Ok(());
        }
    }
    let by_time = args.x == "time";
    let mut series: Vec<Series> = args.results.iter().map(|p| read_results(p, by_time)).collect::<Result<_>>()?;
    series.iter_mut().for_each(|s| smooth(s, args.smooth));
    if args.reference {
        let default = PathBuf::from("../shared/reference");
        let dir = args.reference_dir.clone().unwrap_or_else(|| {
            let from_repo = crate::data::repo_root().map(|r| r.join("../shared/reference"));
            from_repo.filter(|d| !default.is_dir() && d.is_dir()).unwrap_or(default)
        });
        series.extend(read_reference(&dir)?);
    }
    register_font()?;
    match ext.as_str() {
        "svg" => draw(SVGBackend::new(&args.out, (1400, 560)).into_drawing_area(), &series, by_time),
        _ => draw(BitMapBackend::new(&args.out, (1400, 560)).into_drawing_area(), &series, by_time),
    }
    .with_context(|| format!("cannot draw {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Text needs a font file (its glyphs for PNG, its metrics for SVG layout): DejaVu Sans from Debian's fonts-dejavu-core (scripts/setup.sh).
fn register_font() -> Result<()> {
    let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes = std::fs::read(path).with_context(|| format!("PNG figures need the font {path} (apt-get install fonts-dejavu-core)"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow::anyhow!("{path} is not a usable font"))
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, series: &[Series], by_time: bool) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let panels = root.split_evenly((1, 2));
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0, f64::max).max(1e-9);
    let x_label = if by_time { "running time (s)" } else { "outer iteration" };
    let meta = series.iter().all(|s| s.meta);
    for (panel, accuracy) in panels.iter().zip([false, true]) {
        let values = |s: &Series| -> Vec<(f64, f64)> {
            s.points.iter().filter_map(|&(x, l, a)| if accuracy { a.map(|a| (x, a)) } else { Some((x, l)) }).collect()
        };
        let all: Vec<f64> = series.iter().flat_map(|s| values(s).into_iter().map(|p| p.1)).collect();
        if all.is_empty() {
            continue;
        }
        let (lo, hi) = (all.iter().cloned().fold(f64::INFINITY, f64::min), all.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        let pad = ((hi - lo) * 0.05).max(1e-9);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                match (accuracy, meta) {
                    (true, true) => "meta-test accuracy (query sets)",
                    (false, true) => "training tasks' query loss",
                    (true, false) => "test accuracy",
                    (false, false) => "test loss",
                },
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart.configure_mesh().x_desc(x_label).draw().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts = values(s);
            let style = ShapeStyle { color, filled: false, stroke_width: if s.dashed { 1 } else { 2 } };
            let drawn = if s.dashed {
                chart.draw_series(DashedLineSeries::new(pts, 6, 4, style)).map_err(|e| anyhow::anyhow!("{e:?}"))?
            } else {
                chart.draw_series(LineSeries::new(pts, style)).map_err(|e| anyhow::anyhow!("{e:?}"))?
            };
            drawn.label(s.label.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
