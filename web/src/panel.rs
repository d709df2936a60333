//! What the three teaching panels share: their status badge, error line, Run/Pause/Reset
//! buttons, form inputs, and their slice of `window.__bilevel` (`__bilevel.<panel>`).

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::{Document, Element, HtmlCanvasElement};

use crate::{listen, send, set_disabled, set_prop, state_object, Shared};

/// The three buttons every panel has.
pub(crate) enum Button {
    Run,
    Pause,
    Reset,
}

pub(crate) struct PanelBase {
    pub document: Document,
    /// `window.__bilevel.<name>`: `{status, error, …}` (each panel adds its own fields).
    pub state: Object,
    prefix: &'static str,
    status: Element,
    error: Element,
    pub run_btn: Element,
    pub pause_btn: Element,
    pub reset_btn: Element,
}

impl PanelBase {
    /// The panel whose elements' ids start with `prefix-`, mirrored on `__bilevel.<name>`.
    pub fn new(prefix: &'static str, name: &str) -> Result<Self, String> {
        let window = web_sys::window().ok_or("no window object")?;
        let document = window.document().ok_or("no document")?;
        let el = |id: String| document.get_element_by_id(&id).ok_or_else(|| format!("index.html has no element #{id}"));
        let state = Object::new();
        set_prop(&state_object(&window), name, &state);
        let base = PanelBase {
            status: el(format!("{prefix}-status"))?,
            error: el(format!("{prefix}-error"))?,
            run_btn: el(format!("{prefix}-run"))?,
            pause_btn: el(format!("{prefix}-pause"))?,
            reset_btn: el(format!("{prefix}-reset"))?,
            prefix,
            state,
            document,
        };
        base.set_status("idle", "Waiting");
        set_disabled(&base.run_btn, false);
        set_disabled(&base.reset_btn, false);
        Ok(base)
    }

    /// Connects Run, Pause and Reset to the panel's command queue.
    pub fn wire_buttons<C: 'static>(&self, control: &Shared<C>, command: fn(Button) -> C) {
        for (btn, which) in [(&self.run_btn, 0), (&self.pause_btn, 1), (&self.reset_btn, 2)] {
            let control = control.clone();
            listen(btn, "click", move |_| {
                let b = match which {
                    0 => Button::Run,
                    1 => Button::Pause,
                    _ => Button::Reset,
                };
                send(&control, command(b));
            });
        }
    }

    pub fn el(&self, suffix: &str) -> Result<Element, String> {
        let id = format!("{}-{suffix}", self.prefix);
        self.document.get_element_by_id(&id).ok_or_else(|| format!("index.html has no element #{id}"))
    }

    pub fn canvas(&self, suffix: &str) -> Result<HtmlCanvasElement, String> {
        self.el(suffix)?.dyn_into().map_err(|_| format!("#{}-{suffix} is not a canvas", self.prefix))
    }

    /// `code` is one of `idle`, `computing`, `ready`, `running`, `paused`, `done`, `error`.
    pub fn set_status(&self, code: &str, text: &str) {
        set_prop(&self.state, "status", &code.into());
        self.status.set_text_content(Some(text));
        let _ = self.status.set_attribute("data-state", code);
        let active = matches!(code, "running" | "paused");
        set_disabled(&self.pause_btn, !active);
        self.pause_btn.set_text_content(Some(if code == "paused" { "Resume" } else { "Pause" }));
        set_disabled(&self.run_btn, code == "computing");
    }

    /// A failed run: the message under the buttons and on `__bilevel.<name>.error`. A run the
    /// visitor's settings made diverge is a warning, not a page error.
    pub fn fail(&self, msg: &str, page_error: bool) {
        if page_error {
            web_sys::console::error_1(&JsValue::from_str(msg));
        } else {
            web_sys::console::warn_1(&JsValue::from_str(msg));
        }
        set_prop(&self.state, "error", &msg.into());
        self.error.set_text_content(Some(msg));
        self.set_status("error", "Stopped");
    }

    pub fn clear_error(&self) {
        set_prop(&self.state, "error", &JsValue::NULL);
        self.error.set_text_content(None);
    }

    /// The text of input `#prefix-suffix`.
    pub fn value(&self, suffix: &str) -> Result<String, String> {
        let el = self.el(suffix)?;
        Reflect::get(&el, &"value".into()).ok().and_then(|v| v.as_string()).ok_or_else(|| format!("#{}-{suffix} has no value", self.prefix))
    }

    pub fn set_value(&self, suffix: &str, value: &str) {
        if let Ok(el) = self.el(suffix) {
            let _ = Reflect::set(&el, &"value".into(), &value.into());
        }
    }

    /// Input `suffix` as a number in `[lo, hi]`, or a one-line error naming it.
    pub fn number(&self, suffix: &str, label: &str, lo: f64, hi: f64) -> Result<f64, String> {
        let raw = self.value(suffix)?;
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (lo..=hi).contains(&v) => Ok(v),
            _ => Err(format!("{label}: expected a number in [{lo}, {hi}], got {raw:?}")),
        }
    }

    /// Input `suffix` as a whole number in `[lo, hi]`.
    pub fn whole(&self, suffix: &str, label: &str, lo: usize, hi: usize) -> Result<usize, String> {
        let v = self.number(suffix, label, lo as f64, hi as f64)?;
        if v.fract() != 0.0 {
            return Err(format!("{label}: expected a whole number, got {v}"));
        }
        Ok(v as usize)
    }

    pub fn set_cell(&self, suffix: &str, text: &str) {
        if let Ok(el) = self.el(suffix) {
            el.set_text_content(Some(text));
        }
    }
}
