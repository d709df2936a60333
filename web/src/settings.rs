//! The page's settings: parsed from the URL's query string and from the form, written back to
//! both. Names and defaults follow the `bilevel toy` CLI, except `epochs` (30 instead of 50).
//! Pure Rust, no DOM, so it is testable natively.

use std::fmt::Display;
use std::str::FromStr;

use bilevel_core::algorithms::{AlgKind, Hyper};
use bilevel_core::outer::OuterOpt;
use bilevel_core::toy::ToyConfig;

/// Every setting, by its query-string / form key, in form order.
pub const KEYS: [&str; 14] = [
    "alg",
    "seed",
    "epochs",
    "T",
    "hessian_q",
    "eta",
    "inner_lr",
    "outer_lr",
    "batch_size",
    "val_batch_size",
    "n_train",
    "n_val",
    "features",
    "noise",
];

/// Largest problem the page accepts (entries of the training or validation matrix); bigger
/// runs belong to the CLI. Keeps a typo from freezing the tab.
const MAX_ENTRIES: usize = 1 << 24;
/// Largest number of features: the exact hypergradient is a d × d Cholesky on the host.
const MAX_FEATURES: usize = 2048;
/// Every record keeps two d-vectors, in Rust and on `window.__bilevel`.
const MAX_EPOCHS: usize = 20_000;

/// One toy run's settings, as the page shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub alg: AlgKind,
    pub seed: u64,
    pub epochs: usize,
    pub t: usize,
    pub hessian_q: usize,
    pub eta: f64,
    pub inner_lr: f64,
    pub outer_lr: f64,
    pub batch_size: usize,
    /// `None`: the same as `batch_size` (as in the CLI).
    pub val_batch_size: Option<usize>,
    pub n_train: usize,
    pub n_val: usize,
    pub features: usize,
    pub noise: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alg: AlgKind::StocBiO,
            seed: 0,
            epochs: 30,
            t: 10,
            hessian_q: 10,
            eta: 0.5,
            inner_lr: 0.5,
            outer_lr: 50.0,
            batch_size: 64,
            val_batch_size: None,
            n_train: 500,
            n_val: 500,
            features: 40,
            noise: 0.5,
        }
    }
}

fn parse<T: FromStr>(key: &str, raw: &str, what: &str) -> Result<T, String> {
    raw.parse().map_err(|_| format!("{key}: expected {what}, got {raw:?}"))
}

fn whole(key: &str, raw: &str) -> Result<usize, String> {
    parse(key, raw, "a whole number")
}

fn real(key: &str, raw: &str) -> Result<f64, String> {
    parse(key, raw, "a number")
}

fn text(v: impl Display) -> String {
    v.to_string()
}

/// A float as a person would type it: `0.5`, `50`, `1e30` (not thirty zeros), `1e-7`.
fn real_text(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e6).contains(&a) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

impl Settings {
    /// The value of `key` as the form and the query string show it.
    pub fn get(&self, key: &str) -> String {
        match key {
            "alg" => self.alg.name().to_string(),
            "seed" => text(self.seed),
            "epochs" => text(self.epochs),
            "T" => text(self.t),
            "hessian_q" => text(self.hessian_q),
            "eta" => real_text(self.eta),
            "inner_lr" => real_text(self.inner_lr),
            "outer_lr" => real_text(self.outer_lr),
            "batch_size" => text(self.batch_size),
            "val_batch_size" => self.val_batch_size.map(text).unwrap_or_default(),
            "n_train" => text(self.n_train),
            "n_val" => text(self.n_val),
            "features" => text(self.features),
            "noise" => real_text(self.noise),
            _ => String::new(),
        }
    }

    /// Sets `key` from its text form. An empty `val_batch_size` means "same as batch_size".
    pub fn set(&mut self, key: &str, raw: &str) -> Result<(), String> {
        let raw = raw.trim();
        if raw.is_empty() && key != "val_batch_size" {
            return Err(format!("{key}: a value is required"));
        }
        match key {
            "alg" => self.alg = raw.parse::<AlgKind>().map_err(|e| e.to_string())?,
            "seed" => self.seed = parse(key, raw, "a whole number")?,
            "epochs" => self.epochs = whole(key, raw)?,
            "T" => self.t = whole(key, raw)?,
            "hessian_q" => self.hessian_q = whole(key, raw)?,
            "eta" => self.eta = real(key, raw)?,
            "inner_lr" => self.inner_lr = real(key, raw)?,
            "outer_lr" => self.outer_lr = real(key, raw)?,
            "batch_size" => self.batch_size = whole(key, raw)?,
            "val_batch_size" if raw.is_empty() => self.val_batch_size = None,
            "val_batch_size" => self.val_batch_size = Some(whole(key, raw)?),
            "n_train" => self.n_train = whole(key, raw)?,
            "n_val" => self.n_val = whole(key, raw)?,
            "features" => self.features = whole(key, raw)?,
            "noise" => self.noise = real(key, raw)?,
            _ => return Err(format!("unknown setting {key:?}")),
        }
        Ok(())
    }

