//! Data set readers (pure parsing over `BufRead`, so they work natively and in wasm).

pub mod svmlight;
