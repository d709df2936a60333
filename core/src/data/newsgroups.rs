//! 20 Newsgroups ("bydate" split) vectorised exactly as scikit-learn's
//! `fetch_20newsgroups_vectorized` does (the reference experiments' loader, SPEC §2.1):
//!
//! - every file `20news-bydate-{train,test}/<group>/<id>` is one document, headers, footers and
//!   quotes kept; documents are ordered by group name, then file name (as `load_files` lists
//!   them, before scikit-learn's shuffle, which we do not reproduce);
//! - bytes are decoded as latin-1 (byte b is the character U+00b), lowercased (Python's
//!   `str.lower`), and the tokens are Python's `(?u)\b\w\w+\b`: maximal runs of two or more word
//!   characters (alphanumeric in Unicode, or `_`);
//! - the vocabulary is fitted on the train subset only and sorted by token (code-point order),
//!   so feature j is the j-th token; raw counts, then each row scaled to unit L2 norm;
//! - labels are group indices in sorted group-name order.
//!
//! That gives 130,107 features and 1,787,565 non-zeros over the 11,314 training documents
//! (`core/tests/data.rs` checks it on the real archive). Since every latin-1 character lowercases
//! to a latin-1 character, tokenising works on bytes through two 256-entry tables.
//!
//! The archive reading (`flate2`, `tar`) and the on-disk cache of the built matrices are native
//! only; [`Newsgroups::from_documents`] and the tokenizer are pure.

use std::collections::HashMap;

use crate::backend::HostMatrix;
use crate::data::{stratified_split, Labeled};

/// The archive's training subset (its folder name).
pub const TRAIN_DIR: &str = "20news-bydate-train";
/// The archive's test subset (its folder name).
pub const TEST_DIR: &str = "20news-bydate-test";
/// The archive's file name in the shared data folder.
pub const ARCHIVE: &str = "20news-bydate.tar.gz";
/// Where to get it, for "not found" messages.
pub const NEWSGROUPS_HINT: &str = "it is in the project's shared data folder (../shared/data beside the repository, see its README; \
     originally http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz); give that folder with --data_dir or $BILEVEL_DATA_DIR";

/// Latin-1 lowercasing and word characters, as byte tables.
pub struct Tokenizer {
    lower: [u8; 256],
    word: [bool; 256],
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    /// The tables for Python's `str.lower` and `\w` on Latin-1 text.
    pub fn new() -> Self {
        let (mut lower, mut word) = ([0u8; 256], [false; 256]);
        for b in 0..=255u8 {
            let c = char::from(b);
            // Python's str.lower on latin-1: A–Z and À–Þ (except ×) move by 32; µ, ß, ÿ stay.
            let mut l = c.to_lowercase();
            lower[b as usize] = match (l.next(), l.next()) {
                (Some(lc), None) if (lc as u32) < 256 => lc as u8,
                _ => b,
            };
            word[b as usize] = c.is_alphanumeric() || c == '_';
        }
        Tokenizer { lower, word }
    }

    /// Calls `f` with each token of `doc` (latin-1 bytes), lowercased, in order.
    pub fn tokens(&self, doc: &[u8], buf: &mut Vec<u8>, mut f: impl FnMut(&[u8])) {
        buf.clear();
        for &b in doc {
            if self.word[b as usize] {
                buf.push(self.lower[b as usize]);
            } else {
                if buf.len() >= 2 {
                    f(buf);
                }
                buf.clear();
            }
        }
        if buf.len() >= 2 {
            f(buf);
        }
    }

    /// The tokens of `doc` as strings (for tests and inspection).
    pub fn token_strings(&self, doc: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        self.tokens(doc, &mut Vec::new(), |t| out.push(latin1(t)));
        out
    }
}

/// Latin-1 bytes as a string.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The vectorised corpus.
#[derive(Clone, Debug)]
pub struct Newsgroups {
    /// Group names, sorted; label k is `groups[k]`.
    pub groups: Vec<String>,
    /// Feature j's token.
    pub vocabulary: Vec<String>,
    /// The 11,314 training-subset documents (CSR, unit rows).
    pub train: Labeled,
    /// The 7,532 test-subset documents.
    pub test: Labeled,
}

