//! A small pickle writer for the tests (the core's data tests and the CLI's `meta` tests, which
//! include this file by path): the few Python objects learn2learn's few-shot pickles
//! hold (dicts, lists, tuples, str, int, bool, None, and uint8 numpy arrays), written the way
//! CPython's pickler and numpy write them, so the readers are tested on the bytes Python makes
//! without needing Python:
//!
//! - Python 3, protocols 2–4: byte-exact with `pickle.dumps(obj, protocol)` (checked against
//!   CPython 3.11 + numpy 2.4; the tests hold hashes of those bytes): the same opcodes, memo numbering
//!   (every str, bytes, tuple, list, dict and global memoized on first use, a repeated global or
//!   module name fetched back with `BINGET`), batches of 1000 for `APPENDS`/`SETITEMS`, and in
//!   protocol 4 the 64 KiB frames with large byte strings written outside them. Arrays are
//!   `_reconstruct(ndarray, (0,), b'b')` + `BUILD (1, shape, dtype, False, data)`, with bytes as
//!   `_codecs.encode(latin-1 text, 'latin1')` below protocol 3.
//! - Python 2 (protocol 2): str as `SHORT_BINSTRING`/`BINSTRING` (what learn2learn's FC100 files
//!   are); the layout follows Python 2's rules but not its refcount-dependent memo, so it is
//!   checked by loading (Python 3's `encoding='latin1'` reads it), not byte for byte.
#![allow(dead_code)]

use std::collections::HashMap;

/// A Python object.
#[derive(Clone, Debug)]
pub enum Py {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
    Tuple(Vec<Py>),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    /// A C-order uint8 numpy array.
    Array {
        shape: Vec<usize>,
        data: Vec<u8>,
    },
}

pub fn s(text: &str) -> Py {
    Py::Str(text.to_string())
}

pub fn ints(v: &[i64]) -> Py {
    Py::List(v.iter().map(|&i| Py::Int(i)).collect())
}

/// `n` uint8 images of h×w×c (HWC), values `k·37 mod 256` in storage order (as the fixtures).
pub fn hwc_images(n: usize, h: usize, w: usize, c: usize) -> Py {
    Py::Array { shape: vec![n, h, w, c], data: (0..n * h * w * c).map(|k| (k * 37 % 256) as u8).collect() }
}

/// A learn2learn miniImageNet cache: `image_data` and `class_dict` (name → indices).
pub fn mini_cache(images: Py, classes: &[(&str, &[i64])]) -> Py {
    let dict = classes.iter().map(|(name, idx)| (s(name), ints(idx))).collect();
    Py::Dict(vec![(s("image_data"), images), (s("class_dict"), Py::Dict(dict))])
}

/// A learn2learn FC100 file: `data` and `labels` (one per image).
pub fn fc100(images: Py, labels: &[i64]) -> Py {
    Py::Dict(vec![(s("data"), images), (s("labels"), ints(labels))])
}

pub struct Pickler {
    proto: u8,
    python2: bool,
    /// numpy's module for `_reconstruct`: `numpy.core.multiarray` (numpy 1) or `numpy._core.multiarray` (numpy 2).
    multiarray: String,
    out: Vec<u8>,
    /// The current protocol-4 frame, if framing.
    frame: Option<Vec<u8>>,
    memo: HashMap<String, u32>,
    memo_len: u32,
}

const FRAME_TARGET: usize = 64 * 1024;

impl Pickler {
    /// `pickle.dumps(obj, protocol=proto)` in Python 3 with numpy `numpy_major` (1 or 2).
    pub fn dumps(obj: &Py, proto: u8, numpy_major: u8) -> Vec<u8> {
        Self::new(proto, false, numpy_major).dump(obj)
    }

    /// Python 2's `pickle.dump(obj, f, 2)` with numpy 1.
    pub fn dumps_python2(obj: &Py) -> Vec<u8> {
        Self::new(2, true, 1).dump(obj)
    }

    fn new(proto: u8, python2: bool, numpy_major: u8) -> Self {
        assert!((2..=4).contains(&proto));
        let multiarray = if numpy_major >= 2 { "numpy._core.multiarray" } else { "numpy.core.multiarray" }.to_string();
        Pickler { proto, python2, multiarray, out: Vec::new(), frame: None, memo: HashMap::new(), memo_len: 0 }
    }

