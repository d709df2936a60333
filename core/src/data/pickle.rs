//! learn2learn's few-shot pickles: miniImageNet (`mini-imagenet-cache-{train,validation,test}.pkl`)
//! and FC100 (`FC100_{train,val,test}.pickle`), read by a small pickle machine.
//!
//! `serde-pickle` cannot build numpy arrays (they are pickled as calls to
//! `numpy.core.multiarray._reconstruct` followed by `BUILD` with the raw bytes), so this reads
//! the pickle opcodes itself: protocols 0 to 5 with in-band data, the built-in types (None,
//! bool, int, float, str, bytes, tuple, list, dict) and exactly these calls:
//!
//! - `numpy[._]core.multiarray._reconstruct` + `BUILD (version, shape, dtype, fortran, data)`,
//!   `numpy[._]core.numeric._frombuffer` (protocol 5) and `numpy[._]core.multiarray.scalar`;
//! - `numpy.dtype` + `BUILD` (only the byte order is used) for bool, int, uint and float types;
//! - `_codecs.encode(text, "latin1")`, which is how Python 3 pickles `bytes` in protocols 0–2.
//!
//! Python 2 byte strings (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) are read as bytes and taken
//! as Latin-1 text where text is needed (dict keys, dtype names), as `encoding='latin1'` in
//! learn2learn's FC100 reader does. Anything else (other classes, out-of-band buffers,
//! persistent ids, extension codes) is an error naming the opcode or the object.
//!
//! Objects are reference-counted so that the memo shares them as Python does (a memoized list
//! that is appended to later is the same list), and large byte strings are never copied.

use std::cell::RefCell;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use super::episodes::ImageSet;
use super::DataError;

/// A value on the pickle machine's stack.
#[derive(Clone, Debug)]
pub enum Value {
    /// Python's `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` (up to 64 bits).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// A `bytes` (or a Python 2 byte string).
    Bytes(Rc<Vec<u8>>),
    /// A `tuple`.
    Tuple(Rc<Vec<Value>>),
    /// A `list`, shared as the memo shares it.
    List(Rc<RefCell<Vec<Value>>>),
    /// Key/value pairs in insertion order (Python dicts keep it).
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A module-level name (`module`, `name`) not called yet.
    Global(Rc<(String, String)>),
    /// A `numpy.dtype` (its byte order set by a later `BUILD`).
    Dtype(Rc<RefCell<Dtype>>),
    /// A numpy array (its contents set by a later `BUILD`).
    Array(Rc<RefCell<NdArray>>),
}

/// A numpy scalar type: kind (`b` bool, `i` int, `u` unsigned, `f` float), size in bytes, and
/// byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtype {
    /// `b`, `i`, `u` or `f`, as an ASCII byte.
    pub kind: u8,
    /// Bytes per element.
    pub size: usize,
    /// Most significant byte first.
    pub big_endian: bool,
}

/// A numpy array: C-order `data` of `shape`, elements of `dtype`.
#[derive(Clone, Debug)]
pub struct NdArray {
    /// The element type.
    pub dtype: Dtype,
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements' bytes (shared, never copied).
    pub data: Rc<Vec<u8>>,
}

impl Dtype {
    /// From a numpy type string: `u1`, `<i8`, `>f4`, `|b1`, `uint8`, ...
    fn parse(descr: &str) -> Result<Dtype, String> {
        let (order, code) = match descr.as_bytes().first() {
            Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
            Some(b'>') => (true, &descr[1..]),
            _ => (false, descr),
        };
        let named = match code {
            "bool" => Some((b'b', 1)),
            "uint8" => Some((b'u', 1)),
            "int8" => Some((b'i', 1)),
            "int16" | "uint16" | "int32" | "uint32" | "int64" | "uint64" | "float32" | "float64" => {
                let bits: usize = code.trim_start_matches(|c: char| c.is_ascii_alphabetic()).parse().unwrap_or(0);
                Some((code.as_bytes()[0], bits / 8))
            }
            _ => None,
        };
        let (kind, size) = match named {
            Some(k) => k,
            None => {
                let kind = code.as_bytes().first().copied().unwrap_or(b'?');
                (kind, code.get(1..).and_then(|s| s.parse().ok()).unwrap_or(0))
            }
        };
        let ok = matches!((kind, size), (b'b', 1) | (b'i' | b'u', 1 | 2 | 4 | 8) | (b'f', 4 | 8));
        if !ok {
            return Err(format!("unsupported numpy dtype {descr:?} (only bool, int, uint and float)"));
        }
        Ok(Dtype { kind, size, big_endian: order })
    }

