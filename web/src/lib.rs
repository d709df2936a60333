//! bilevel-web: the browser front end. Four panels run bilevel-core's solvers on the browser's
//! WebGPU adapter: the landscape of a two-feature ridge problem ([`landscape`]), hyper-cleaning
//! on an MNIST subset ([`clean`]), a race of algorithms ([`race`]), and one toy run in detail
//! (this file, with [`bilevel_core::toy`]). Each panel's driver interleaves solver steps with
//! animation frames and can be paused and reset.
//!
//! The markup lives in the repository's `index.html`; this crate finds its elements by id.
//! Progress is mirrored on `window.__bilevel` for automation: the toy's
//! `{status, adapter, config, records, error}` where `status` is one of `loading`, `running`,
//! `paused`, `done`, `idle`, `error` or `no-webgpu` and `records` holds one [`ToyRecord`] per
//! outer iteration; `panel` (the tab shown); `metrics` (animation frames, first result time);
//! and one object per teaching panel (`landscape`, `clean`, `race`).

mod chart;
mod clean;
mod landscape;
mod panel;
mod race;
pub mod settings;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use bilevel_core::gpu::{AdapterSummary, GpuBackend, GpuOptions};
use bilevel_core::toy::{ToyRecord, ToyRun};
use bilevel_core::Error as CoreError;
use futures_channel::oneshot;
use js_sys::{Array, Object, Promise, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Document, Element, HtmlCanvasElement, UrlSearchParams, Window};

use settings::{Settings, KEYS};

/// How long to wait for `requestAdapter`/`requestDevice` before calling WebGPU unavailable
/// (some browsers expose `navigator.gpu` but never answer).
const ADAPTER_TIMEOUT_MS: i32 = 30_000;

/// Entry point, called by the wasm-bindgen glue once the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("internal error: {info}");
        web_sys::console::error_1(&JsValue::from_str(&msg));
        fatal(&msg);
    }));
    wasm_bindgen_futures::spawn_local(async {
        if let Err(msg) = main().await {
            web_sys::console::error_1(&JsValue::from_str(&msg));
            fatal(&msg);
        }
    });
}

/// What the buttons ask of the driver.
enum Command {
    Run(Settings),
    Pause,
    Reset,
}

/// Commands queued by event handlers, and the driver's wake-up call while it waits.
pub(crate) struct Control<C> {
    queue: VecDeque<C>,
    wake: Option<oneshot::Sender<()>>,
}

impl<C> Default for Control<C> {
    fn default() -> Self {
        Control { queue: VecDeque::new(), wake: None }
    }
}

pub(crate) type Shared<C = Command> = Rc<RefCell<Control<C>>>;

pub(crate) fn send<C>(control: &Shared<C>, cmd: C) {
    let mut c = control.borrow_mut();
    c.queue.push_back(cmd);
    if let Some(wake) = c.wake.take() {
        let _ = wake.send(());
    }
}

pub(crate) fn try_command<C>(control: &Shared<C>) -> Option<C> {
    control.borrow_mut().queue.pop_front()
}

/// Whether a command like `pred` is already queued (to coalesce slider events).
pub(crate) fn queued<C>(control: &Shared<C>, pred: impl Fn(&C) -> bool) -> bool {
    control.borrow().queue.iter().any(pred)
}

pub(crate) async fn next_command<C>(control: &Shared<C>) -> C {
    loop {
        if let Some(cmd) = try_command(control) {
            return cmd;
        }
        let (tx, rx) = oneshot::channel();
        control.borrow_mut().wake = Some(tx);
        let _ = rx.await;
    }
}