    fn dump(mut self, obj: &Py) -> Vec<u8> {
        self.raw(&[0x80, self.proto]);
        if self.proto >= 4 {
            self.frame = Some(Vec::new());
        }
        self.save(obj);
        self.write(b".");
        self.commit_frame(true);
        self.out
    }

    /// Bytes outside any frame.
    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Bytes into the current frame (or the output when not framing).
    fn write(&mut self, b: &[u8]) {
        match &mut self.frame {
            Some(f) => f.extend_from_slice(b),
            None => self.out.extend_from_slice(b),
        }
    }

    /// Ends the frame if it reached 64 KiB (or `force`): `FRAME <len>` then its bytes (a frame
    /// under 4 bytes goes out bare).
    fn commit_frame(&mut self, force: bool) {
        let Some(f) = self.frame.take() else { return };
        if f.len() >= FRAME_TARGET || force {
            if f.len() >= 4 {
                self.out.push(0x95);
                self.out.extend_from_slice(&(f.len() as u64).to_le_bytes());
            }
            self.out.extend_from_slice(&f);
            self.frame = Some(Vec::new());
        } else {
            self.frame = Some(f);
        }
    }

    /// A length-prefixed payload; 64 KiB or more goes outside the frames in protocol 4.
    fn write_sized(&mut self, header: &[u8], payload: &[u8]) {
        if self.frame.is_some() && payload.len() >= FRAME_TARGET {
            self.commit_frame(true);
            self.raw(header);
            self.raw(payload);
        } else {
            self.write(header);
            self.write(payload);
        }
    }

    fn memoize(&mut self, key: Option<String>) {
        let i = self.memo_len;
        self.memo_len += 1;
        if let Some(k) = key {
            self.memo.insert(k, i);
        }
        if self.proto >= 4 {
            self.write(&[0x94]);
        } else if i < 256 {
            self.write(&[b'q', i as u8]);
        } else {
            let mut b = vec![b'r'];
            b.extend_from_slice(&i.to_le_bytes());
            self.write(&b);
        }
    }

    /// `BINGET` of a memoized object, if `key` is memoized.
    fn get(&mut self, key: &str) -> bool {
        let Some(&i) = self.memo.get(key) else { return false };
        if i < 256 {
            self.write(&[b'h', i as u8]);
        } else {
            let mut b = vec![b'j'];
            b.extend_from_slice(&i.to_le_bytes());
            self.write(&b);
        }
        true
    }

    fn save(&mut self, obj: &Py) {
        if self.proto >= 4 {
            self.commit_frame(false);
        }
        match obj {
            Py::None => self.write(b"N"),
            Py::Bool(b) => self.write(&[if *b { 0x88 } else { 0x89 }]),
            Py::Int(v) => self.int(*v),
            Py::Str(t) => self.str(t),
            Py::Tuple(items) => self.tuple(items),
            Py::List(items) => {
                self.write(b"]");
                self.memoize(None);
                self.batched(items.iter().map(|i| vec![i]).collect(), b'a', b'e');
            }
            Py::Dict(items) => {
                self.write(b"}");
                self.memoize(None);
                self.batched(items.iter().map(|(k, v)| vec![k, v]).collect(), b's', b'u');
            }
            Py::Array { shape, data } => self.array(shape, data),
        }
    }

    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.write(&[b'K', v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.write(&[b'M', v as u8, (v >> 8) as u8]);
        } else if (-0x8000_0000..=0x7fff_ffff).contains(&v) {
            let mut b = vec![b'J'];
            b.extend_from_slice(&(v as i32).to_le_bytes());
            self.write(&b);
        } else {
            // LONG1: the shortest little-endian two's complement.
            let full = v.to_le_bytes();
            let mut n = 8;
            while n > 1 && ((full[n - 1] == 0 && full[n - 2] & 0x80 == 0) || (full[n - 1] == 0xff && full[n - 2] & 0x80 != 0)) {
                n -= 1;
            }
            self.write(&[0x8a, n as u8]);
            self.write(&full[..n]);
        }
    }

    /// A str: memoized by content (the strs these files repeat, module names and 'latin1', are
    /// one object in Python too).
    fn str(&mut self, t: &str) {
        let key = format!("str:{t}");
        if self.get(&key) {
            return;
        }
        let b = t.as_bytes();
        if self.python2 {
            // Python 2 str (these are ASCII): SHORT_BINSTRING / BINSTRING.
            self.byte_string(b, b'U', b'T');
        } else if self.proto >= 4 && b.len() < 256 {
            self.write_sized(&[0x8c, b.len() as u8], b);
        } else {
            let mut h = vec![b'X'];
            h.extend_from_slice(&(b.len() as u32).to_le_bytes());
            self.write_sized(&h, b);
        }
        self.memoize(Some(key));
    }