    /// Element `i` of `data` as f64 (integers up to 2^53 exactly).
    fn get(&self, data: &[u8], i: usize) -> f64 {
        let mut b = [0u8; 8];
        b[..self.size].copy_from_slice(&data[i * self.size..(i + 1) * self.size]);
        if self.big_endian {
            b[..self.size].reverse();
        }
        // Sign-extend the integers.
        let signed = |bits: u32| ((u64::from_le_bytes(b) << (64 - bits)) as i64 >> (64 - bits)) as f64;
        match (self.kind, self.size) {
            (b'f', 4) => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            (b'f', _) => f64::from_le_bytes(b),
            (b'i', n) => signed(n as u32 * 8),
            _ => u64::from_le_bytes(b) as f64,
        }
    }
}

impl NdArray {
    /// Elements: the product of the dimensions.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "numpy dtype",
            Value::Array(_) => "numpy array",
        }
    }

    /// Text: a str, or a Python 2 byte string read as Latin-1.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => Some(b.iter().map(|&c| char::from(c)).collect()),
            _ => None,
        }
    }

    /// Raw bytes: bytes, or a str of Latin-1 characters (how `encoding='latin1'` reads Python 2
    /// byte strings).
    fn as_bytes(&self) -> Option<Rc<Vec<u8>>> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            Value::Str(s) => s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect::<Option<Vec<u8>>>().map(Rc::new),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.to_vec()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// The value under text key `key` of a dict (str or Python 2 byte-string keys).
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d.borrow().iter().find(|(k, _)| k.as_text().as_deref() == Some(key)).map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// Integers: a list or tuple of ints, or an integer numpy array.
    pub fn as_ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Array(a) => {
                let a = a.borrow();
                matches!(a.dtype.kind, b'i' | b'u' | b'b').then(|| (0..a.len()).map(|i| a.dtype.get(&a.data, i) as i64).collect())
            }
            _ => self.items()?.iter().map(Value::as_int).collect(),
        }
    }
}

/// The pickle machine: the input, the stack (with its marks) and the memo.
struct Machine<R> {
    input: R,
    /// Bytes read so far (for error messages) and bytes left in the file (to reject a length
    /// field that points past the end before allocating for it).
    pos: u64,
    left: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Value>,
}

type Res<T> = Result<T, String>;

impl<R: Read> Machine<R> {
    fn bytes(&mut self, n: u64) -> Res<Vec<u8>> {
        if n > self.left {
            return Err(format!("truncated: {n} bytes wanted at byte {}, {} left", self.pos, self.left));
        }
        let mut v = vec![0u8; n as usize];
        self.input.read_exact(&mut v).map_err(|e| format!("cannot read at byte {}: {e}", self.pos))?;
        self.pos += n;
        self.left -= n;
        Ok(v)
    }

