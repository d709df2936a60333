//! Data set readers. Parsing is pure (over bytes or `BufRead`, so it builds for wasm32 too);
//! reading the compressed archives (`flate2`, `tar`, `bzip2`) and the on-disk caches is native
//! only. Every failure is a [`DataError`] with a one-line message naming the file.
//!
//! - [`svmlight`]: LIBSVM text (ijcnn1 and the user's own files); [`csv`]: comma-separated
//!   values (a user's own table); [`ijcnn1`]: the bzip2 files.
//! - [`idx`]: the IDX format (MNIST), and the hyper-cleaning split.
//! - [`newsgroups`]: 20 Newsgroups from the raw "bydate" archive, vectorised as scikit-learn's
//!   `fetch_20newsgroups_vectorized` does, with an on-disk cache of the built matrices.
//! - [`episodes`]: few-shot image sets, class splits and N-way K-shot episodes; [`omniglot`]:
//!   the Omniglot zips; [`pickle`]: learn2learn's miniImageNet and FC100 pickles.

pub mod csv;
pub mod episodes;
pub mod idx;
#[cfg(not(target_arch = "wasm32"))]
pub mod ijcnn1;
pub mod newsgroups;
#[cfg(not(target_arch = "wasm32"))]
pub mod omniglot;
#[cfg(not(target_arch = "wasm32"))]
pub mod pickle;
pub mod svmlight;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One split of a data set: a design matrix and one label per row (the type the svmlight reader
/// returns and `ProblemKind::from_svmlight` takes).
pub type Labeled = svmlight::Svmlight;

/// A data set that cannot be read: which file, and what is wrong with it (one line).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file (or folder) is not there; `hint` says where to get it.
    #[error("{what} not found at {path}: {hint}")]
    Missing {
        /// What was looked for ("MNIST", "20 Newsgroups").
        what: String,
        /// Where it was looked for.
        path: String,
        /// Where to get it.
        hint: String,
    },
    /// The file is there but unreadable, truncated or malformed.
    #[error("{name}: {msg}")]
    Invalid {
        /// The file (or data set) at fault.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A malformed svmlight line.
    #[error(transparent)]
    Svmlight(#[from] svmlight::ParseError),
}

impl DataError {
    pub(crate) fn invalid(name: impl std::fmt::Display, msg: impl Into<String>) -> Self {
        DataError::Invalid { name: name.to_string(), msg: msg.into() }
    }
}

/// Reads a whole file; a missing file is [`DataError::Missing`] with `what` and `hint`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_file(path: &std::path::Path, what: &str, hint: &str) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing { what: what.into(), path: path.display().to_string(), hint: hint.into() },
        _ => DataError::invalid(path.display(), format!("cannot read: {e}")),
    })
}

/// Opens a file; a missing file is [`DataError::Missing`] with `what` and `hint`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn open_file(path: &std::path::Path, what: &str, hint: &str) -> Result<std::fs::File, DataError> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing { what: what.into(), path: path.display().to_string(), hint: hint.into() },
        _ => DataError::invalid(path.display(), format!("cannot open: {e}")),
    })
}

/// The rows `rows` of `data`, in that order.
pub fn select_rows(data: &Labeled, rows: &[usize]) -> Labeled {
    Labeled { labels: rows.iter().map(|&i| data.labels[i]).collect(), x: data.x.select_rows(rows) }
}

/// A seeded stratified split of `0..labels.len()` into `(first, second)` with `second.len() ==
/// n_second`: each class gives `⌊n_c·n_second/n⌋` rows to the second part and the rows left over
/// go to the classes with the largest remainders (ties drawn at random), as scikit-learn
/// allocates them; which rows of a class go where is drawn at random, and each part comes back
/// in a random order (scikit-learn's `train_test_split` also returns shuffled rows). The draws
/// are our own (ChaCha8 from `seed`): numpy's exact split cannot be reproduced.
pub fn stratified_split(labels: &[usize], n_second: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n = labels.len();
    let n_second = n_second.min(n);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        members[y].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Quotas: floors, then the leftover rows by largest remainder (random order among ties).
    let mut quota: Vec<usize> = members.iter().map(|m| m.len() * n_second / n.max(1)).collect();
    let mut order: Vec<usize> = (0..classes).collect();
    order.shuffle(&mut rng);
    let remainder = |c: usize| (members[c].len() * n_second) % n.max(1);
    order.sort_by_key(|&c| std::cmp::Reverse(remainder(c)));
    let mut left = n_second - quota.iter().sum::<usize>();
    for &c in order.iter().cycle().take(classes * 2) {
        if left == 0 {
            break;
        }
        if quota[c] < members[c].len() {
            quota[c] += 1;
            left -= 1;
        }
    }
    let (mut first, mut second) = (Vec::with_capacity(n - n_second), Vec::with_capacity(n_second));
    for (c, m) in members.iter_mut().enumerate() {
        m.shuffle(&mut rng);
        second.extend_from_slice(&m[..quota[c]]);
        first.extend_from_slice(&m[quota[c]..]);
    }
    first.shuffle(&mut rng);
    second.shuffle(&mut rng);
    (first, second)
}

/// How many rows carry each class `0..classes`.
pub fn class_counts(labels: &[usize], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &y in labels {
        counts[y] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::HostMatrix;

    #[test]
    fn stratified_split_keeps_class_proportions_and_is_seeded() {
        // 3 classes of 7, 5 and 4 rows: 16 rows, 8 to each part.
        let labels: Vec<usize> = [vec![0; 7], vec![1; 5], vec![2; 4]].concat();
        let (a, b) = stratified_split(&labels, 8, 3);
        assert_eq!((a.len(), b.len()), (8, 8));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
        let counts = |rows: &[usize]| class_counts(&rows.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 3);
        let (ca, cb) = (counts(&a), counts(&b));
        assert_eq!(cb[2], 2);
        for c in 0..3 {
            assert!(ca[c].abs_diff(cb[c]) <= 1, "{ca:?} {cb:?}");
        }
        assert_eq!(stratified_split(&labels, 8, 3), (a, b));
        assert_ne!(stratified_split(&labels, 8, 4).1, stratified_split(&labels, 8, 3).1);
    }

    #[test]
    fn select_rows_of_dense_and_sparse_matrices() {
        let dense = Labeled { labels: vec![0.0, 1.0, 2.0], x: HostMatrix::Dense { rows: 3, cols: 2, data: vec![1., 2., 3., 4., 5., 6.] } };
        let s = select_rows(&dense, &[2, 0]);
        assert_eq!(s.labels, vec![2.0, 0.0]);
        assert_eq!(s.x.row(0), vec![(0, 5.0), (1, 6.0)]);
        let csr = Labeled {
            labels: vec![0.0, 1.0, 2.0],
            x: HostMatrix::Csr { rows: 3, cols: 4, indptr: vec![0, 1, 1, 3], indices: vec![3, 0, 2], values: vec![1., 2., 3.] },
        };
        let s = select_rows(&csr, &[2, 1]);
        assert_eq!(s.x.shape(), (2, 4));
        assert_eq!(s.x.row(0), vec![(0, 2.0), (2, 3.0)]);
        assert_eq!(s.x.row(1), vec![]);
    }
}