    /// A length-prefixed byte string: `short` opcode with a 1-byte length below 256, else `long`
    /// with 4 bytes.
    fn byte_string(&mut self, b: &[u8], short: u8, long: u8) {
        if b.len() < 256 {
            self.write_sized(&[short, b.len() as u8], b);
        } else {
            let mut h = vec![long];
            h.extend_from_slice(&(b.len() as u32).to_le_bytes());
            self.write_sized(&h, b);
        }
    }

    /// Python 3 bytes (or a Python 2 str).
    fn bytes(&mut self, b: &[u8]) {
        if self.python2 {
            self.byte_string(b, b'U', b'T');
            self.memoize(None);
        } else if self.proto >= 3 {
            self.byte_string(b, b'C', b'B');
            self.memoize(None);
        } else {
            // _codecs.encode(b.decode('latin1'), 'latin1')
            self.global("_codecs", "encode");
            let text: String = b.iter().map(|&c| char::from(c)).collect();
            self.tuple(&[Py::Str(text), s("latin1")]);
            self.write(b"R");
            self.memoize(None);
        }
    }

    fn tuple(&mut self, items: &[Py]) {
        if items.is_empty() {
            self.write(b")");
            return;
        }
        if items.len() <= 3 {
            for i in items {
                self.save(i);
            }
            self.write(&[0x84 + items.len() as u8]);
        } else {
            self.write(b"(");
            for i in items {
                self.save(i);
            }
            self.write(b"t");
        }
        self.memoize(None);
    }

    /// Items in batches of 1000: one item with `single`, more between MARK and `many`.
    fn batched(&mut self, items: Vec<Vec<&Py>>, single: u8, many: u8) {
        for batch in items.chunks(1000) {
            if batch.len() > 1 {
                self.write(b"(");
            }
            for group in batch {
                for o in group {
                    self.save(o);
                }
            }
            self.write(&[if batch.len() > 1 { many } else { single }]);
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = format!("global:{module}.{name}");
        if self.get(&key) {
            return;
        }
        if self.proto >= 4 {
            self.str(module);
            self.str(name);
            self.write(&[0x93]);
        } else {
            self.write(format!("c{module}\n{name}\n").as_bytes());
        }
        self.memoize(Some(key));
    }

    /// numpy's `ndarray.__reduce_ex__` below protocol 5, for uint8.
    fn array(&mut self, shape: &[usize], data: &[u8]) {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        let multiarray = self.multiarray.clone();
        self.global(&multiarray, "_reconstruct");
        // (ndarray, (0,), b'b')
        self.global("numpy", "ndarray");
        self.tuple(&[Py::Int(0)]);
        self.bytes(b"b");
        self.write(&[0x87]);
        self.memoize(None);
        self.write(b"R");
        self.memoize(None);
        // (1, shape, dtype('uint8'), False, data)
        self.write(b"(");
        self.int(1);
        self.tuple(&shape.iter().map(|&d| Py::Int(d as i64)).collect::<Vec<_>>());
        self.dtype_u1();
        self.save(&Py::Bool(false));
        self.bytes(data);
        self.write(b"t");
        self.memoize(None);
        self.write(b"b");
    }

    /// `numpy.dtype('u1', False, True)` + BUILD `(3, '|', None, None, None, -1, -1, 0)`
    /// (numpy 1 on Python 2 passes the flags as ints 0 and 1).
    fn dtype_u1(&mut self) {
        if self.get("dtype:u1") {
            return;
        }
        self.global("numpy", "dtype");
        let (align, copy) = if self.python2 { (Py::Int(0), Py::Int(1)) } else { (Py::Bool(false), Py::Bool(true)) };
        self.tuple(&[s("u1"), align, copy]);
        self.write(b"R");
        self.memoize(Some("dtype:u1".into()));
        self.write(b"(");
        for v in [Py::Int(3), s("|"), Py::None, Py::None, Py::None, Py::Int(-1), Py::Int(-1), Py::Int(0)] {
            self.save(&v);
        }
        self.write(b"t");
        self.memoize(None);
        self.write(b"b");
    }
}