    fn byte(&mut self) -> Res<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn uint(&mut self, n: usize) -> Res<u64> {
        let b = self.bytes(n as u64)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A newline-terminated line (protocol 0 arguments), without the newline.
    fn line(&mut self) -> Res<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.byte()? {
                b'\n' => return Ok(out),
                c => out.push(c),
            }
        }
    }

    fn line_text(&mut self) -> Res<String> {
        String::from_utf8(self.line()?).map_err(|_| format!("non-UTF-8 text before byte {}", self.pos))
    }

    fn pop(&mut self) -> Res<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(format!("stack underflow (at a mark) before byte {}", self.pos));
        }
        self.stack.pop().ok_or_else(|| format!("stack underflow before byte {}", self.pos))
    }

    fn top(&mut self) -> Res<&mut Value> {
        let pos = self.pos;
        self.stack.last_mut().ok_or_else(|| format!("empty stack before byte {pos}"))
    }

    /// Everything above the last mark, which is removed.
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| format!("no mark before byte {}", self.pos))?;
        Ok(self.stack.split_off(m))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn memo_get(&self, k: u64) -> Res<Value> {
        self.memo.get(&k).cloned().ok_or_else(|| format!("memo key {k} not set before byte {}", self.pos))
    }

    fn memo_put(&mut self, k: u64) -> Res<()> {
        let v = self.stack.last().cloned().ok_or_else(|| format!("empty stack before byte {}", self.pos))?;
        self.memo.insert(k, v);
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Res<()> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(format!("APPEND to a {}", other.type_name())),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    // Setting an existing key replaces its value, as in Python.
                    match d.iter_mut().find(|(old, _)| same_key(old, &k)) {
                        Some(slot) => slot.1 = v,
                        None => d.push((k, v)),
                    }
                }
                Ok(())
            }
            other => Err(format!("SETITEM on a {}", other.type_name())),
        }
    }

    /// Runs to STOP and returns the result.
    fn run(&mut self) -> Res<Value> {
        loop {
            let at = self.pos;
            let op = self.byte().map_err(|e| format!("{e} (no STOP opcode)"))?;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} (at most 5 is known)"));
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: a length hint only
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'I' => {
                    let t = self.line_text()?;
                    self.push(match t.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(t.trim().parse().map_err(|_| format!("bad INT {t:?} at byte {at}"))?),
                    });
                }
                b'L' => {
                    let t = self.line_text()?;
                    let v = t.trim().trim_end_matches('L').parse().map_err(|_| format!("LONG {t:?} at byte {at} does not fit 64 bits"))?;
                    self.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.uint(1)? } else { self.uint(4)? };
                    if n > 8 {
                        return Err(format!("LONG of {n} bytes at byte {at} does not fit 64 bits"));
                    }
                    let b = self.bytes(n)?;
                    let v = if n == 0 {
                        0
                    } else {
                        let mut w = [if b[n as usize - 1] & 0x80 != 0 { 0xff } else { 0 }; 8];
                        w[..n as usize].copy_from_slice(&b);
                        i64::from_le_bytes(w)
                    };
                    self.push(Value::Int(v));
                }
                b'F' => {
                    let t = self.line_text()?;
                    self.push(Value::Float(t.trim().parse().map_err(|_| format!("bad FLOAT {t:?} at byte {at}"))?));
                }
                b'G' => {
                    let b = self.bytes(8)?;
                    self.push(Value::Float(f64::from_be_bytes(b.try_into().unwrap_or_default())));
                }
                // Byte strings: Python 2 str (STRING, BINSTRING, SHORT_BINSTRING) and Python 3
                // bytes (BINBYTES, SHORT_BINBYTES, BINBYTES8) and bytearray (BYTEARRAY8).
                b'S' => {
                    let l = self.line()?;
                    let b = unquote(&l).ok_or_else(|| format!("bad STRING at byte {at}"))?;
                    self.push(Value::Bytes(Rc::new(b)));
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'U' | b'C' => self.uint(1)?,
                        b'T' | b'B' => self.uint(4)?,
                        _ => self.uint(8)?,
                    };
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(Rc::new(b)));
                }
                b'V' => {
                    let l = self.line()?;
                    let s = raw_unicode_escape(&l).ok_or_else(|| format!("bad UNICODE at byte {at}"))?;
                    self.push(Value::Str(s.into()));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => self.uint(1)?,
                        b'X' => self.uint(4)?,
                        _ => self.uint(8)?,
                    };
                    let b = self.bytes(n)?;
                    let s = String::from_utf8(b).map_err(|_| format!("invalid UTF-8 in a str at byte {at}"))?;
                    self.push(Value::Str(s.into()));
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::default()));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'p' => {
                    let t = self.line_text()?;
                    self.memo_put(t.trim().parse().map_err(|_| format!("bad PUT {t:?} at byte {at}"))?)?;
                }
                b'q' => {
                    let k = self.uint(1)?;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let t = self.line_text()?;
                    let v = self.memo_get(t.trim().parse().map_err(|_| format!("bad GET {t:?} at byte {at}"))?)?;
                    self.push(v);
                }
                b'h' | b'j' => {
                    let k = if op == b'h' { self.uint(1)? } else { self.uint(4)? };
                    let v = self.memo_get(k)?;
                    self.push(v);
                }
                b'c' => {
                    let module = self.line_text()?;
                    let name = self.line_text()?;
                    self.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(Rc::new((m.to_string(), n.to_string())))),
                        _ => return Err(format!("STACK_GLOBAL without two str at byte {at}")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = call(&callable, &args)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?.clone();
                    build(&obj, &state)?;
                }
                _ => return Err(format!("unsupported pickle opcode 0x{op:02x} ({:?}) at byte {at}", char::from(op))),
            }
        }
    }
}

