//! Panel 2, hyper-cleaning live: the MNIST subset packaged with the page (2,000 training, 500
//! validation, 1,000 test images, `mnist-subset.bin`), a fraction of the training labels
//! corrupted, one weight σ(λ_i) per training image learnt by the chosen algorithm
//! ([`bilevel_core::experiment::Run`], as the CLI's `hyperclean`). `__bilevel.clean` holds
//! `{status, error, config, records: [Record], weights: [first images' σ(λ)]}`.

use std::cell::RefCell;
use std::rc::Rc;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::data::idx::MnistSubset;
use bilevel_core::data::Labeled;
use bilevel_core::experiment::{hyperclean_paper, Record, Run};
use bilevel_core::gpu::GpuBackend;
use bilevel_core::outer::OuterOpt;
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::Clamped;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlCanvasElement, ImageData, Response};

use crate::chart::{panel, prepare, Series, XAxis, PALETTE};
use crate::panel::{Button, PanelBase};
use crate::{js_err, listen, next_command, next_frame, now_s, send, set_prop, to_js, try_command, OnFirstShow, Shared};

/// The asset trunk copies next to the page.
const ASSET: &str = "mnist-subset.bin";
/// ρ in ρ‖W‖² (the paper's).
const RHO: f64 = 0.001;
/// Training images shown: a grid of COLS × ROWS.
const COLS: usize = 16;
const ROWS: usize = 10;

enum Cmd {
    Run,
    Pause,
    Reset,
}

/// The run's settings (the form).
#[derive(Clone, Debug, serde::Serialize)]
struct Config {
    alg: AlgKind,
    noise_rate: f64,
    seed: u64,
    epochs: usize,
    hyper: Hyper,
}

struct Ui {
    base: PanelBase,
    images: HtmlCanvasElement,
    chart: HtmlCanvasElement,
}

/// The subset's normalised splits and raw pixels (fetched once).
struct Data {
    subset: MnistSubset,
    splits: (Labeled, Labeled, Labeled),
}

pub(crate) fn start(gpu: &'static GpuBackend) -> Result<OnFirstShow, String> {
    let base = PanelBase::new("cl", "clean")?;
    let ui = Rc::new(Ui { images: base.canvas("images")?, chart: base.canvas("chart")?, base });
    let control: Shared<Cmd> = Shared::default();
    {
        let ui2 = ui.clone();
        listen(&ui.base.el("noise")?, "input", move |_| {
            let v = ui2.base.value("noise").unwrap_or_default();
            ui2.base.set_cell("noise-val", &v);
        });
    }
    ui.base.wire_buttons(&control, |b| match b {
        Button::Run => Cmd::Run,
        Button::Pause => Cmd::Pause,
        Button::Reset => Cmd::Reset,
    });
    {
        let ui = ui.clone();
        let control = control.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = drive(gpu, &ui, &control).await {
                ui.base.fail(&e, true);
            }
        });
    }
    let mut started = false;
    Ok(Box::new(move |autorun| {
        if autorun && !started {
            started = true;
            send(&control, Cmd::Run);
        }
    }))
}

fn read_config(base: &PanelBase) -> Result<Config, String> {
    let batch = base.whole("batch", "batch size", 1, 2000)?;
    Ok(Config {
        alg: base.value("alg")?.parse().map_err(|e: bilevel_core::Error| e.to_string())?,
        noise_rate: base.number("noise", "noise rate", 0.0, 1.0)?,
        seed: base.whole("seed", "seed", 0, u32::MAX as usize)? as u64,
        epochs: base.whole("epochs", "outer steps", 1, 100_000)?,
        hyper: Hyper {
            t: base.whole("T", "T", 1, 10_000)?,
            q: base.whole("Q", "Q / K", 1, 10_000)?,
            eta: base.number("eta", "η", 1e-12, 1e6)?,
            alpha: base.number("alpha", "α", 1e-12, 1e6)?,
            beta: base.number("beta", "β", 1e-12, 1e9)?,
            batch_size: batch,
            val_batch_size: batch,
        },
    })
}

async fn fetch_subset() -> Result<MnistSubset, String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp: Response = JsFuture::from(window.fetch_with_str(ASSET)).await.map_err(js_err)?.dyn_into().map_err(js_err)?;
    if !resp.ok() {
        return Err(format!("cannot load {ASSET}: HTTP {} (the page build writes it with `bilevel mnist-subset`)", resp.status()));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(js_err)?).await.map_err(js_err)?;
    let bytes = Uint8Array::new(&buf).to_vec();
    MnistSubset::from_bytes(&bytes, ASSET).map_err(|e| e.to_string())
}