/// Resolves at the next animation frame: solver steps are interleaved with frames, so the page
/// repaints and handles input between them.
pub(crate) async fn next_frame() {
    let promise = Promise::new(&mut |resolve, _reject| {
        if let Some(w) = web_sys::window() {
            let _ = w.request_animation_frame(&resolve);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Records the first result on screen (`__bilevel.metrics.first_result_ms`, milliseconds since
/// navigation started) the first time any panel shows one.
pub(crate) fn record_first_result(panel: &str) {
    let Some(window) = web_sys::window() else { return };
    let metrics = Reflect::get(&state_object(&window), &"metrics".into()).ok().and_then(|m| m.dyn_into::<Object>().ok());
    if let Some(m) = metrics {
        if Reflect::get(&m, &"first_result_ms".into()).is_ok_and(|v| v.is_undefined()) {
            set_prop(&m, "first_result_ms", &(now_s() * 1000.0).into());
            set_prop(&m, "first_result_panel", &panel.into());
        }
    }
}

/// Seconds since the page loaded (`performance.now()`).
pub(crate) fn now_s() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now()) / 1000.0
}

/// Resolves after `ms` milliseconds (0: at the next task, letting the browser render).
pub(crate) async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// `f`'s output, or `None` if `ms` milliseconds pass first.
async fn with_timeout<F: Future>(f: F, ms: i32) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut timer = pin!(sleep(ms));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

pub(crate) fn js_err(e: JsValue) -> String {
    e.as_string().or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message()))).unwrap_or_else(|| format!("{e:?}"))
}

/// `window.__bilevel`, created if the page did not set it up.
pub(crate) fn state_object(window: &Window) -> Object {
    let key = JsValue::from_str("__bilevel");
    match Reflect::get(window, &key).ok().and_then(|v| v.dyn_into::<Object>().ok()) {
        Some(obj) => obj,
        None => {
            let obj = Object::new();
            let _ = Reflect::set(window, &key, &obj);
            obj
        }
    }
}

pub(crate) fn set_prop(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// A serializable value as a plain JS object (through JSON).
pub(crate) fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    serde_json::to_string(value).ok().and_then(|s| JSON::parse(&s).ok()).unwrap_or(JsValue::NULL)
}

/// Last-resort error display (panics, missing markup): never panics itself.
fn fatal(msg: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let state = state_object(&window);
    set_prop(&state, "status", &"error".into());
    set_prop(&state, "error", &msg.into());
    if let Some(doc) = window.document() {
        if let Some(el) = doc.get_element_by_id("error-text") {
            el.set_text_content(Some(msg));
        }
        if let Some(el) = doc.get_element_by_id("error") {
            let _ = el.remove_attribute("hidden");
        }
        if let Some(el) = doc.get_element_by_id("status") {
            el.set_text_content(Some("Error"));
            let _ = el.set_attribute("data-state", "error");
        }
    }
}

/// The browser's description of its adapter (`GPUAdapterInfo`).
#[derive(Debug, Default, serde::Serialize)]
struct WebGpuInfo {
    vendor: String,
    architecture: String,
    device: String,
    description: String,
}

impl WebGpuInfo {
    /// "vendor architecture device", or the description, whichever says something.
    fn label(&self) -> String {
        let parts: Vec<&str> =
            [&self.vendor, &self.architecture, &self.device].into_iter().map(|s| s.as_str()).filter(|s| !s.is_empty()).collect();
        if parts.is_empty() {
            self.description.clone()
        } else {
            parts.join(" ")
        }
    }
}

/// Asks `navigator.gpu` for an adapter's `info` (a second request: wgpu does not pass it on).
async fn webgpu_info(window: &Window) -> Option<WebGpuInfo> {
    let gpu = Reflect::get(&window.navigator(), &"gpu".into()).ok()?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into()).ok()?.dyn_into().ok()?;
    let promise: Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = with_timeout(JsFuture::from(promise), 5_000).await?.ok()?;
    let info = Reflect::get(&adapter, &"info".into()).ok()?;
    if info.is_undefined() || info.is_null() {
        return None;
    }
    let field = |k: &str| Reflect::get(&info, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    Some(WebGpuInfo {
        vendor: field("vendor"),
        architecture: field("architecture"),
        device: field("device"),
        description: field("description"),
    })
}

/// The page's elements and the current run's records (for redraws).
struct Page {
    window: Window,
    document: Document,
    state: Object,
    status: Element,
    adapter: Element,
    canvas: HtmlCanvasElement,
    error: Element,
    error_text: Element,
    form_error: Element,
    no_webgpu: Element,
    run_btn: Element,
    pause_btn: Element,
    reset_btn: Element,
    records: RefCell<Vec<ToyRecord>>,
    epochs: Cell<usize>,
}