/// Whether two dict keys are the same Python value (for the key types these files use).
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => false,
    }
}

/// Python 2's `repr` of a byte string (protocol 0 `STRING`): quoted, with backslash escapes.
fn unquote(line: &[u8]) -> Option<Vec<u8>> {
    let q = *line.first()?;
    if !(q == b'\'' || q == b'"') || line.len() < 2 || *line.last()? != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let c = *body.get(i + 1)?;
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' | b'\'' | b'"' => out.push(c),
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Protocol 0 `UNICODE`: Latin-1 bytes with `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let digits = match (line[i], line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => {
                out.push(char::from(line[i]));
                i += 1;
                continue;
            }
        };
        let h = std::str::from_utf8(line.get(i + 2..i + 2 + digits)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
        i += 2 + digits;
    }
    Some(out)
}

fn is_numpy(module: &str, sub: &str) -> bool {
    module == format!("numpy.core.{sub}") || module == format!("numpy._core.{sub}")
}

/// `callable(*args)` for the few callables these files use.
fn call(callable: &Value, args: &Value) -> Res<Value> {
    let Value::Global(g) = callable else {
        return Err(format!("REDUCE calls a {}", callable.type_name()));
    };
    let (module, name) = (g.0.as_str(), g.1.as_str());
    let args = match args {
        Value::Tuple(t) => t.clone(),
        other => return Err(format!("{module}.{name} called with a {} instead of a tuple", other.type_name())),
    };
    let arg = |i: usize| args.get(i).cloned().ok_or_else(|| format!("{module}.{name} called with {} arguments", args.len()));
    let dtype_of = |v: Value| -> Res<Dtype> {
        match v {
            Value::Dtype(d) => Ok(*d.borrow()),
            other => Err(format!("{module}.{name}: expected a dtype, got a {}", other.type_name())),
        }
    };
    match (module, name) {
        ("numpy", "dtype") => {
            let descr = arg(0)?.as_text().ok_or("numpy.dtype of a non-string")?;
            Ok(Value::Dtype(Rc::new(RefCell::new(Dtype::parse(&descr)?))))
        }
        (m, "_reconstruct") if is_numpy(m, "multiarray") => {
            // An empty array of class `args[0]`, filled in by BUILD.
            match arg(0)? {
                Value::Global(c) if c.0 == "numpy" && c.1 == "ndarray" => {}
                other => return Err(format!("_reconstruct of a {} (only numpy.ndarray is supported)", other.type_name())),
            }
            let empty = NdArray { dtype: Dtype { kind: b'u', size: 1, big_endian: false }, shape: vec![0], data: Rc::default() };
            Ok(Value::Array(Rc::new(RefCell::new(empty))))
        }
        (m, "_frombuffer") if is_numpy(m, "numeric") => {
            // Protocol 5: (buffer, dtype, shape, order).
            let data = arg(0)?.as_bytes().ok_or("_frombuffer of a non-buffer")?;
            let dtype = dtype_of(arg(1)?)?;
            let shape = shape_of(&arg(2)?)?;
            if arg(3)?.as_text().as_deref() == Some("F") && shape.len() > 1 {
                return Err("Fortran-ordered numpy arrays are not supported".into());
            }
            Ok(Value::Array(Rc::new(RefCell::new(checked_array(dtype, shape, data)?))))
        }
        (m, "scalar") if is_numpy(m, "multiarray") => {
            let dtype = dtype_of(arg(0)?)?;
            let data = arg(1)?.as_bytes().ok_or("numpy scalar without its bytes")?;
            let a = checked_array(dtype, Vec::new(), data)?;
            let v = a.dtype.get(&a.data, 0);
            Ok(if dtype.kind == b'f' { Value::Float(v) } else { Value::Int(v as i64) })
        }
        ("_codecs", "encode") => {
            let text = arg(0)?;
            let encoding = arg(1)?.as_text().unwrap_or_default().to_lowercase().replace(['-', '_'], "");
            if !matches!(encoding.as_str(), "latin1" | "iso88591") {
                return Err(format!("_codecs.encode to {encoding:?} (only latin1)"));
            }
            Ok(Value::Bytes(text.as_bytes().ok_or("_codecs.encode of a str with characters above U+00FF")?))
        }
        _ => Err(format!("cannot build {module}.{name} (only numpy arrays, dtypes and scalars are supported)")),
    }
}

fn shape_of(v: &Value) -> Res<Vec<usize>> {
    let items = v.items().ok_or_else(|| format!("array shape is a {}", v.type_name()))?;
    items
        .iter()
        .map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| "array shape of non-integers".to_string()))
        .collect()
}

/// An array whose data length matches its shape and dtype.
fn checked_array(dtype: Dtype, shape: Vec<usize>, data: Rc<Vec<u8>>) -> Res<NdArray> {
    let want = shape.iter().try_fold(dtype.size, |acc, &d| acc.checked_mul(d));
    if want != Some(data.len()) {
        return Err(format!("numpy array of shape {shape:?} and {}-byte elements holds {} bytes", dtype.size, data.len()));
    }
    Ok(NdArray { dtype, shape, data })
}

/// `obj.__setstate__(state)` for dtypes and arrays.
fn build(obj: &Value, state: &Value) -> Res<()> {
    match obj {
        Value::Dtype(d) => {
            // (version, byteorder, subarray, names, fields, elsize, alignment, flags): only the
            // byte order matters for the plain types supported.
            let items = state.items().ok_or("dtype state is not a tuple")?;
            match items.get(1).and_then(Value::as_text).as_deref() {
                Some(">") => d.borrow_mut().big_endian = true,
                Some("<" | "|" | "=") => d.borrow_mut().big_endian = false,
                other => return Err(format!("dtype byte order {other:?}")),
            }
            Ok(())
        }
        Value::Array(a) => {
            // (version, shape, dtype, is_fortran, data), or the same without the version.
            let mut items = state.items().ok_or("array state is not a tuple")?;
            if items.len() == 5 {
                items.remove(0);
            }
            let [shape, dtype, fortran, data] = &items[..] else {
                return Err(format!("array state of {} items", items.len()));
            };
            let shape = shape_of(shape)?;
            let Value::Dtype(dtype) = dtype else {
                return Err(format!("array state with a {} for its dtype", dtype.type_name()));
            };
            if fortran.as_int() == Some(1) && shape.iter().filter(|&&d| d > 1).count() > 1 {
                return Err("Fortran-ordered numpy arrays are not supported".into());
            }
            let data = data.as_bytes().ok_or_else(|| format!("array data is a {} (object arrays are not supported)", data.type_name()))?;
            *a.borrow_mut() = checked_array(*dtype.borrow(), shape, data)?;
            Ok(())
        }
        other => Err(format!("BUILD on a {}", other.type_name())),
    }
}

/// Reads a pickle from `input` (`len` bytes).
pub fn read_pickle(input: impl Read, len: u64) -> Result<Value, String> {
    let mut m = Machine { input, pos: 0, left: len, stack: Vec::new(), marks: Vec::new(), memo: Default::default() };
    m.run()
}

/// Reads the pickle file at `path`; `what` and `hint` name it when it is missing.
fn read_pickle_file(path: &Path, what: &str, hint: &str) -> Result<Value, DataError> {
    let file = super::open_file(path, what, hint)?;
    let len = file.metadata().map_err(|e| DataError::invalid(path.display(), format!("cannot stat: {e}")))?.len();
    read_pickle(BufReader::with_capacity(1 << 20, file), len).map_err(|msg| DataError::invalid(path.display(), msg))
}

/// A uint8 N×H×W×C array of images.
struct HwcImages {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    data: Rc<Vec<u8>>,
}

impl HwcImages {
    /// Image `i` as C×H×W f32 values times `scale`, appended to `out`.
    fn push_chw(&self, out: &mut Vec<f32>, i: usize, scale: f32) {
        let (hw, len) = (self.h * self.w, self.h * self.w * self.c);
        let img = &self.data[i * len..(i + 1) * len];
        let start = out.len();
        out.resize(start + len, 0.0);
        let planes = &mut out[start..];
        for (p, pixel) in img.chunks_exact(self.c).enumerate() {
            for (ch, &v) in pixel.iter().enumerate() {
                planes[ch * hw + p] = f32::from(v) * scale;
            }
        }
    }

    fn empty_set(&self, class_names: Vec<String>) -> ImageSet {
        let images = vec![Vec::new(); class_names.len()];
        ImageSet { channels: self.c, height: self.h, width: self.w, class_names, images }
    }
}

/// The uint8 N×H×W×C array under `key`.
fn images_array(root: &Value, key: &str) -> Result<HwcImages, String> {
    let v = root.get(key).ok_or_else(|| format!("no {key:?} entry (expected a dict with {key:?})"))?;
    let Value::Array(a) = v else {
        return Err(format!("{key:?} is a {}, not a numpy array", v.type_name()));
    };
    let a = a.borrow();
    if (a.dtype.kind, a.dtype.size) != (b'u', 1) {
        return Err(format!("{key:?} has {}{} elements, not uint8", char::from(a.dtype.kind), a.dtype.size));
    }
    let [n, h, w, c] = a.shape[..] else {
        return Err(format!("{key:?} has shape {:?}, not N×H×W×C", a.shape));
    };
    // Non-zero sizes: their product is then the data's length, bounded by the file.
    if [n, h, w, c].contains(&0) {
        return Err(format!("{key:?} has shape {:?}: no images", a.shape));
    }
    Ok(HwcImages { n, h, w, c, data: a.data.clone() })
}

const MINI_IMAGENET_HINT: &str = "put learn2learn's mini-imagenet-cache-{train,validation,test}.pkl \
     (https://zenodo.org/record/7978538, or l2l.vision.datasets.MiniImagenet(download=True)) in one folder \
     and give it with --data_dir";

const FC100_HINT: &str = "put learn2learn's FC100_{train,val,test}.pickle \
     (https://www.dropbox.com/s/ftsjuwsu6lfp0fz/FC100.zip, or l2l.vision.datasets.FC100(download=True)) in one folder \
     and give it with --data_dir";

/// The class splits learn2learn's miniImageNet and FC100 files hold (64/16/20 and 60/20/20
/// classes), one file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FewShotSplit {
    /// The meta-training classes.
    Train,
    /// The meta-validation classes.
    Validation,
    /// The meta-test classes.
    Test,
}

impl FewShotSplit {
    /// The three splits, train first.
    pub const ALL: [FewShotSplit; 3] = [FewShotSplit::Train, FewShotSplit::Validation, FewShotSplit::Test];

    /// learn2learn's miniImageNet file of this split.
    pub fn mini_imagenet_file(self) -> &'static str {
        match self {
            FewShotSplit::Train => "mini-imagenet-cache-train.pkl",
            FewShotSplit::Validation => "mini-imagenet-cache-validation.pkl",
            FewShotSplit::Test => "mini-imagenet-cache-test.pkl",
        }
    }

    /// learn2learn's FC100 file of this split.
    pub fn fc100_file(self) -> &'static str {
        match self {
            FewShotSplit::Train => "FC100_train.pickle",
            FewShotSplit::Validation => "FC100_val.pickle",
            FewShotSplit::Test => "FC100_test.pickle",
        }
    }
}

/// learn2learn's `mini-imagenet-cache-*.pkl`: a dict with `image_data` (uint8 N×84×84×3) and
/// `class_dict` (class name → indices of its images). Classes in the dict's order (learn2learn's
/// labels), images in the order listed; values raw 0..255 (learn2learn's `.float()`, no
/// normalisation).
pub fn load_mini_imagenet(path: &Path) -> Result<ImageSet, DataError> {
    let root = read_pickle_file(path, "miniImageNet", MINI_IMAGENET_HINT)?;
    mini_imagenet_from(&root).map_err(|msg| DataError::invalid(path.display(), msg))
}

fn mini_imagenet_from(root: &Value) -> Result<ImageSet, String> {
    let all = images_array(root, "image_data")?;
    let classes = root.get("class_dict").ok_or("no \"class_dict\" entry")?;
    let Value::Dict(classes) = classes else {
        return Err(format!("\"class_dict\" is a {}, not a dict", classes.type_name()));
    };
    let mut set = all.empty_set(Vec::new());
    for (name, indices) in classes.borrow().iter() {
        let name = name.as_text().ok_or_else(|| format!("a class_dict key is a {}", name.type_name()))?;
        let indices = indices.as_ints().ok_or_else(|| format!("class {name:?}: its indices are not a list of integers"))?;
        let mut images = Vec::with_capacity(indices.len() * all.h * all.w * all.c);
        for i in indices {
            let n = all.n;
            let i = usize::try_from(i).ok().filter(|&i| i < n).ok_or_else(|| format!("class {name:?}: image index {i} outside 0..{n}"))?;
            all.push_chw(&mut images, i, 1.0);
        }
        set.class_names.push(name);
        set.images.push(images);
    }
    Ok(set)
}

/// learn2learn's `FC100_*.pickle` (Python 2 pickles): a dict with `data` (uint8 N×32×32×3) and
/// `labels` (one int per image). Classes are the distinct labels in increasing order, named by
/// their number; images in file order, values in [0, 1] (`ToTensor`).
pub fn load_fc100(path: &Path) -> Result<ImageSet, DataError> {
    let root = read_pickle_file(path, "FC100", FC100_HINT)?;
    fc100_from(&root).map_err(|msg| DataError::invalid(path.display(), msg))
}

fn fc100_from(root: &Value) -> Result<ImageSet, String> {
    let all = images_array(root, "data")?;
    let labels = root.get("labels").ok_or("no \"labels\" entry")?.as_ints().ok_or("\"labels\" is not a list of integers")?;
    if labels.len() != all.n {
        return Err(format!("{} labels for {} images", labels.len(), all.n));
    }
    let mut distinct = labels.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut set = all.empty_set(distinct.iter().map(i64::to_string).collect());
    for (i, y) in labels.iter().enumerate() {
        let class = distinct.binary_search(y).unwrap_or_default();
        all.push_chw(&mut set.images[class], i, 1.0 / 255.0);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value, String> {
        read_pickle(bytes, bytes.len() as u64)
    }

    #[test]
    fn protocol_0_text_opcodes() {
        // pickle.dumps({'a': [1, 2.5, None, True], b'k': 'x\u00e9'}, protocol=0) in Python 3,
        // with the bytes key as Python 2 would write it (STRING).
        let p = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naNaI01\nasS'k\\x00\\n'\np3\nVx\\u00e9\np4\ns.";
        let v = run(p).unwrap();
        let list = v.get("a").unwrap().items().unwrap();
        assert!(matches!(list[..], [Value::Int(1), Value::Float(f), Value::None, Value::Bool(true)] if f == 2.5));
        assert_eq!(v.get("k\0\n").unwrap().as_text().unwrap(), "x\u{e9}");
    }

    #[test]
    fn python2_strings_escapes() {
        assert_eq!(unquote(b"'a\\'b\\\\c\\x7f\\n'").unwrap(), b"a'b\\c\x7f\n");
        assert_eq!(unquote(b"\"it's\"").unwrap(), b"it's");
        assert_eq!(unquote(b"'\\101'").unwrap(), b"A");
        assert!(unquote(b"'unterminated").is_none());
        assert_eq!(raw_unicode_escape(b"a\\u00e9\\U0001F600").unwrap(), "a\u{e9}\u{1F600}");
    }

    #[test]
    fn dtypes_and_elements() {
        let d = Dtype::parse("<i2").unwrap();
        assert_eq!(d.get(&[0xfe, 0xff], 0), -2.0);
        let d = Dtype::parse(">u2").unwrap();
        assert_eq!(d.get(&[0x01, 0x02], 0), 258.0);
        assert_eq!(Dtype::parse("float32").unwrap(), Dtype { kind: b'f', size: 4, big_endian: false });
        assert_eq!(Dtype::parse("f4").unwrap().get(&1.5f32.to_le_bytes(), 0), 1.5);
        assert_eq!(Dtype::parse("i8").unwrap().get(&(-7i64).to_le_bytes(), 0), -7.0);
        assert!(Dtype::parse("O8").unwrap_err().contains("unsupported numpy dtype"));
        assert!(Dtype::parse("<U3").is_err());
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        for (bytes, needle) in [
            (&b""[..], "no STOP"),
            (b"\x80\x02}q\x00(", "no STOP"),
            (b"\x80\x07.", "protocol 7"),
            (b"\x80\x02a.", "stack underflow"),
            (b"\x80\x02h\x05.", "memo key 5"),
            (b"\x80\x02K\x01K\x02u.", "no mark"),
            (b"\x80\x02\xff", "unsupported pickle opcode 0xff"),
            (b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f", "truncated"),
            (b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", "cannot build os.system"),
            (b"\x80\x02K\x01K\x02b.", "BUILD on a int"),
            (b"\x80\x02(K\x01K\x02K\x03u.", "odd number"),
        ] {
            let err = run(bytes).unwrap_err();
            assert!(err.contains(needle), "{bytes:?}: {err:?} lacks {needle:?}");
        }
    }
}
