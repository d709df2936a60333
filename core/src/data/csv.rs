//! Comma-separated values: one sample a line, numeric features, one label column. The first
//! line is a header when any of its fields is not a number (then the label column can be named);
//! blank lines and lines starting with `#` are skipped. Every malformed line is reported with
//! its number, as the svmlight reader does.

use std::io::BufRead;

use super::svmlight::ParseError;
use super::Labeled;
use crate::backend::HostMatrix;

/// Which column holds the label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelColumn {
    /// The last column (the default: most exported data sets put the target last).
    Last,
    /// The column at this 0-based position.
    Index(usize),
    /// The column with this header name (the file must have a header).
    Name(String),
}

/// A parsed CSV file: its rows as a [`Labeled`] split (features stored as
/// [`HostMatrix::by_density`] chooses) and the header's feature names, if it had one.
#[derive(Clone, Debug)]
pub struct Csv {
    /// Features and labels.
    pub data: Labeled,
    /// The feature columns' names (without the label's), when the file has a header.
    pub feature_names: Option<Vec<String>>,
}

/// Parses CSV text; `name` is used in error messages (usually the file path).
///
/// ```
/// use bilevel_core::data::csv::{parse, LabelColumn};
/// let text = "height,weight,class\n1.5,60,0\n1.8,85,1\n";
/// let csv = parse(text.as_bytes(), "people.csv", &LabelColumn::Name("class".into())).unwrap();
/// assert_eq!(csv.data.labels, vec![0.0, 1.0]);
/// assert_eq!(csv.data.x.shape(), (2, 2));
/// assert_eq!(csv.feature_names.unwrap(), vec!["height", "weight"]);
/// ```
pub fn parse(reader: impl BufRead, name: &str, label: &LabelColumn) -> Result<Csv, ParseError> {
    let err = |line: usize, msg: String| ParseError { name: name.to_string(), line, msg };
    let (mut labels, mut values) = (Vec::new(), Vec::new());
    let mut width: Option<usize> = None;
    let mut label_at: Option<usize> = None;
    let mut header: Option<Vec<String>> = None;
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| err(lineno, format!("cannot read: {e}")))?;
        let content = line.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = content.split(',').map(|f| f.trim().trim_matches('"')).collect();
        if width.is_none() && labels.is_empty() && header.is_none() && fields.iter().any(|f| f.parse::<f64>().is_err()) {
            header = Some(fields.iter().map(|f| f.to_string()).collect());
            width = Some(fields.len());
            continue;
        }
        let w = *width.get_or_insert(fields.len());
        if fields.len() != w {
            return Err(err(lineno, format!("{} fields, but the first row has {w}", fields.len())));
        }
        if w < 2 {
            return Err(err(lineno, "need at least one feature and a label".into()));
        }
        let at = match label_at {
            Some(at) => at,
            None => {
                let at = match label {
                    LabelColumn::Last => w - 1,
                    LabelColumn::Index(k) if *k < w => *k,
                    LabelColumn::Index(k) => return Err(err(lineno, format!("label column {k} is past the last column ({})", w - 1))),
                    LabelColumn::Name(n) => match &header {
                        Some(h) => h.iter().position(|c| c == n).ok_or_else(|| err(1, format!("no column named {n:?} in the header")))?,
                        None => return Err(err(1, format!("the label column is named {n:?} but the file has no header"))),
                    },
                };
                *label_at.insert(at)
            }
        };
        for (j, field) in fields.iter().enumerate() {
            let v: f64 = field.parse().map_err(|_| err(lineno, format!("column {}: {field:?} is not a number", j + 1)))?;
            if !v.is_finite() {
                return Err(err(lineno, format!("column {}: {field:?} is not finite", j + 1)));
            }
            if j == at {
                labels.push(v);
            } else {
                values.push(v);
            }
        }
    }
    if labels.is_empty() {
        return Err(err(0, "no samples".into()));
    }
    let cols = width.unwrap_or(1) - 1;
    let feature_names = header.map(|h| h.into_iter().enumerate().filter(|(j, _)| Some(*j) != label_at).map(|(_, n)| n).collect());
    let x = HostMatrix::Dense { rows: labels.len(), cols, data: values }.by_density();
    Ok(Csv { data: Labeled { labels, x }, feature_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str, label: LabelColumn) -> Result<Csv, ParseError> {
        parse(s.as_bytes(), "mem.csv", &label)
    }

    #[test]
    fn reads_rows_without_a_header_label_last() {
        let csv = parse_str("1,2,0\n3,4,1\n\n# a comment\n5,6,1\n", LabelColumn::Last).unwrap();
        assert_eq!(csv.data.labels, vec![0.0, 1.0, 1.0]);
        assert_eq!(csv.data.x.row(2), vec![(0, 5.0), (1, 6.0)]);
        assert!(csv.feature_names.is_none());
    }

    #[test]
    fn the_label_column_by_index_or_name() {
        let by_index = parse_str("7,1,2\n8,3,4\n", LabelColumn::Index(0)).unwrap();
        assert_eq!(by_index.data.labels, vec![7.0, 8.0]);
        assert_eq!(by_index.data.x.row(1), vec![(0, 3.0), (1, 4.0)]);
        let by_name = parse_str("a,y,b\n1,5,2\n", LabelColumn::Name("y".into())).unwrap();
        assert_eq!(by_name.data.labels, vec![5.0]);
        assert_eq!(by_name.feature_names.unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = |s: &str, l| parse_str(s, l).unwrap_err().to_string();
        assert_eq!(e("1,2,0\n3,0\n", LabelColumn::Last), "mem.csv:2: 2 fields, but the first row has 3");
        assert_eq!(e("1,2,0\n3,x,0\n", LabelColumn::Last), "mem.csv:2: column 2: \"x\" is not a number");
        assert_eq!(e("1,inf,0\n", LabelColumn::Last), "mem.csv:1: column 2: \"inf\" is not finite");
        assert_eq!(e("a,b\n", LabelColumn::Last), "mem.csv:0: no samples");
        assert_eq!(e("1,2\n", LabelColumn::Name("y".into())), "mem.csv:1: the label column is named \"y\" but the file has no header");
        assert_eq!(e("a,b\n1,2\n", LabelColumn::Name("y".into())), "mem.csv:1: no column named \"y\" in the header");
        assert_eq!(e("1,2\n", LabelColumn::Index(5)), "mem.csv:1: label column 5 is past the last column (1)");
        assert_eq!(e("1\n", LabelColumn::Last), "mem.csv:1: need at least one feature and a label");
    }
}