/// Cells of the "latest record" table, by element id.
const LATEST: [&str; 7] = ["r-iter", "r-time", "r-loss", "r-exact", "r-err", "r-hnorm", "r-lnorm"];

impl Page {
    fn new() -> Result<Self, String> {
        let window = web_sys::window().ok_or("no window object")?;
        let document = window.document().ok_or("no document")?;
        let el = |id: &str| document.get_element_by_id(id).ok_or_else(|| format!("index.html has no element #{id}"));
        Ok(Page {
            state: state_object(&window),
            status: el("status")?,
            adapter: el("adapter")?,
            canvas: el("chart")?.dyn_into().map_err(|_| "#chart is not a canvas")?,
            error: el("error")?,
            error_text: el("error-text")?,
            form_error: el("form-error")?,
            no_webgpu: el("no-webgpu")?,
            run_btn: el("run")?,
            pause_btn: el("pause")?,
            reset_btn: el("reset")?,
            records: RefCell::default(),
            epochs: Cell::new(0),
            window,
            document,
        })
    }

    fn set_status(&self, code: &str, text: &str) {
        set_prop(&self.state, "status", &code.into());
        self.status.set_text_content(Some(text));
        let _ = self.status.set_attribute("data-state", code);
        let active = matches!(code, "running" | "paused");
        set_disabled(&self.pause_btn, !active);
        self.pause_btn.set_text_content(Some(if code == "paused" { "Resume" } else { "Pause" }));
        let usable = !matches!(code, "loading" | "no-webgpu");
        set_disabled(&self.run_btn, !usable);
        set_disabled(&self.reset_btn, !usable);
    }

    fn fail(&self, msg: &str) {
        web_sys::console::error_1(&JsValue::from_str(msg));
        set_prop(&self.state, "error", &msg.into());
        self.error_text.set_text_content(Some(msg));
        let _ = self.error.remove_attribute("hidden");
        self.set_status("error", "Error (see below)");
    }

    fn clear_error(&self) {
        set_prop(&self.state, "error", &JsValue::NULL);
        let _ = self.error.set_attribute("hidden", "");
        self.form_error.set_text_content(None);
    }

    fn no_webgpu(&self, reason: &str) {
        web_sys::console::info_1(&JsValue::from_str(&format!("bilevel: no WebGPU: {reason}")));
        set_prop(&self.state, "error", &reason.into());
        if let Some(el) = self.document.get_element_by_id("no-webgpu-reason") {
            el.set_text_content(Some(reason));
        }
        let _ = self.no_webgpu.remove_attribute("hidden");
        // Nothing will be charted: keep the explanation in view, not empty panels.
        for id in ["results", "tabs", "panel-landscape", "panel-clean", "panel-race", "panel-toy"] {
            if let Some(el) = self.document.get_element_by_id(id) {
                let _ = el.set_attribute("hidden", "");
            }
        }
        self.adapter.set_text_content(Some("none"));
        self.set_status("no-webgpu", "WebGPU unavailable");
    }

    /// Shows the adapter: wgpu's summary, completed with the browser's `GPUAdapterInfo`
    /// (wgpu leaves the name empty on WebGPU).
    fn show_adapter(&self, a: &AdapterSummary, info: Option<WebGpuInfo>) {
        let state = to_js(a);
        let mut name = a.name.clone();
        if let (Some(info), Ok(obj)) = (&info, state.clone().dyn_into::<Object>()) {
            if name.is_empty() {
                name = info.label();
                set_prop(&obj, "name", &name.as_str().into());
            }
            set_prop(&obj, "webgpu", &to_js(info));
        }
        set_prop(&self.state, "adapter", &state);
        if name.is_empty() {
            name = "(unnamed)".into();
        }
        let mut text = format!("{name} ({}, {}", a.backend, a.device_type);
        if !a.driver.is_empty() {
            text.push_str(&format!(", {}", a.driver));
        }
        text.push(')');
        self.adapter.set_text_content(Some(&text));
    }