async fn drive(gpu: &'static GpuBackend, ui: &Ui, control: &Shared<Cmd>) -> Result<(), String> {
    let data: RefCell<Option<Rc<Data>>> = RefCell::new(None);
    draw_chart(&ui.chart, &[]).map_err(js_err)?;
    let mut next: Option<Cmd> = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => next_command(control).await,
        };
        match cmd {
            Cmd::Pause => {}
            Cmd::Reset => {
                reset(ui);
                draw_chart(&ui.chart, &[]).map_err(js_err)?;
            }
            Cmd::Run => {
                let cached = data.borrow().clone();
                let d = match cached {
                    Some(d) => d,
                    None => {
                        ui.base.set_status("computing", "Loading the MNIST subset…");
                        let subset = fetch_subset().await?;
                        let d = Rc::new(Data { splits: subset.hyperclean(), subset });
                        *data.borrow_mut() = Some(d.clone());
                        d
                    }
                };
                next = run(gpu, ui, control, &d).await?;
            }
        }
    }
}

fn reset(ui: &Ui) {
    ui.base.clear_error();
    set_prop(&ui.base.state, "records", &Array::new());
    for id in ["iter", "time", "acc", "prec", "rec", "val"] {
        ui.base.set_cell(id, "–");
    }
    ui.base.set_status("idle", "Idle: press Run");
}

/// One run until done, failed, or ended by a command (returned).
async fn run(gpu: &'static GpuBackend, ui: &Ui, control: &Shared<Cmd>, data: &Data) -> Result<Option<Cmd>, String> {
    let base = &ui.base;
    reset(ui);
    let config = match read_config(base) {
        Ok(c) => c,
        Err(e) => {
            base.fail(&e, false);
            return Ok(None);
        }
    };
    set_prop(&base.state, "config", &to_js(&config));
    let (train, val, test) = data.splits.clone();
    let exp = hyperclean_paper(train, val, test, config.noise_rate, config.seed, RHO).map_err(|e| e.to_string())?;
    let corrupted = exp.corrupted.clone().unwrap_or_default();
    let mut run = match Run::new(gpu, &exp, config.alg, config.hyper.clone(), OuterOpt::Sgd { momentum: 0.0 }, config.seed) {
        Ok(r) => r,
        Err(e) => {
            base.fail(&e.to_string(), false);
            return Ok(None);
        }
    };
    let records_js = Array::new();
    set_prop(&base.state, "records", &records_js);
    let mut records: Vec<Record> = Vec::new();
    let shown = data.subset.train.0.count.min(COLS * ROWS);
    let mut weights = vec![0.5; shown];
    let push = |rec: Record, weights: &[f64], records: &mut Vec<Record>| -> Result<(), String> {
        records_js.push(&to_js(&rec));
        base.set_cell("iter", &rec.iter.to_string());
        base.set_cell("time", &format!("{:.2} s", rec.time_s));
        base.set_cell("acc", &format!("{:.1} %", 100.0 * rec.test_acc));
        base.set_cell("prec", &format!("{:.3}", rec.precision.unwrap_or(0.0)));
        base.set_cell("rec", &format!("{:.3}", rec.recall.unwrap_or(0.0)));
        base.set_cell("val", &format!("{:.4}", rec.val_loss));
        records.push(rec);
        set_prop(&base.state, "weights", &to_js(&weights));
        draw_images(&ui.images, data, &corrupted, weights).map_err(js_err)?;
        draw_chart(&ui.chart, records).map_err(js_err)
    };
    base.set_status("running", "Running: evaluating the start");
    let first = run.initial().await.map_err(|e| e.to_string())?;
    push(first, &weights, &mut records)?;
    crate::record_first_result("clean");
    let now = now_s;
    let mut paused = false;
    while records.len() <= config.epochs {
        while let Some(cmd) = try_command(control) {
            match cmd {
                Cmd::Pause => paused = !paused,
                other => return Ok(Some(other)),
            }
        }
        if paused {
            base.set_status("paused", &format!("Paused at {} / {}", records.len() - 1, config.epochs));
            match next_command(control).await {
                Cmd::Pause => paused = false,
                other => return Ok(Some(other)),
            }
            continue;
        }
        base.set_status("running", &format!("Running {}: {} / {} outer steps", config.alg, records.len() - 1, config.epochs));
        let rec = match run.step(&now).await {
            Ok(r) => r,
            Err(e) => {
                base.fail(&format!("{e}"), false);
                return Ok(None);
            }
        };
        weights = run.lambda.iter().take(shown).map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
        push(rec, &weights, &mut records)?;
        next_frame().await;
    }
    let last = records.last().map_or(0.0, |r| r.time_s);
    base.set_status("done", &format!("Done: {} outer steps, {last:.2} s solver time", config.epochs));
    Ok(None)
}

