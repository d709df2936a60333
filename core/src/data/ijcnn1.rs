//! LIBSVM's ijcnn1 (`ijcnn1.trn.bz2`, `ijcnn1.tst.bz2`: svmlight text, 22 features, labels ±1),
//! decompressed with the `bzip2` crate (pure-Rust backend) and parsed by [`svmlight`].

use std::io::{BufReader, Read};
use std::path::Path;

use crate::data::{open_file, svmlight, DataError, Labeled};

/// ijcnn1's feature count (a split whose last features are all zero is widened to it).
pub const IJCNN1_FEATURES: usize = 22;

/// Where to get ijcnn1, for "not found" messages.
pub const IJCNN1_HINT: &str = "the LIBSVM files ijcnn1.trn.bz2 and ijcnn1.tst.bz2 are in the project's shared data folder \
     (../shared/data/ijcnn1/ beside the repository; originally https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary.html); \
     give its parent folder with --data_dir or $BILEVEL_DATA_DIR";

/// Reads a bzip2-compressed svmlight file.
pub fn read_svmlight_bz2(path: &Path, what: &str, hint: &str) -> Result<Labeled, DataError> {
    let file = open_file(path, what, hint)?;
    let name = path.display().to_string();
    // Decompress fully first, so a corrupt stream is reported as such, not as a bad line.
    let mut text = Vec::new();
    bzip2::read::MultiBzDecoder::new(BufReader::new(file))
        .read_to_end(&mut text)
        .map_err(|e| DataError::invalid(&name, format!("not a valid bzip2 file ({e})")))?;
    Ok(svmlight::parse(text.as_slice(), &name)?)
}

/// ijcnn1's training (49,990 rows) and test (91,701 rows) sets from `dir` (holding
/// `ijcnn1.trn.bz2` and `ijcnn1.tst.bz2`), both with 22 columns; labels stay ±1.
pub fn read(dir: &Path) -> Result<(Labeled, Labeled), DataError> {
    let split = |file: &str| -> Result<Labeled, DataError> {
        let path = dir.join(file);
        let data = read_svmlight_bz2(&path, "ijcnn1", IJCNN1_HINT)?;
        let (_, cols) = data.x.shape();
        if cols > IJCNN1_FEATURES {
            return Err(DataError::invalid(path.display(), format!("{cols} features, ijcnn1 has {IJCNN1_FEATURES}")));
        }
        if let Some((i, y)) = data.labels.iter().enumerate().find(|(_, &y)| y != 1.0 && y != -1.0) {
            return Err(DataError::invalid(path.display(), format!("sample {}: label {y}, ijcnn1's are ±1", i + 1)));
        }
        Ok(data.with_cols(IJCNN1_FEATURES))
    };
    Ok((split("ijcnn1.trn.bz2")?, split("ijcnn1.tst.bz2")?))
}