    fn input(&self, key: &str) -> Option<Element> {
        self.document.get_element_by_id(&format!("in-{key}"))
    }

    fn write_form(&self, s: &Settings) {
        for key in KEYS {
            if let Some(el) = self.input(key) {
                let _ = Reflect::set(&el, &"value".into(), &s.get(key).into());
            }
        }
    }

    fn read_form(&self) -> Result<Settings, String> {
        Settings::from_lookup(|key| {
            let el = self.input(key)?;
            Reflect::get(&el, &"value".into()).ok()?.as_string()
        })
    }

    /// Starts a fresh run's display: clears records and chart, records the settings.
    fn begin(&self, s: &Settings) {
        self.clear_error();
        self.records.borrow_mut().clear();
        self.epochs.set(s.epochs);
        set_prop(&self.state, "records", &Array::new());
        set_prop(&self.state, "config", &to_js(&s.config()));
        for id in LATEST {
            if let Some(el) = self.document.get_element_by_id(id) {
                el.set_text_content(Some("–"));
            }
        }
        // The address reproduces the run.
        if let Ok(history) = self.window.history() {
            let url = format!("?{}", s.to_query());
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&url));
        }
        self.redraw();
        self.set_status("running", &format!("Running: 0 / {} iterations", s.epochs));
    }

    fn push(&self, rec: ToyRecord) {
        record_first_result("toy");
        if let Ok(records) = Reflect::get(&self.state, &"records".into()) {
            if let Some(arr) = records.dyn_ref::<Array>() {
                arr.push(&to_js(&rec));
            }
        }
        let cells = [
            rec.iter.to_string(),
            format!("{:.3} s", rec.time_s),
            format!("{:.6}", rec.outer_loss),
            format!("{:.6}", rec.exact_outer_loss),
            format!("{:.3e}", rec.hypergrad_rel_err),
            format!("{:.4}", rec.hypergrad_norm),
            format!("{:.4}", rec.lambda_norm),
        ];
        for (id, text) in LATEST.iter().zip(cells) {
            if let Some(el) = self.document.get_element_by_id(id) {
                el.set_text_content(Some(&text));
            }
        }
        self.status.set_text_content(Some(&format!("Running: {} / {} iterations", rec.iter, self.epochs.get())));
        self.records.borrow_mut().push(rec);
        self.redraw();
    }

    fn redraw(&self) {
        if let Err(e) = chart::draw(&self.canvas, &self.records.borrow(), self.epochs.get()) {
            self.fail(&format!("cannot draw the chart: {}", js_err(e)));
        }
    }

    fn reset(&self, initial: &Settings) {
        self.clear_error();
        self.records.borrow_mut().clear();
        self.epochs.set(initial.epochs);
        set_prop(&self.state, "records", &Array::new());
        self.write_form(initial);
        self.redraw();
        self.set_status("idle", "Idle: press Run to start");
    }
}

pub(crate) fn set_disabled(el: &Element, disabled: bool) {
    let _ = if disabled { el.set_attribute("disabled", "") } else { el.remove_attribute("disabled") };
}

pub(crate) fn listen(el: &impl AsRef<web_sys::EventTarget>, event: &str, f: impl FnMut(web_sys::Event) + 'static) {
    let cb = Closure::<dyn FnMut(web_sys::Event)>::new(f);
    let _ = el.as_ref().add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
    // The page lives as long as the handlers.
    cb.forget();
}

/// Connects the form and the buttons to the driver.
fn wire(page: &Rc<Page>, control: &Shared) -> Result<(), String> {
    let form = page.document.get_element_by_id("settings").ok_or("index.html has no element #settings")?;
    {
        let (page, control) = (page.clone(), control.clone());
        listen(&form, "submit", move |ev| {
            ev.prevent_default();
            match page.read_form() {
                Ok(s) => {
                    page.form_error.set_text_content(None);
                    send(&control, Command::Run(s));
                }
                Err(e) => page.form_error.set_text_content(Some(&e)),
            }
        });
    }
    {
        let control = control.clone();
        listen(&page.pause_btn, "click", move |_| send(&control, Command::Pause));
    }
    {
        let control = control.clone();
        listen(&page.reset_btn, "click", move |_| send(&control, Command::Reset));
    }
    {
        let page = page.clone();
        listen(&page.window.clone(), "resize", move |_| page.redraw());
    }
    Ok(())
}

