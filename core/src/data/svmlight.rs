//! svmlight / LIBSVM text: `label index:value index:value ... [# comment]`, one sample a line.
//! Indices are 1-based as LIBSVM writes them, unless a 0 index appears anywhere (then 0-based),
//! the same "auto" rule scikit-learn applies. Every malformed line is reported with its number.

use std::io::BufRead;

use crate::backend::HostMatrix;

/// A parsed file: labels and a CSR feature matrix with `cols` = largest index + 1.
#[derive(Clone, Debug)]
pub struct Svmlight {
    /// One label per line, as written.
    pub labels: Vec<f64>,
    /// The features, one row per line (CSR).
    pub x: HostMatrix,
}

/// A parse failure, with where it happened.
#[derive(Debug, thiserror::Error)]
#[error("{name}:{line}: {msg}")]
pub struct ParseError {
    /// The input's name (usually the file path).
    pub name: String,
    /// The line number, 1-based.
    pub line: usize,
    /// What is wrong with the line.
    pub msg: String,
}

/// Parses svmlight text; `name` is used in error messages (usually the file path).
pub fn parse(reader: impl BufRead, name: &str) -> Result<Svmlight, ParseError> {
    let err = |line: usize, msg: String| ParseError { name: name.to_string(), line, msg };
    let (mut labels, mut indptr, mut indices, mut values) = (Vec::new(), vec![0u32], Vec::<u32>::new(), Vec::new());
    let mut saw_zero = false;
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| err(lineno, format!("cannot read: {e}")))?;
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let mut fields = content.split_whitespace();
        let label_text = fields.next().unwrap_or_default();
        let label: f64 = label_text.parse().map_err(|_| err(lineno, format!("label {label_text:?} is not a number")))?;
        if !label.is_finite() {
            return Err(err(lineno, format!("label {label_text:?} is not finite")));
        }
        let mut last: Option<u32> = None;
        for field in fields {
            let (idx, val) = field.split_once(':').ok_or_else(|| err(lineno, format!("expected index:value, got {field:?}")))?;
            if idx == "qid" {
                continue;
            }
            let idx: u32 = idx.parse().map_err(|_| err(lineno, format!("feature index {idx:?} is not a non-negative integer")))?;
            let val: f64 = val.parse().map_err(|_| err(lineno, format!("feature value {val:?} is not a number")))?;
            if !val.is_finite() {
                return Err(err(lineno, format!("feature {idx} has a non-finite value {val}")));
            }
            if last.is_some_and(|l| idx <= l) {
                return Err(err(lineno, format!("feature indices must increase (index {idx} after {})", last.unwrap_or(0))));
            }
            last = Some(idx);
            saw_zero |= idx == 0;
            indices.push(idx);
            values.push(val);
        }
        labels.push(label);
        indptr.push(indices.len() as u32);
    }
    if labels.is_empty() {
        return Err(err(0, "no samples".into()));
    }
    if !saw_zero {
        indices.iter_mut().for_each(|j| *j -= 1);
    }
    let cols = indices.iter().map(|&j| j as usize + 1).max().unwrap_or(0);
    Ok(Svmlight { x: HostMatrix::Csr { rows: labels.len(), cols, indptr, indices, values }, labels })
}

impl Svmlight {
    /// Widens the feature count to `cols` (a file whose last features are all zero).
    pub fn with_cols(mut self, cols: usize) -> Self {
        if let HostMatrix::Csr { cols: c, .. } = &mut self.x {
            *c = (*c).max(cols);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Svmlight, ParseError> {
        parse(s.as_bytes(), "mem")
    }

    #[test]
    fn one_based_indices_comments_and_blank_lines() {
        let s = parse_str("# header\n+1 1:0.5 3:2 # trailing\n\n-1.0 2:-1e-3\n").unwrap();
        assert_eq!(s.labels, vec![1.0, -1.0]);
        assert_eq!(s.x.shape(), (2, 3));
        assert_eq!(s.x.row(0), vec![(0, 0.5), (2, 2.0)]);
        assert_eq!(s.x.row(1), vec![(1, -1e-3)]);
    }

    #[test]
    fn a_zero_index_makes_the_file_zero_based() {
        let s = parse_str("0 0:1 4:2\n1 2:3\n").unwrap();
        assert_eq!(s.x.shape(), (2, 5));
        assert_eq!(s.x.row(0), vec![(0, 1.0), (4, 2.0)]);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let cases = [
            ("1 1:2\nx 1:2\n", "mem:2: label \"x\" is not a number"),
            ("1 1:2\n1 12\n", "mem:2: expected index:value, got \"12\""),
            ("1 -3:2\n", "mem:1: feature index \"-3\" is not a non-negative integer"),
            ("1 1:inf\n", "mem:1: feature 1 has a non-finite value inf"),
            ("1 2:1 2:1\n", "mem:1: feature indices must increase (index 2 after 2)"),
            ("\n# nothing\n", "mem:0: no samples"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_str(text).unwrap_err().to_string(), want);
        }
    }
}
