//! Panel 3, the race: the chosen algorithms on the same toy problem ([`ToyRun`], the CLI's
//! `bilevel toy` with its defaults), taking turns one outer iteration each, the validation loss
//! Φ(λ) against solver time and against oracle calls. `__bilevel.race` holds `{status, error,
//! algs, records: {alg: [ToyRecord]}}`.

use std::rc::Rc;

use bilevel_core::algorithms::AlgKind;
use bilevel_core::gpu::GpuBackend;
use bilevel_core::toy::{ToyRecord, ToyRun};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::HtmlCanvasElement;

use crate::chart::{panel, prepare, Series, XAxis, PALETTE};
use crate::panel::{Button, PanelBase};
use crate::settings::Settings;
use crate::{js_err, next_command, next_frame, now_s, send, set_prop, to_js, try_command, OnFirstShow, Shared};

enum Cmd {
    Run,
    Pause,
    Reset,
}

struct Ui {
    base: PanelBase,
    chart: HtmlCanvasElement,
}

pub(crate) fn start(gpu: &'static GpuBackend) -> Result<OnFirstShow, String> {
    let base = PanelBase::new("race", "race")?;
    let ui = Rc::new(Ui { chart: base.canvas("chart")?, base });
    let control: Shared<Cmd> = Shared::default();
    ui.base.wire_buttons(&control, |b| match b {
        Button::Run => Cmd::Run,
        Button::Pause => Cmd::Pause,
        Button::Reset => Cmd::Reset,
    });
    {
        let (ui, control) = (ui.clone(), control.clone());
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

fn chosen(base: &PanelBase) -> Result<Vec<AlgKind>, String> {
    let boxes = base.document.query_selector_all("#race-algs input[type=checkbox]").map_err(js_err)?;
    let mut algs = Vec::new();
    for k in 0..boxes.length() {
        let Some(node) = boxes.item(k) else { continue };
        let checked = Reflect::get(&node, &"checked".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
        let value = Reflect::get(&node, &"value".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        if checked {
            algs.push(value.parse::<AlgKind>().map_err(|e| e.to_string())?);
        }
    }
    if algs.is_empty() {
        return Err("choose at least one algorithm".into());
    }
    Ok(algs)
}

async fn drive(gpu: &'static GpuBackend, ui: &Ui, control: &Shared<Cmd>) -> Result<(), String> {
    draw(&ui.chart, &[]).map_err(js_err)?;
    let mut next = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => next_command(control).await,
        };
        match cmd {
            Cmd::Pause => {}
            Cmd::Reset => {
                ui.base.clear_error();
                set_prop(&ui.base.state, "records", &Object::new());
                draw(&ui.chart, &[]).map_err(js_err)?;
                table(&ui.base, &[]);
                ui.base.set_status("idle", "Idle: press Run");
            }
            Cmd::Run => next = race(gpu, ui, control).await?,
        }
    }
}

async fn race(gpu: &'static GpuBackend, ui: &Ui, control: &Shared<Cmd>) -> Result<Option<Cmd>, String> {
    let base = &ui.base;
    base.clear_error();
    let (algs, epochs) = match (chosen(base), base.whole("epochs", "outer steps", 1, 20_000)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => {
            base.fail(&e, false);
            return Ok(None);
        }
    };
    let mut runs = Vec::new();
    for &alg in &algs {
        let settings = Settings { alg, epochs, ..Settings::default() };
        match ToyRun::new(gpu, settings.config()) {
            Ok(r) => runs.push(r),
            Err(e) => {
                base.fail(&e.to_string(), false);
                return Ok(None);
            }
        }
    }
    set_prop(&base.state, "algs", &to_js(&algs.iter().map(|a| a.name()).collect::<Vec<_>>()));
    set_prop(&base.state, "config", &to_js(&Settings { epochs, ..Settings::default() }.config()));
    let store = Object::new();
    let arrays: Vec<Array> = algs
        .iter()
        .map(|a| {
            let arr = Array::new();
            set_prop(&store, a.name(), &arr);
            arr
        })
        .collect();
    set_prop(&base.state, "records", &store);
    let mut records: Vec<(AlgKind, Vec<ToyRecord>)> = algs.iter().map(|&a| (a, Vec::new())).collect();
    let now = now_s;
    let mut paused = false;
    let mut round = 0;
    while runs.iter().any(|r| !r.done()) {
        while let Some(cmd) = try_command(control) {
            match cmd {
                Cmd::Pause => paused = !paused,
                other => return Ok(Some(other)),
            }
        }
        if paused {
            base.set_status("paused", &format!("Paused at {round} / {epochs}"));
            match next_command(control).await {
                Cmd::Pause => paused = false,
                other => return Ok(Some(other)),
            }
            continue;
        }
        base.set_status("running", &format!("Racing: {} / {epochs} outer steps", round + 1));
        for (k, run) in runs.iter_mut().enumerate() {
            if run.done() {
                continue;
            }
            match run.step(&now).await {
                Ok(rec) => {
                    arrays[k].push(&to_js(&rec));
                    records[k].1.push(rec);
                }
                Err(e) => {
                    base.fail(&format!("{}: {e}", algs[k]), false);
                    return Ok(None);
                }
            }
        }
        round += 1;
        draw(&ui.chart, &records).map_err(js_err)?;
        table(base, &records);
        crate::record_first_result("race");
        next_frame().await;
    }
    base.set_status("done", &format!("Done: {} algorithms × {epochs} outer steps", algs.len()));
    Ok(None)
}

fn draw(canvas: &HtmlCanvasElement, records: &[(AlgKind, Vec<ToyRecord>)]) -> Result<(), JsValue> {
    let (ctx, w, h) = prepare(canvas)?;
    let side = w >= 640.0;
    let (pw, ph) = if side { (w / 2.0, h) } else { (w, h / 2.0) };
    let second = if side { (pw, 0.0) } else { (0.0, ph) };
    let series = |x: fn(&ToyRecord) -> f64| -> Vec<Series<'_>> {
        records
            .iter()
            .enumerate()
            .map(|(k, (alg, recs))| Series {
                label: alg.name(),
                colour: PALETTE[k % PALETTE.len()],
                dashed: false,
                points: recs.iter().map(|r| (x(r), r.exact_outer_loss)).collect(),
            })
            .collect()
    };
    let max = |x: fn(&ToyRecord) -> f64| records.iter().flat_map(|(_, r)| r.iter().map(x)).fold(0.0, f64::max);
    let by_time = series(|r| r.time_s);
    panel(
        &ctx,
        (0.0, 0.0, pw, ph),
        "Φ(λ) against solver time",
        &XAxis { max: max(|r| r.time_s), label: "solver time (s)", whole: false },
        &by_time,
        false,
    )?;
    let by_calls = series(|r| r.oracle_counts.calls() as f64);
    let calls = XAxis { max: max(|r| r.oracle_counts.calls() as f64), label: "oracle calls", whole: true };
    panel(&ctx, (second.0, second.1, pw, ph), "Φ(λ) against oracle calls", &calls, &by_calls, false)
}

fn table(base: &PanelBase, records: &[(AlgKind, Vec<ToyRecord>)]) {
    let Ok(body) = base.el("table") else { return };
    let mut html = String::new();
    for (k, (alg, recs)) in records.iter().enumerate() {
        let Some(r) = recs.last() else { continue };
        html.push_str(&format!(
            "<tr><td style=\"text-align:left\"><span class=\"swatch\" style=\"background:{}\"></span>{alg}</td><td>{}</td><td>{:.3} s</td><td>{:.5}</td><td>{}</td><td>{}</td></tr>",
            PALETTE[k % PALETTE.len()],
            r.iter,
            r.time_s,
            r.exact_outer_loss,
            r.oracle_counts.calls(),
            r.oracle_counts.samples
        ));
    }
    body.set_inner_html(&html);
}