async fn main() -> Result<(), String> {
    let page = Rc::new(Page::new()?);
    let search = page.window.location().search().map_err(js_err)?;
    let params = UrlSearchParams::new_with_str(&search).map_err(js_err)?;
    let autorun = params.get("autorun").is_none_or(|v| v != "0");
    // The panel shown first: `?panel=`, else the single run when the address has its settings
    // (older links), else the landscape.
    let first_panel =
        params.get("panel").unwrap_or_else(|| if KEYS.iter().any(|k| params.has(k)) { "toy".into() } else { "landscape".into() });
    let (initial, url_error) = match Settings::from_lookup(|k| params.get(k)) {
        Ok(s) => (s, None),
        Err(e) => (Settings::default(), Some(e)),
    };
    page.write_form(&initial);
    page.epochs.set(initial.epochs);
    page.redraw();
    page.set_status("loading", "Requesting a WebGPU adapter…");

    let navigator = page.window.navigator();
    let has_gpu = Reflect::get(&navigator, &"gpu".into()).is_ok_and(|g| !g.is_undefined());
    if !has_gpu {
        let mut reason = String::from("navigator.gpu is undefined");
        if !page.window.is_secure_context() {
            reason.push_str(" (WebGPU needs a secure context: open the page over https or from localhost)");
        }
        page.no_webgpu(&reason);
        return Ok(());
    }
    let gpu = match with_timeout(GpuBackend::new(&GpuOptions::default()), ADAPTER_TIMEOUT_MS).await {
        Some(Ok(gpu)) => gpu,
        Some(Err(CoreError::NoAdapter(msg))) => {
            web_sys::console::info_1(&JsValue::from_str(&format!("bilevel: {msg}")));
            page.no_webgpu(
                "navigator.gpu exists, but requestAdapter() granted no adapter \
                 (WebGPU is disabled or unsupported on this device)",
            );
            return Ok(());
        }
        Some(Err(e)) => {
            page.fail(&format!("cannot open the WebGPU device: {e}"));
            return Ok(());
        }
        None => {
            page.no_webgpu(&format!("navigator.gpu exists, but no adapter was granted within {} s", ADAPTER_TIMEOUT_MS / 1000));
            return Ok(());
        }
    };
    page.show_adapter(gpu.adapter(), webgpu_info(&page.window).await);
    // The device lives as long as the page; every panel's driver borrows it.
    let gpu: &'static GpuBackend = Box::leak(Box::new(gpu));

    let control = Shared::default();
    wire(&page, &control)?;
    let toy_autorun = autorun && first_panel == "toy";
    let panels = Panels {
        landscape: landscape::start(gpu)?,
        clean: clean::start(gpu)?,
        race: race::start(gpu)?,
        toy: {
            // Shown first: the driver below starts the run (or shows the address's error).
            let (control, initial, first) = (control.clone(), initial.clone(), first_panel == "toy");
            Box::new(move |autorun| {
                if autorun && !first {
                    send(&control, Command::Run(initial.clone()));
                }
            })
        },
    };
    tabs(&page, panels, &first_panel, autorun)?;
    let mut next = match url_error {
        Some(e) => {
            page.fail(&format!("invalid setting in the page address: {e}"));
            None
        }
        None if toy_autorun => Some(Command::Run(initial.clone())),
        None => {
            page.set_status("idle", "Idle: press Run to start");
            None
        }
    };
    loop {
        let cmd = match next.take() {
            Some(cmd) => cmd,
            None => next_command(&control).await,
        };
        match cmd {
            Command::Run(s) => next = run(&page, gpu, &control, &s).await,
            Command::Reset => page.reset(&initial),
            // Nothing is running: nothing to pause.
            Command::Pause => {}
        }
    }
}