/// The first training images, stroke colour by weight (green ≥ ½, red < ½), corrupted ones
/// framed in red.
fn draw_images(canvas: &HtmlCanvasElement, data: &Data, corrupted: &[bool], weights: &[f64]) -> Result<(), JsValue> {
    let (ctx, w, _) = prepare(canvas)?;
    let (images, _) = &data.subset.train;
    let side = images.rows;
    let gap = 2;
    let tile = side + gap;
    let (gw, gh) = (COLS * tile, ROWS * tile);
    let mut rgba = vec![255u8; gw * gh * 4];
    for (k, &wt) in weights.iter().enumerate() {
        let (r0, c0) = ((k / COLS) * tile, (k % COLS) * tile);
        let pixels = images.image(k);
        // Weight 1: green strokes; weight 0: red; on a dark tile.
        let (sr, sg, sb) = (255.0 * (1.0 - wt).min(1.0), 200.0 * wt.min(1.0), 60.0);
        for y in 0..side {
            for x in 0..side {
                let p = pixels[y * side + x] as f64 / 255.0;
                let o = ((r0 + y) * gw + c0 + x) * 4;
                rgba[o] = (25.0 + p * (sr - 25.0)).round() as u8;
                rgba[o + 1] = (25.0 + p * (sg - 25.0)).round() as u8;
                rgba[o + 2] = (35.0 + p * (sb - 35.0)).round() as u8;
                rgba[o + 3] = 255;
            }
        }
    }
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), gw as u32, gh as u32)?;
    // Scale the grid to the canvas through a temporary canvas (putImageData ignores transforms).
    let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let tmp: HtmlCanvasElement = doc.create_element("canvas")?.dyn_into()?;
    tmp.set_width(gw as u32);
    tmp.set_height(gh as u32);
    let tctx: web_sys::CanvasRenderingContext2d = tmp.get_context("2d")?.ok_or("no 2D context")?.dyn_into()?;
    tctx.put_image_data(&image, 0.0, 0.0)?;
    let scale = ((w - 20.0) / gw as f64).min(2.0);
    ctx.set_image_smoothing_enabled(false);
    ctx.draw_image_with_html_canvas_element_and_dw_and_dh(&tmp, 10.0, 28.0, gw as f64 * scale, gh as f64 * scale)?;
    ctx.set_stroke_style_str("#e0201b");
    ctx.set_line_width(1.5);
    for (k, _) in corrupted.iter().take(weights.len()).enumerate().filter(|(_, c)| **c) {
        let (r0, c0) = ((k / COLS) * tile, (k % COLS) * tile);
        ctx.stroke_rect(
            10.0 + c0 as f64 * scale - 0.5,
            28.0 + r0 as f64 * scale - 0.5,
            side as f64 * scale + 1.0,
            side as f64 * scale + 1.0,
        );
    }
    ctx.set_fill_style_str(crate::chart::TEXT);
    ctx.set_font(&format!("600 {}", crate::chart::FONT));
    let flagged = weights.iter().filter(|w| **w < 0.5).count();
    ctx.fill_text(&format!("First {} training images: {flagged} with weight < ½ (red frame: corrupted label)", weights.len()), 10.0, 16.0)?;
    Ok(())
}

fn draw_chart(canvas: &HtmlCanvasElement, records: &[Record]) -> Result<(), JsValue> {
    let (ctx, w, h) = prepare(canvas)?;
    let at = |f: fn(&Record) -> f64| records.iter().map(|r| (r.time_s, f(r))).collect::<Vec<_>>();
    let series = [
        Series { label: "test accuracy", colour: PALETTE[0], dashed: false, points: at(|r| r.test_acc) },
        Series { label: "precision", colour: PALETTE[1], dashed: false, points: at(|r| r.precision.unwrap_or(0.0)) },
        Series { label: "recall", colour: PALETTE[2], dashed: true, points: at(|r| r.recall.unwrap_or(0.0)) },
    ];
    let xmax = records.last().map_or(1.0, |r| r.time_s.max(1e-3));
    panel(&ctx, (0.0, 0.0, w, h), "Against solver time", &XAxis { max: xmax, label: "solver time (s)", whole: false }, &series, false)
}