/// A document: its group index and raw bytes.
pub type Document = (usize, Vec<u8>);

/// An archive's content: the sorted group names, the training and the test documents.
pub type Corpus = (Vec<String>, Vec<Document>, Vec<Document>);

/// Counts per document as sorted `(feature, count)` runs, given each token's id.
fn count_rows(docs: &[Document], tok: &Tokenizer, mut id: impl FnMut(&[u8]) -> Option<u32>) -> Vec<Vec<(u32, u32)>> {
    let (mut buf, mut ids) = (Vec::new(), Vec::new());
    docs.iter()
        .map(|(_, text)| {
            ids.clear();
            tok.tokens(text, &mut buf, |t| ids.extend(id(t)));
            ids.sort_unstable();
            let mut row: Vec<(u32, u32)> = Vec::new();
            for &j in &ids {
                match row.last_mut() {
                    Some((k, n)) if *k == j => *n += 1,
                    _ => row.push((j, 1)),
                }
            }
            row
        })
        .collect()
}

/// Raw counts to a CSR matrix with unit-norm rows (a zero row stays zero).
fn normalized_csr(rows: &[Vec<(u32, u32)>], cols: usize) -> HostMatrix {
    let nnz = rows.iter().map(Vec::len).sum();
    let (mut indptr, mut indices, mut values) = (Vec::with_capacity(rows.len() + 1), Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    indptr.push(0u32);
    for row in rows {
        let norm = row.iter().map(|&(_, n)| (n as f64) * (n as f64)).sum::<f64>().sqrt();
        for &(j, n) in row {
            indices.push(j);
            values.push(n as f64 / norm);
        }
        indptr.push(indices.len() as u32);
    }
    HostMatrix::Csr { rows: rows.len(), cols, indptr, indices, values }
}

impl Newsgroups {
    /// Vectorises the documents: the vocabulary is fitted on `train` only.
    pub fn from_documents(groups: Vec<String>, train: &[Document], test: &[Document]) -> Newsgroups {
        let tok = Tokenizer::new();
        // Fit: provisional ids in order of first appearance, then renumbered in sorted order.
        let mut vocab: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut train_rows = count_rows(train, &tok, |t| {
            let next = vocab.len() as u32;
            Some(match vocab.get(t) {
                Some(&j) => j,
                None => *vocab.entry(t.to_vec()).or_insert(next),
            })
        });
        let mut tokens: Vec<(&[u8], u32)> = vocab.iter().map(|(t, &j)| (t.as_slice(), j)).collect();
        tokens.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut rank = vec![0u32; tokens.len()];
        for (r, &(_, j)) in tokens.iter().enumerate() {
            rank[j as usize] = r as u32;
        }
        let vocabulary: Vec<String> = tokens.iter().map(|(t, _)| latin1(t)).collect();
        let renumber = |rows: &mut Vec<Vec<(u32, u32)>>| {
            for row in rows.iter_mut() {
                row.iter_mut().for_each(|e| e.0 = rank[e.0 as usize]);
                row.sort_unstable();
            }
        };
        renumber(&mut train_rows);
        let mut test_rows = count_rows(test, &tok, |t| vocab.get(t).copied());
        renumber(&mut test_rows);
        let d = vocabulary.len();
        let labels = |docs: &[Document]| docs.iter().map(|&(g, _)| g as f64).collect();
        Newsgroups {
            groups,
            vocabulary,
            train: Labeled { labels: labels(train), x: normalized_csr(&train_rows, d) },
            test: Labeled { labels: labels(test), x: normalized_csr(&test_rows, d) },
        }
    }

    /// The paper's split of the training subset: a stratified 50/50 split into training
    /// (⌊n/2⌋ = 5,657) and validation (⌈n/2⌉ = 5,657) documents, seeded (our own draw, see
    /// [`stratified_split`]). Returns `(train, validation)`.
    pub fn paper_split(&self, seed: u64) -> (Labeled, Labeled) {
        let labels: Vec<usize> = self.train.labels.iter().map(|&y| y as usize).collect();
        let n = labels.len();
        let (train, val) = stratified_split(&labels, n - n / 2, seed);
        (crate::data::select_rows(&self.train, &train), crate::data::select_rows(&self.train, &val))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{load, read_archive, Cache};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};

    use super::{Corpus, Newsgroups, NEWSGROUPS_HINT, TEST_DIR, TRAIN_DIR};
    use crate::backend::HostMatrix;
    use crate::data::{read_file, DataError, Labeled};

    /// The documents of a `.tar.gz` archive: `(groups, train, test)`, in `load_files` order.
    pub fn read_archive(gz: &[u8], name: &str) -> Result<Corpus, DataError> {
        let bad = |e: std::io::Error| DataError::invalid(name, format!("not a valid .tar.gz archive ({e})"));
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
        // (subset, group, file name, text)
        let mut files: Vec<(bool, String, String, Vec<u8>)> = Vec::new();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(bad)?.into_owned();
            let parts: Vec<String> = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let [subset, group, file] = parts.as_slice() else { continue };
            let is_train = match subset.as_str() {
                TRAIN_DIR => true,
                TEST_DIR => false,
                _ => continue,
            };
            let mut text = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut text).map_err(bad)?;
            files.push((is_train, group.clone(), file.clone(), text));
        }
        // load_files: sorted folder names, then sorted file names within each.
        files.sort_unstable_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
        let mut groups: Vec<String> = files.iter().filter(|f| f.0).map(|f| f.1.clone()).collect();
        groups.dedup();
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (is_train, group, file, text) in files {
            let Ok(g) = groups.binary_search(&group) else {
                return Err(DataError::invalid(name, format!("{TEST_DIR}/{group}/{file}: group {group:?} has no training documents")));
            };
            if is_train { &mut train } else { &mut test }.push((g, text));
        }
        if train.is_empty() || test.is_empty() {
            return Err(DataError::invalid(
                name,
                format!("no documents under {}/ (is this 20news-bydate.tar.gz?)", if train.is_empty() { TRAIN_DIR } else { TEST_DIR }),
            ));
        }
        Ok((groups, train, test))
    }

    /// What happened with the on-disk cache.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Cache {
        /// No cache folder was given.
        Off,
        /// Loaded from this file.
        Hit(PathBuf),
        /// Built from the archive and written to `path`; `stale` says why an existing cache file
        /// was not used, `error` why it could not be written.
        Built {
            /// The cache file.
            path: PathBuf,
            /// Why the existing cache file was not used, if there was one.
            stale: Option<String>,
            /// Why the cache could not be written, if it could not.
            error: Option<String>,
        },
    }

    impl Cache {
        /// "off", "hit", "written", "rebuilt" or "not written".
        pub fn status(&self) -> &'static str {
            match self {
                Cache::Off => "off",
                Cache::Hit(_) => "hit",
                Cache::Built { error: Some(_), .. } => "not written",
                Cache::Built { stale: Some(_), .. } => "rebuilt",
                Cache::Built { .. } => "written",
            }
        }
    }

    const MAGIC: &[u8; 8] = b"BL20NEWS";
    /// Bump when the vectoriser or the layout changes: older caches are then rebuilt.
    const VERSION: u32 = 1;
    const HEADER: usize = 8 + 4 + 32 + 8 + 32;

    /// Reads and vectorises the archive at `path`, through a cache file in `cache_dir` (when
    /// given) named by the archive's sha256; a cache that is corrupt or made from another archive
    /// or an older vectoriser is rebuilt, never trusted.
    pub fn load(path: &Path, cache_dir: Option<&Path>) -> Result<(Newsgroups, Cache), DataError> {
        let gz = read_file(path, "20 Newsgroups", NEWSGROUPS_HINT)?;
        let name = path.display().to_string();
        let source: [u8; 32] = Sha256::digest(&gz).into();
        let Some(dir) = cache_dir else {
            let (groups, train, test) = read_archive(&gz, &name)?;
            return Ok((Newsgroups::from_documents(groups, &train, &test), Cache::Off));
        };
        let hex: String = source[..8].iter().map(|b| format!("{b:02x}")).collect();
        let file = dir.join(format!("20news-{hex}.bin"));
        let stale = match std::fs::read(&file) {
            Ok(bytes) => match decode(&bytes, &source) {
                Ok(data) => return Ok((data, Cache::Hit(file))),
                Err(why) => Some(why),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!("cannot read: {e}")),
        };
        let (groups, train, test) = read_archive(&gz, &name)?;
        let data = Newsgroups::from_documents(groups, &train, &test);
        let error = write_cache(dir, &file, &encode(&data, &source)).err();
        Ok((data, Cache::Built { path: file, stale, error }))
    }

    /// Writes atomically (a temporary file, then a rename) and removes other 20news caches.
    fn write_cache(dir: &Path, file: &Path, bytes: &[u8]) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, file).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))?;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("20news-") && n.ends_with(".bin") && e.path() != file {
                    std::fs::remove_file(e.path()).ok();
                }
            }
        }
        Ok(())
    }

    /// Layout (little-endian): magic, version u32, the archive's sha256, payload length u64, the
    /// payload's sha256, payload. Payload: groups, vocabulary (u32 count, then u32 length + UTF-8
    /// bytes each), then train and test (rows, cols, nnz as u64; indptr, indices as u32; values
    /// as f64; labels as u32).
    fn encode(data: &Newsgroups, source: &[u8; 32]) -> Vec<u8> {
        let mut p = Vec::new();
        let strings = |p: &mut Vec<u8>, list: &[String]| {
            p.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for s in list {
                p.extend_from_slice(&(s.len() as u32).to_le_bytes());
                p.extend_from_slice(s.as_bytes());
            }
        };
        strings(&mut p, &data.groups);
        strings(&mut p, &data.vocabulary);
        for split in [&data.train, &data.test] {
            let HostMatrix::Csr { rows, cols, indptr, indices, values } = &split.x else { unreachable!("20news is CSR") };
            for n in [*rows, *cols, values.len()] {
                p.extend_from_slice(&(n as u64).to_le_bytes());
            }
            indptr.iter().chain(indices).for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
            values.iter().for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
            split.labels.iter().for_each(|&y| p.extend_from_slice(&(y as u32).to_le_bytes()));
        }
        let mut out = Vec::with_capacity(HEADER + p.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(source);
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&p));
        out.extend_from_slice(&p);
        out
    }

    /// A bounds-checked reader over the payload.
    struct Cursor<'a>(&'a [u8]);

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err("truncated payload".into());
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
        }
        fn u64(&mut self) -> Result<usize, String> {
            usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default())).map_err(|_| "size out of range".to_string())
        }
        fn len(&mut self, n: usize, width: usize) -> Result<usize, String> {
            n.checked_mul(width).filter(|&b| b <= self.0.len()).ok_or_else(|| "truncated payload".to_string())
        }
        fn u32s(&mut self, n: usize) -> Result<Vec<u32>, String> {
            let b = self.len(n, 4)?;
            Ok(self.take(b)?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        fn f64s(&mut self, n: usize) -> Result<Vec<f64>, String> {
            let b = self.len(n, 8)?;
            Ok(self.take(b)?.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
        }
        fn strings(&mut self) -> Result<Vec<String>, String> {
            let n = self.u32()? as usize;
            self.len(n, 4)?;
            (0..n)
                .map(|_| {
                    let len = self.u32()? as usize;
                    String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
                })
                .collect()
        }
    }

    /// The cached corpus, or why the file cannot be trusted.
    fn decode(bytes: &[u8], source: &[u8; 32]) -> Result<Newsgroups, String> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err("not a 20news cache file".into());
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(format!("cache format {version}, this build writes {VERSION}"));
        }
        if &bytes[12..44] != source {
            return Err("made from another archive".into());
        }
        let payload = &bytes[HEADER..];
        if u64::from_le_bytes(bytes[44..52].try_into().unwrap_or_default()) != payload.len() as u64 {
            return Err("truncated or padded".into());
        }
        if Sha256::digest(payload)[..] != bytes[52..84] {
            return Err("checksum mismatch".into());
        }
        let mut c = Cursor(payload);
        let groups = c.strings()?;
        let vocabulary = c.strings()?;
        let mut split = || -> Result<Labeled, String> {
            let (rows, cols, nnz) = (c.u64()?, c.u64()?, c.u64()?);
            let indptr = c.u32s(rows.checked_add(1).ok_or("size out of range")?)?;
            let indices = c.u32s(nnz)?;
            let values = c.f64s(nnz)?;
            let labels = c.u32s(rows)?;
            let ok = cols == vocabulary.len()
                && indptr.first() == Some(&0)
                && indptr.windows(2).all(|w| w[0] <= w[1])
                && indptr.last().map(|&e| e as usize) == Some(nnz)
                && indices.iter().all(|&j| (j as usize) < cols)
                && values.iter().all(|v| v.is_finite())
                && labels.iter().all(|&y| (y as usize) < groups.len());
            if !ok {
                return Err("inconsistent matrix".into());
            }
            Ok(Labeled { labels: labels.into_iter().map(f64::from).collect(), x: HostMatrix::Csr { rows, cols, indptr, indices, values } })
        };
        let (train, test) = (split()?, split()?);
        if !c.0.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(Newsgroups { groups, vocabulary, train, test })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn corpus() -> Newsgroups {
            let train = vec![(0, b"Hello hello world".to_vec()), (1, b"Caf\xe9 world_2".to_vec())];
            let test = vec![(1, b"hello unseen CAF\xc9".to_vec())];
            Newsgroups::from_documents(vec!["a".into(), "b".into()], &train, &test)
        }

        #[test]
        fn cache_round_trip_and_every_corruption_is_caught() {
            let data = corpus();
            let source = [7u8; 32];
            let bytes = encode(&data, &source);
            let back = decode(&bytes, &source).unwrap();
            assert_eq!((back.groups, back.vocabulary), (data.groups.clone(), data.vocabulary.clone()));
            assert_eq!(back.train.labels, data.train.labels);
            assert_eq!(back.test.x.row(0), data.test.x.row(0));
            assert_eq!(decode(&bytes, &[8u8; 32]).unwrap_err(), "made from another archive");
            assert_eq!(decode(&bytes[..bytes.len() - 1], &source).unwrap_err(), "truncated or padded");
            assert_eq!(decode(&bytes[..20], &source).unwrap_err(), "not a 20news cache file");
            for at in [HEADER, HEADER + 10, bytes.len() - 1] {
                let mut bad = bytes.clone();
                bad[at] ^= 1;
                assert_eq!(decode(&bad, &source).unwrap_err(), "checksum mismatch");
            }
            let mut old = bytes.clone();
            old[8] = 0;
            assert!(decode(&old, &source).unwrap_err().starts_with("cache format 0"));
        }

        #[test]
        fn a_tar_gz_is_read_in_load_files_order() {
            let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
            for (path, text) in [
                ("20news-bydate-train/sci.b/20", "beta two"),
                ("20news-bydate-train/sci.b/100", "beta one"),
                ("20news-bydate-train/alt.a/5", "alpha"),
                ("20news-bydate-test/sci.b/7", "beta test"),
                ("README", "not a document"),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(text.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                builder.append_data(&mut h, path, text.as_bytes()).unwrap();
            }
            let gz = builder.into_inner().unwrap().finish().unwrap();
            let (groups, train, test) = read_archive(&gz, "t.tar.gz").unwrap();
            assert_eq!(groups, vec!["alt.a", "sci.b"]);
            let texts: Vec<(usize, &[u8])> = train.iter().map(|(g, t)| (*g, t.as_slice())).collect();
            assert_eq!(texts, vec![(0, &b"alpha"[..]), (1, b"beta one"), (1, b"beta two")]);
            assert_eq!(test, vec![(1, b"beta test".to_vec())]);
            let err = read_archive(&gz[..gz.len() / 2], "t.tar.gz").unwrap_err().to_string();
            assert!(err.starts_with("t.tar.gz: not a valid .tar.gz archive ("), "{err}");
            let err = read_archive(b"plain text, not gzip", "t.tar.gz").unwrap_err().to_string();
            assert!(err.starts_with("t.tar.gz: not a valid .tar.gz archive ("), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_characters_and_lowercasing_match_python_on_latin1() {
        // From CPython 3: [i for i in range(256) if re.match(r'(?u)\w', chr(i))] and the code
        // points whose str.lower() differs.
        let mut word: Vec<u32> = (48..58).chain(65..91).chain([95]).chain(97..123).collect();
        word.extend([170, 178, 179, 181, 185, 186, 188, 189, 190]);
        word.extend((192..256).filter(|&c| c != 215 && c != 247));
        let lower: Vec<(u32, u32)> = (65..91).chain(192..223).filter(|&c| c != 215).map(|c| (c, c + 32)).collect();
        let tok = Tokenizer::new();
        assert_eq!((0..256).filter(|&b| tok.word[b as usize]).collect::<Vec<u32>>(), word);
        assert_eq!(
            (0..256u32).filter(|&b| tok.lower[b as usize] as u32 != b).map(|b| (b, tok.lower[b as usize] as u32)).collect::<Vec<_>>(),
            lower
        );
        // µ, ß and ÿ are their own lowercase (Python agrees: no single-character change).
        assert_eq!((tok.lower[0xb5], tok.lower[0xdf], tok.lower[0xff]), (0xb5, 0xdf, 0xff));
    }

    #[test]
    fn tokens_are_runs_of_two_or_more_word_characters() {
        let tok = Tokenizer::new();
        // Python: re.findall(r'(?u)\b\w\w+\b', 'a_b x é-ab 12 3 ab\xb2c ½x foo.bar'.lower())
        assert_eq!(tok.token_strings(b"a_b x \xe9-ab 12 3 ab\xb2c \xbdx foo.bar"), ["a_b", "ab", "12", "ab²c", "½x", "foo", "bar"]);
        assert_eq!(tok.token_strings(b"I a, Re: Hello-World!! __init__ x1 C++"), ["re", "hello", "world", "__init__", "x1"]);
        assert_eq!(tok.token_strings(b"CAF\xc9 \xc0\xde\xd7 stra\xdfe \xb5m"), ["café", "àþ", "straße", "µm"]);
        assert_eq!(tok.token_strings(b"tab\tnew\nline\r\n\x00nul\xa0nbsp"), ["tab", "new", "line", "nul", "nbsp"]);
        assert_eq!(tok.token_strings(b""), Vec::<String>::new());
        assert_eq!(tok.token_strings(b"ab"), ["ab"]);
    }

    #[test]
    fn vocabulary_from_train_only_sorted_counts_normalised() {
        let train = vec![(0, b"b b a9 zz".to_vec()), (1, b"zz aa bb bb bb".to_vec())];
        let test = vec![(1, b"bb new zz zz".to_vec()), (0, b"nothing known".to_vec())];
        let ng = Newsgroups::from_documents(vec!["g0".into(), "g1".into()], &train, &test);
        assert_eq!(ng.vocabulary, ["a9", "aa", "bb", "zz"]);
        assert_eq!(ng.train.labels, vec![0.0, 1.0]);
        let r = 1.0 / 2f64.sqrt();
        assert_eq!(ng.train.x.row(0), vec![(0, r), (3, r)]);
        let n = (1.0 + 9.0 + 1.0f64).sqrt();
        assert_eq!(ng.train.x.row(1), vec![(1, 1.0 / n), (2, 3.0 / n), (3, 1.0 / n)]);
        let n = 5f64.sqrt();
        assert_eq!(ng.test.x.row(0), vec![(2, 1.0 / n), (3, 2.0 / n)]);
        assert_eq!(ng.test.x.row(1), vec![]);
        assert_eq!(ng.test.x.shape(), (2, 4));
    }
}