/// One run, until it is done, fails, or a command ends it (returned for the driver).
async fn run(page: &Page, gpu: &GpuBackend, control: &Shared, s: &Settings) -> Option<Command> {
    page.begin(s);
    let mut toy = match ToyRun::new(gpu, s.config()) {
        Ok(toy) => toy,
        Err(e) => {
            page.fail(&e.to_string());
            return None;
        }
    };
    let perf = page.window.performance();
    let now = move || perf.as_ref().map_or_else(js_sys::Date::now, |p| p.now()) / 1000.0;
    let mut paused = false;
    loop {
        while let Some(cmd) = try_command(control) {
            match cmd {
                Command::Pause => paused = !paused,
                other => return Some(other),
            }
        }
        if paused {
            let at = page.records.borrow().len();
            page.set_status("paused", &format!("Paused at {at} / {} iterations", s.epochs));
            match next_command(control).await {
                Command::Pause => {
                    paused = false;
                    page.set_status("running", &format!("Running: {at} / {} iterations", s.epochs));
                }
                other => return Some(other),
            }
            continue;
        }
        if toy.done() {
            let time = page.records.borrow().last().map_or(0.0, |r| r.time_s);
            page.set_status("done", &format!("Done: {} iterations, {time:.2} s solver time", s.epochs));
            return None;
        }
        match toy.step(&now).await {
            Ok(rec) => page.push(rec),
            Err(e) => {
                page.fail(&e.to_string());
                return None;
            }
        }
        // Let the browser paint and handle input before the next iteration.
        sleep(0).await;
    }
}

/// What showing a panel for the first time does; the flag is `autorun` (`?autorun=0` clears it:
/// runs then wait for their button, but the landscape still computes its map).
pub(crate) type OnFirstShow = Box<dyn FnMut(bool)>;

struct Panels {
    landscape: OnFirstShow,
    clean: OnFirstShow,
    race: OnFirstShow,
    toy: OnFirstShow,
}

/// The tab bar: shows one panel at a time (`window.__bilevel.panel`), and starts a panel's
/// first run when it is first shown, so panels do not compete for the GPU before the visitor
/// looks at them.
fn tabs(page: &Rc<Page>, panels: Panels, first: &str, autorun: bool) -> Result<(), String> {
    const NAMES: [&str; 4] = ["landscape", "clean", "race", "toy"];
    let first = if NAMES.contains(&first) { first.to_string() } else { "landscape".to_string() };
    if let Some(nav) = page.document.get_element_by_id("tabs") {
        let _ = nav.remove_attribute("hidden");
    }
    let hooks: Rc<RefCell<Vec<(OnFirstShow, bool)>>> =
        Rc::new(RefCell::new(vec![(panels.landscape, false), (panels.clean, false), (panels.race, false), (panels.toy, false)]));
    let show: Rc<dyn Fn(&str)> = {
        let (page, hooks) = (page.clone(), hooks.clone());
        Rc::new(move |name: &str| {
            for (i, n) in NAMES.iter().enumerate() {
                let on = *n == name;
                if let Some(el) = page.document.get_element_by_id(&format!("panel-{n}")) {
                    let _ = if on { el.remove_attribute("hidden") } else { el.set_attribute("hidden", "") };
                }
                if let Some(el) = page.document.get_element_by_id(&format!("tab-{n}")) {
                    let _ = el.set_attribute("aria-selected", if on { "true" } else { "false" });
                }
                if on {
                    let mut hooks = hooks.borrow_mut();
                    let (hook, shown) = &mut hooks[i];
                    if !*shown {
                        hook(autorun);
                    }
                    *shown = true;
                }
            }
            set_prop(&page.state, "panel", &name.into());
            if name == "toy" {
                page.redraw();
            }
        })
    };
    for n in NAMES {
        if let Some(el) = page.document.get_element_by_id(&format!("tab-{n}")) {
            let show = show.clone();
            listen(&el, "click", move |_| show(n));
        }
    }
    show(&first);
    Ok(())
}