    /// Defaults overridden by whatever `lookup` knows (a query string or the form), then
    /// checked. `T` is also accepted as `t`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut s = Settings::default();
        for key in KEYS {
            let value = lookup(key).or_else(|| (key == "T").then(|| lookup("t")).flatten());
            if let Some(raw) = value {
                s.set(key, &raw)?;
            }
        }
        s.check()?;
        Ok(s)
    }

    /// The query string that reproduces these settings (without the leading `?`).
    pub fn to_query(&self) -> String {
        KEYS.iter()
            .filter_map(|&k| {
                let v = self.get(k);
                (!v.is_empty()).then(|| format!("{k}={v}"))
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The core's checks plus the page's size limits.
    pub fn check(&self) -> Result<(), String> {
        // The core words its messages for the CLI ("invalid argument: --eta ...").
        self.config().validate().map_err(|e| match e {
            bilevel_core::Error::InvalidArgument(msg) => msg.replace("--", ""),
            other => other.to_string(),
        })?;
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return Err(format!("epochs must be between 1 and {MAX_EPOCHS}"));
        }
        if self.features > MAX_FEATURES {
            return Err(format!("features must be at most {MAX_FEATURES} in the page (use the CLI for more)"));
        }
        for (name, rows) in [("n_train", self.n_train), ("n_val", self.n_val)] {
            if rows.saturating_mul(self.features) > MAX_ENTRIES {
                return Err(format!("{name} × features must be at most {MAX_ENTRIES} in the page (use the CLI for more)"));
            }
        }
        Ok(())
    }

    /// The core's configuration. The page always records the hypergradient vectors.
    pub fn config(&self) -> ToyConfig {
        ToyConfig {
            alg: self.alg,
            hyper: Hyper {
                t: self.t,
                q: self.hessian_q,
                eta: self.eta,
                alpha: self.inner_lr,
                beta: self.outer_lr,
                batch_size: self.batch_size,
                val_batch_size: self.val_batch_size.unwrap_or(self.batch_size),
            },
            opt: OuterOpt::Sgd { momentum: 0.0 },
            seed: self.seed,
            epochs: self.epochs,
            n_train: self.n_train,
            n_val: self.n_val,
            features: self.features,
            noise: self.noise,
            outer_penalty: 0.0,
            record_vectors: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_cli() {
        let s = from(&[]).unwrap();
        assert_eq!(s, Settings::default());
        let c = s.config();
        assert_eq!(c.hyper.val_batch_size, 64);
        assert!(c.record_vectors);
    }

    #[test]
    fn query_round_trip() {
        let s = from(&[("alg", "aid-cg"), ("t", "5"), ("eta", "0.25"), ("val_batch_size", "32")]).unwrap();
        assert_eq!(s.alg, AlgKind::AidCg);
        assert_eq!(s.t, 5);
        assert_eq!(s.val_batch_size, Some(32));
        let q = s.to_query();
        assert!(q.starts_with("alg=AID-CG&seed=0&epochs=30&T=5&"), "{q}");
        let pairs: Vec<(String, String)> = q
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        let back = Settings::from_lookup(|k| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn floats_stay_short() {
        let s = from(&[("outer_lr", "1e30"), ("eta", "0.00001"), ("noise", "0")]).unwrap();
        assert_eq!(s.get("outer_lr"), "1e30");
        assert_eq!(s.get("eta"), "1e-5");
        assert_eq!(s.get("noise"), "0");
        assert_eq!(s.get("inner_lr"), "0.5");
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(from(&[("epochs", "abc")]).unwrap_err().contains("epochs"));
        assert!(from(&[("alg", "adam")]).unwrap_err().contains("unknown algorithm"));
        assert!(from(&[("eta", "-1")]).unwrap_err().contains("eta"));
        assert!(from(&[("epochs", "0")]).unwrap_err().contains("epochs"));
        assert!(from(&[("features", "100000")]).unwrap_err().contains("features"));
        assert!(from(&[("seed", "")]).unwrap_err().contains("required"));
    }
}
