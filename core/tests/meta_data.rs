//! Few-shot data: Omniglot from the shared data folder (`<repo>/../shared/data/omniglot`, the
//! "small" background zips), the class split, N-way K-shot episodes, and their errors; then
//! learn2learn's miniImageNet and FC100 pickles, written by `pickler` exactly as Python and numpy
//! write them (checked against hashes of CPython's own output) and read back.

mod pickler;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use bilevel_core::data::episodes::{sample_episode, split_classes, ImageSet};
use bilevel_core::data::omniglot::{area_resize, decode_gray, load_omniglot, load_omniglot_runs, OMNIGLOT_RUNS_ZIP, OMNIGLOT_ZIPS};
use bilevel_core::data::DataError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn omniglot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/omniglot")
}

/// The real subset at 28×28, read once for all tests.
fn omniglot() -> &'static ImageSet {
    static SET: OnceLock<ImageSet> = OnceLock::new();
    SET.get_or_init(|| {
        let t = Instant::now();
        let set = load_omniglot(&omniglot_dir(), 28).unwrap();
        eprintln!("Omniglot read in {:.2} s", t.elapsed().as_secs_f64());
        set
    })
}

/// A fresh empty folder under the system temp folder.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-meta-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The error's message, checked to be one line holding every `parts`.
fn one_line(err: DataError, parts: &[&str]) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "not one line: {msg}");
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
    }
    msg
}

#[test]
fn omniglot_subset_is_242_characters_of_20_drawings() {
    let set = omniglot();
    assert_eq!((set.channels, set.height, set.width, set.image_len()), (1, 28, 28, 784));
    assert_eq!(set.num_classes(), 242);
    assert_eq!(set.total_images(), 242 * 20);
    assert!((0..242).all(|c| set.images_in(c) == 20));
    let names: HashSet<&String> = set.class_names.iter().collect();
    assert_eq!(names.len(), 242, "class names repeat");
    let alphabets: HashSet<&str> = set.class_names.iter().map(|n| n.split('/').next().unwrap()).collect();
    assert_eq!(alphabets.len(), 8, "{alphabets:?}");
    // Greek (24 characters) and Latin (26) are in both zips and counted once.
    assert_eq!(set.class_names.iter().filter(|n| n.starts_with("Greek/")).count(), 24);
    assert_eq!(set.class_names.iter().filter(|n| n.starts_with("Latin/")).count(), 26);

    // Strokes are ink (near 1), the background is exactly 0: most pixels are background, every
    // drawing has pixels that are nearly all stroke, and nothing is outside [0, 1].
    let all = &set.images;
    assert!(all.iter().flatten().all(|&v| (0.0..=1.0).contains(&v)));
    let zeros = all.iter().flatten().filter(|&&v| v == 0.0).count() as f64 / (242 * 20 * 784) as f64;
    assert!(zeros > 0.6, "only {zeros:.2} of pixels are background");
    let mut darkest = f32::INFINITY;
    for c in 0..242 {
        for i in 0..20 {
            let max = set.image(c, i).iter().copied().fold(0.0, f32::max);
            darkest = darkest.min(max);
        }
    }
    eprintln!("background fraction {zeros:.3}, weakest drawing maximum {darkest:.3}");
    assert!(darkest > 0.6, "some drawing's strongest pixel is only {darkest}");
    // Drawings of one character differ.
    assert_ne!(set.image(0, 0), set.image(0, 1));
}

#[test]
fn omniglot_at_full_size_is_the_inverted_one_bit_image() {
    let set = load_omniglot(&omniglot_dir(), 105).unwrap();
    assert_eq!(set.image_len(), 105 * 105);
    assert!(set.images[0].iter().all(|&v| v == 0.0 || v == 1.0));
    // Area averaging 105 → 28 keeps each drawing's mean ink.
    let small = omniglot();
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    for (c, i) in [(0, 0), (100, 7), (241, 19)] {
        assert!((mean(set.image(c, i)) - mean(small.image(c, i))).abs() < 1e-5);
    }
}

#[test]
fn rotations_quadruple_the_classes_with_exact_quarter_turns() {
    let set = omniglot().clone();
    let n = set.num_classes();
    let rotated = set.clone().with_rotations();
    assert_eq!(rotated.num_classes(), 4 * n);
    assert_eq!(rotated.total_images(), 4 * n * 20);
    assert_eq!(rotated.class_names.iter().collect::<HashSet<_>>().len(), 4 * n);
    // Counter-clockwise 90°: output (y, x) is input (x, 27 − y).
    let turn = |img: &[f32]| -> Vec<f32> { (0..28 * 28).map(|k| img[(k % 28) * 28 + 27 - k / 28]).collect() };
    for (c, i) in [(0, 0), (57, 3), (241, 19)] {
        let once = turn(set.image(c, i));
        assert_eq!(rotated.image(n + c, i), &once[..]);
        assert_eq!(rotated.image(2 * n + c, i), &turn(&once)[..]);
        assert_eq!(rotated.image(3 * n + c, i), &turn(&turn(&once))[..]);
        assert_eq!(rotated.image(c, i), set.image(c, i));
    }
    assert_eq!(rotated.class_names[n + 5], format!("{}@rot90", set.class_names[5]));
}

#[test]
fn class_split_is_disjoint_complete_and_seeded() {
    let set = omniglot().clone();
    let split = split_classes(set.clone(), 40, 60, 1).unwrap();
    let names = |s: &ImageSet| s.class_names.iter().cloned().collect::<HashSet<_>>();
    let (tr, va, te) = (names(&split.train), names(&split.val), names(&split.test));
    assert_eq!((tr.len(), va.len(), te.len()), (142, 40, 60));
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    assert_eq!(tr.len() + va.len() + te.len(), 242);
    // The images travel with their class.
    let original = set.class_names.iter().position(|n| *n == split.test.class_names[0]).unwrap();
    assert_eq!(split.test.images[0], set.images[original]);

    let again = split_classes(set.clone(), 40, 60, 1).unwrap();
    assert_eq!(
        (again.train.class_names, again.val.class_names, again.test.class_names),
        (split.train.class_names, split.val.class_names, split.test.class_names.clone())
    );
    let other = split_classes(set.clone(), 40, 60, 2).unwrap();
    assert_ne!(other.test.class_names, split.test.class_names);

    // Splitting the rotated set keeps a character's four rotations in one part.
    let rotated = split_classes(set.clone().with_rotations(), 40, 60, 1).unwrap();
    assert_eq!((rotated.train.num_classes(), rotated.val.num_classes(), rotated.test.num_classes()), (4 * 142, 4 * 40, 4 * 60));
    let base = |n: &String| n.split('@').next().unwrap().to_string();
    assert_eq!(rotated.test.class_names.iter().map(base).collect::<HashSet<_>>(), te);

    let err = split_classes(set, 100, 142, 0).unwrap_err();
    one_line(err, &["leave no training class"]);
}

#[test]
fn episodes_have_the_agreed_layout_and_are_seeded() {
    let set = omniglot();
    let (ways, shots, queries) = (5, 2, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let e = sample_episode(set, ways, shots, queries, &mut rng).unwrap();
    assert_eq!((e.ways, e.shots, e.queries, e.support_len(), e.query_len()), (5, 2, 3, 10, 15));
    assert_eq!(e.images.len(), 25 * 784);
    let expect: Vec<u32> = (0..5).flat_map(|l| [l; 2]).chain((0..5).flat_map(|l| [l; 3])).collect();
    assert_eq!(e.labels, expect);

    // Each image is a drawing of its label's class, and no drawing appears twice.
    let images: Vec<&[f32]> = e.images.chunks_exact(784).collect();
    let class_of = |img: &[f32]| -> (usize, usize) {
        let hits: Vec<(usize, usize)> =
            (0..242).flat_map(|c| (0..20).map(move |i| (c, i))).filter(|&(c, i)| set.image(c, i) == img).collect();
        assert_eq!(hits.len(), 1, "an episode image is not exactly one drawing of the set");
        hits[0]
    };
    let found: Vec<(usize, usize)> = images.iter().map(|img| class_of(img)).collect();
    assert_eq!(found.iter().collect::<HashSet<_>>().len(), 25, "support and query share a drawing");
    for (k, &(c, _)) in found.iter().enumerate() {
        let label = e.labels[k] as usize;
        assert_eq!(c, found[label * shots].0, "image {k} is not of class {label}");
    }
    assert_eq!(found.iter().map(|f| f.0).collect::<HashSet<_>>().len(), 5);

    // Same seed, same episode; another seed, another one.
    let again = sample_episode(set, ways, shots, queries, &mut ChaCha8Rng::seed_from_u64(11)).unwrap();
    assert_eq!(again, e);
    let other = sample_episode(set, ways, shots, queries, &mut ChaCha8Rng::seed_from_u64(12)).unwrap();
    assert_ne!(other.images, e.images);
    // Consecutive draws from one generator differ.
    let next = sample_episode(set, ways, shots, queries, &mut rng).unwrap();
    assert_ne!(next.images, e.images);
}

#[test]
fn bad_episode_requests_are_one_line_errors() {
    let set = omniglot();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ask = |ways, shots, queries| sample_episode(set, ways, shots, queries, &mut rng).unwrap_err();
    one_line(ask(5, 0, 1), &["0 shots"]);
    one_line(ask(5, 1, 0), &["0 queries"]);
    one_line(ask(1, 1, 1), &["at least 2 ways"]);
    one_line(ask(243, 1, 1), &["243 ways", "only 242 classes"]);
    one_line(ask(5, 15, 6), &["21 images per class", "has 20"]);
    // The largest request that fits is fine.
    assert!(sample_episode(set, 242, 10, 10, &mut rng).is_ok());
}

#[test]
fn missing_zips_say_where_to_get_them() {
    let dir = temp_dir("missing");
    let msg = one_line(load_omniglot(&dir, 28).unwrap_err(), &[OMNIGLOT_ZIPS[0], "not found", "github.com/brendenlake/omniglot"]);
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    // With the first zip present, the second is named.
    std::fs::copy(omniglot_dir().join(OMNIGLOT_ZIPS[0]), dir.join(OMNIGLOT_ZIPS[0])).unwrap();
    one_line(load_omniglot(&dir, 28).unwrap_err(), &[OMNIGLOT_ZIPS[1], "not found"]);
    one_line(load_omniglot(&omniglot_dir(), 0).unwrap_err(), &["image size 0"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a zip at `path` holding `entries` (name, bytes), stored uncompressed.
fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A 2×2 1-bit PNG.
fn tiny_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, 2, 2);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    enc.write_header().unwrap().write_image_data(&[0b1000_0000, 0b0100_0000]).unwrap();
    bytes
}

#[test]
fn corrupt_archives_and_images_are_one_line_errors() {
    let dir = temp_dir("corrupt");
    let png = tiny_png();
    let good = "images_background_small2/Runic/character01/0001_01.png";
    write_zip(&dir.join(OMNIGLOT_ZIPS[1]), &[(good, &png)]);

    // A PNG cut short, inside the first zip.
    let broken = "images_background_small1/Runic/character02/0002_01.png";
    write_zip(&dir.join(OMNIGLOT_ZIPS[0]), &[(good, &png), (broken, &png[..png.len() - 20])]);
    one_line(load_omniglot(&dir, 28).unwrap_err(), &[OMNIGLOT_ZIPS[0], broken, "not a readable PNG"]);

    // Bytes that are not a PNG at all.
    write_zip(&dir.join(OMNIGLOT_ZIPS[0]), &[(broken, b"GIF89a not a png")]);
    one_line(load_omniglot(&dir, 28).unwrap_err(), &[broken, "not a readable PNG"]);

    // A PNG outside the <alphabet>/<character>/ layout.
    write_zip(&dir.join(OMNIGLOT_ZIPS[0]), &[("loose.png", &png)]);
    one_line(load_omniglot(&dir, 28).unwrap_err(), &["loose.png", "expected <folder>/<alphabet>/<character>/<drawing>.png"]);

    // A file that is not a zip.
    std::fs::write(dir.join(OMNIGLOT_ZIPS[0]), b"PK but not really").unwrap();
    one_line(load_omniglot(&dir, 28).unwrap_err(), &[OMNIGLOT_ZIPS[0], "not a readable zip archive"]);

    // Good tiny zips load: one character from each, the shared one read once, strokes 1.0.
    write_zip(&dir.join(OMNIGLOT_ZIPS[0]), &[(good, &png), ("images_background_small1/Runic/character02/0002_01.png", &png)]);
    let set = load_omniglot(&dir, 2).unwrap();
    assert_eq!(set.class_names, ["Runic/character01", "Runic/character02"]);
    assert_eq!(set.images[0], vec![0.0, 1.0, 1.0, 0.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads one file of a zip.
fn zip_file(path: &Path, name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut bytes = Vec::new();
    archive.by_name(name).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn the_twenty_one_shot_runs_are_20_way_1_shot_episodes() {
    let runs = load_omniglot_runs(&omniglot_dir(), 28).unwrap();
    assert_eq!(runs.len(), 20);
    let labels: Vec<u32> = (0..20).chain(0..20).collect();
    for e in &runs {
        assert_eq!((e.ways, e.shots, e.queries, e.images.len()), (20, 1, 1, 40 * 784));
        assert_eq!(e.labels, labels);
        assert!(e.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
    // The pairing is right: nearest-neighbour on pixels (squared distance) beats chance (5%)
    // by far, which a scrambled query order would not.
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let mut correct = 0;
    for e in &runs {
        for q in 0..20 {
            let query = &e.images[(20 + q) * 784..(21 + q) * 784];
            let nearest = (0..20)
                .min_by(|&a, &b| dist(query, &e.images[a * 784..(a + 1) * 784]).total_cmp(&dist(query, &e.images[b * 784..(b + 1) * 784])));
            correct += usize::from(nearest == Some(q));
        }
    }
    eprintln!("pixel nearest-neighbour accuracy on the 20 runs: {correct}/400");
    assert!(correct >= 60, "{correct}/400 correct");
    // Run 7: class 12's training drawing is support image 11, and the test item that
    // class_labels.txt assigns to it is query image 11.
    let zip = omniglot_dir().join(OMNIGLOT_RUNS_ZIP);
    let drawing = |name: &str| {
        let (g, h, w) = decode_gray(&zip_file(&zip, name)).unwrap();
        area_resize(&g.iter().map(|v| 1.0 - v).collect::<Vec<_>>(), h, w, 28, 28)
    };
    let labels = String::from_utf8(zip_file(&zip, "run07/class_labels.txt")).unwrap();
    let item = labels.lines().find(|l| l.ends_with("run07/training/class12.png")).unwrap().split(' ').next().unwrap();
    let e = &runs[6];
    assert_eq!(&e.images[11 * 784..12 * 784], &drawing("run07/training/class12.png")[..]);
    assert_eq!(&e.images[(20 + 11) * 784..(21 + 11) * 784], &drawing(item)[..]);

    // A labels file that names a drawing the archive lacks; no archive at all.
    let dir = temp_dir("runs");
    let png = tiny_png();
    write_zip(
        &dir.join(OMNIGLOT_RUNS_ZIP),
        &[
            (
                "run01/class_labels.txt",
                b"run01/test/item01.png run01/training/class01.png\nrun01/test/item09.png run01/training/class02.png\n",
            ),
            ("run01/training/class01.png", &png),
            ("run01/training/class02.png", &png),
            ("run01/test/item01.png", &png),
        ],
    );
    one_line(
        load_omniglot_runs(&dir, 28).unwrap_err(),
        &["run01/class_labels.txt", "names run01/test/item09.png, which is not in the archive"],
    );
    std::fs::remove_file(dir.join(OMNIGLOT_RUNS_ZIP)).unwrap();
    one_line(load_omniglot_runs(&dir, 28).unwrap_err(), &["all_runs.zip", "not found", "one-shot-classification"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- learn2learn's pickles (miniImageNet, FC100), written by the test's own pickler ----

use bilevel_core::data::pickle::{load_fc100, load_mini_imagenet, read_pickle, Value};
use pickler::{fc100, hwc_images, ints, mini_cache, s, Pickler, Py};
use sha2::{Digest, Sha256};

/// The objects of the writer check, as `cmp.py` built them in Python.
fn writer_cases() -> Vec<(&'static str, Py)> {
    let many = Py::Dict(vec![
        (s("labels"), ints(&(0..2500).map(|i| i * 7).collect::<Vec<_>>())),
        (s("one"), ints(&[1])),
        (s("t"), Py::Tuple(vec![Py::Int(1), Py::Int(2), Py::Int(3), Py::Int(4)])),
        (s("e"), Py::Tuple(vec![])),
        (s("n"), Py::None),
        (s("x"), s(&"a".repeat(300))),
    ]);
    vec![
        ("mini_small", mini_cache(hwc_images(4, 3, 2, 3), &[("n01", &[0, 2]), ("n02", &[1, 3])])),
        ("mini_large", mini_cache(hwc_images(5, 84, 84, 3), &[("n01", &[0, 2, 4]), ("n02", &[1, 3])])),
        ("fc_small", fc100(hwc_images(3, 2, 2, 3), &[5, 70000, -3, 1 << 40, 300])),
        ("biglist", many),
    ]
}

/// sha256 of `pickle.dumps(obj, protocol)` for `writer_cases`, from CPython 3.11.7 + numpy 2.4.6
/// (`numpy._core` names), protocols 2, 3, 4. `mini_large` (127 KB) spans 64 KiB frames in
/// protocol 4 and `biglist` has more than one 1000-item batch.
const PYTHON_SHA256: [(&str, [&str; 3]); 4] = [
    (
        "mini_small",
        [
            "c212fe61808e58bd8431f8a35e2ca18c9217c9b8a66b6a125c35c20e8022432a",
            "75d3a1490b076d34d21194b867f0b35ac98cb17775f06c798f9fed9dc0e0e513",
            "56997063fe8bd1c642aa609eaf07c12228b69d1ec409061e08bf15f97373a3a0",
        ],
    ),
    (
        "mini_large",
        [
            "cf5c40fe84e1bfa5d91d20e3190bd7f8858c9d3e35c5feb13dc2081a50656fe2",
            "fdb1c1e0fa8f3fa7b1fa7e46638ed602efb7dcc8b68b1423fff44578a340fe5a",
            "8f8266cdb4fc215c2c9c74adb45282113335cc9096207014a73fd9dd5e0bcbb0",
        ],
    ),
    (
        "fc_small",
        [
            "48fc53ab931422c748bc185f9bd95438d3d8819a7f6396baf24be248d571085a",
            "1749d68f1ec2d41b24df0ee98a93e66e6d3c0277bc9770435389e80bc5676dc1",
            "319f7d526cb78007778a19607ea1f65ff47fdf24e1c33e2b77f22ea810699da0",
        ],
    ),
    (
        "biglist",
        [
            "c5c4165a6821b9f5b88ed0791e93c8af6037f87baaa611652185c347e233a85c",
            "f8de88add8f66b5256b0e55444029ddb779486744a48c16fb248a66805432fd9",
            "f2be16fa49c3c92c1a7d954db4d477c9355ad93e1afcd7a83b8d203bb662aa1c",
        ],
    ),
];

/// numpy's own bytes: `pickle.dumps(mini_small, protocol=5)` (arrays as `_frombuffer` of a
/// `bytearray`) and `pickle.dumps({'data': hwc_images(3, 2, 2, 3), 'labels': [7, 2, 7]},
/// protocol=0)` (text opcodes, the data as a raw-unicode-escape str through `_codecs.encode`).
const NUMPY_PROTOCOL_5: &str = "80059501010000000000007d94288c0a696d6167655f64617461948c136e756d70792e5f636f72652e6e756d65726963948c0b5f66726f6d6275666665729493942896480000000000000000254a6f94b9de03284d7297bce1062b50759abfe4092e53789dc2e70c31567ba0c5ea0f34597ea3c8ed12375c81a6cbf0153a5f84a9cef3183d6287acd1f61b40658aafd4f91e43948c056e756d7079948c0564747970659493948c02753194898887945294284b038c017c944e4e4e4affffffff4affffffff4b00749462284b044b034b024b0374948c014394749452948c0a636c6173735f64696374947d94288c036e3031945d94284b004b02658c036e3032945d94284b014b036575752e";
const NUMPY_PROTOCOL_0: &str = "286470300a56646174610a70310a636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a70320a28636e756d70790a6e6461727261790a70330a2849300a7470340a635f636f646563730a656e636f64650a70350a2856620a70360a566c6174696e310a70370a7470380a5270390a747031300a527031310a2849310a2849330a49320a49320a49330a747031320a636e756d70790a64747970650a7031330a285675310a7031340a4930300a4930310a747031350a527031360a2849330a567c0a7031370a4e4e4e492d310a492d310a49300a747031380a624930300a67350a28565c7530303030254a6f94b9de03284d7297bce1062b50759abfe4092e53789dc2e70c31567ba0c5ea0f0a7031390a67370a747032300a527032310a747032320a6273566c6162656c730a7032330a286c7032340a49370a6149320a6149370a61732e";

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn test_pickler_writes_what_python_writes() {
    for (name, obj) in writer_cases() {
        let hashes = PYTHON_SHA256.iter().find(|(n, _)| *n == name).unwrap().1;
        for (proto, want) in (2..=4).zip(hashes) {
            let got: String = Sha256::digest(Pickler::dumps(&obj, proto, 2)).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, want, "{name}, protocol {proto}");
        }
    }
}

/// The value at HWC position (i, y, x, ch) of `hwc_images(_, h, w, c)`.
fn stored(i: usize, y: usize, x: usize, ch: usize, (h, w, c): (usize, usize, usize)) -> f32 {
    ((((i * h + y) * w + x) * c + ch) * 37 % 256) as f32
}

/// Checks `set` holds, for each class, images `indices` of `hwc_images(_, h, w, c)` in CHW
/// order scaled by `scale`.
fn assert_images(set: &ImageSet, classes: &[&[usize]], (h, w, c): (usize, usize, usize), scale: f32) {
    assert_eq!((set.channels, set.height, set.width), (c, h, w));
    assert_eq!(set.num_classes(), classes.len());
    for (k, indices) in classes.iter().enumerate() {
        assert_eq!(set.images_in(k), indices.len(), "class {k}");
        for (j, &i) in indices.iter().enumerate() {
            let img = set.image(k, j);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        assert_eq!(
                            img[(ch * h + y) * w + x],
                            stored(i, y, x, ch, (h, w, c)) * scale,
                            "class {k} image {j} at ({ch},{y},{x})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn mini_imagenet_pickles_round_trip() {
    let dir = temp_dir("mini");
    let path = dir.join("mini-imagenet-cache-train.pkl");
    // Classes listed out of name order, indices out of order: both orders are kept.
    let small = mini_cache(hwc_images(5, 3, 2, 3), &[("n02", &[4, 0]), ("n01", &[1, 3, 2])]);
    let large = mini_cache(hwc_images(7, 84, 84, 3), &[("a", &[6, 0, 2]), ("b", &[1, 3]), ("c", &[5, 4])]);
    for proto in 2..=4 {
        for numpy in [1, 2] {
            std::fs::write(&path, Pickler::dumps(&small, proto, numpy)).unwrap();
            let set = load_mini_imagenet(&path).unwrap();
            assert_eq!(set.class_names, ["n02", "n01"]);
            assert_images(&set, &[&[4, 0], &[1, 3, 2]], (3, 2, 3), 1.0);
        }
        // 84×84×3: raw 0..255, CHW; in protocol 4 the data sits outside the 64 KiB frames.
        std::fs::write(&path, Pickler::dumps(&large, proto, 1)).unwrap();
        let set = load_mini_imagenet(&path).unwrap();
        assert_eq!(set.image_len(), 3 * 84 * 84);
        assert_images(&set, &[&[6, 0, 2], &[1, 3], &[5, 4]], (84, 84, 3), 1.0);
        assert_eq!(set.images.iter().flatten().fold(0.0f32, |m, &v| m.max(v)), 255.0);
    }
    // numpy's own protocol-5 bytes (`_frombuffer`).
    std::fs::write(&path, unhex(NUMPY_PROTOCOL_5)).unwrap();
    let set = load_mini_imagenet(&path).unwrap();
    assert_eq!(set.class_names, ["n01", "n02"]);
    assert_images(&set, &[&[0, 2], &[1, 3]], (3, 2, 3), 1.0);
    // Episodes come from it like from Omniglot.
    let e = sample_episode(&set, 2, 1, 1, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!(e.images.len(), 4 * 18);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fc100_pickles_round_trip() {
    let dir = temp_dir("fc100");
    let path = dir.join("FC100_train.pickle");
    // Labels unsorted and not contiguous: classes are the distinct labels in increasing order.
    let obj = fc100(hwc_images(6, 4, 3, 3), &[9, 2, 9, 40, 2, 9]);
    let expect: [&[usize]; 3] = [&[1, 4], &[0, 2, 5], &[3]];
    let files = [Pickler::dumps_python2(&obj), Pickler::dumps(&obj, 2, 1), Pickler::dumps(&obj, 3, 2), Pickler::dumps(&obj, 4, 2)];
    for bytes in files {
        std::fs::write(&path, bytes).unwrap();
        let set = load_fc100(&path).unwrap();
        assert_eq!(set.class_names, ["2", "9", "40"]);
        assert_images(&set, &expect, (4, 3, 3), 1.0 / 255.0);
        assert!(set.images.iter().flatten().all(|&v| (0.0..=1.0).contains(&v)));
    }
    // numpy's own protocol-0 bytes (text opcodes).
    std::fs::write(&path, unhex(NUMPY_PROTOCOL_0)).unwrap();
    let set = load_fc100(&path).unwrap();
    assert_eq!(set.class_names, ["2", "7"]);
    assert_images(&set, &[&[1], &[0, 2]], (2, 2, 3), 1.0 / 255.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pickled_python_values_read_back() {
    // Integers of every width (BININT1/2, BININT, LONG1), a str over 255 bytes, tuples, None.
    let (_, obj) = writer_cases().into_iter().find(|(n, _)| *n == "biglist").unwrap();
    for proto in 2..=4 {
        let bytes = Pickler::dumps(&obj, proto, 2);
        let v = read_pickle(&bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(v.get("labels").unwrap().as_ints().unwrap(), (0..2500).map(|i| i * 7).collect::<Vec<i64>>());
        assert_eq!(v.get("t").unwrap().as_ints().unwrap(), [1, 2, 3, 4]);
        assert!(v.get("e").unwrap().items().unwrap().is_empty());
        assert!(matches!(v.get("n").unwrap(), Value::None));
        assert_eq!(v.get("x").unwrap().as_text().unwrap(), "a".repeat(300));
    }
    let (_, fc) = writer_cases().into_iter().find(|(n, _)| *n == "fc_small").unwrap();
    let bytes = Pickler::dumps(&fc, 2, 2);
    let v = read_pickle(&bytes[..], bytes.len() as u64).unwrap();
    assert_eq!(v.get("labels").unwrap().as_ints().unwrap(), [5, 70000, -3, 1 << 40, 300]);
}

#[test]
fn malformed_pickles_are_one_line_errors() {
    let dir = temp_dir("bad-pickles");
    let path = dir.join("mini-imagenet-cache-test.pkl");
    let name = path.display().to_string();
    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        load_mini_imagenet(&path).unwrap_err()
    };
    let good = Pickler::dumps(&mini_cache(hwc_images(4, 3, 2, 3), &[("n01", &[0, 2]), ("n02", &[1, 3])]), 4, 2);
    one_line(load(&good[..good.len() / 2]), &[&name, "no STOP"]);
    one_line(load(b"<html>not a pickle</html>"), &[&name, "unsupported pickle opcode 0x3c"]);
    one_line(load(&[]), &[&name, "no STOP"]);
    // The wrong structure.
    one_line(load(&Pickler::dumps(&ints(&[1, 2]), 4, 2)), &[&name, "no \"image_data\" entry"]);
    one_line(load(&Pickler::dumps(&Py::Dict(vec![(s("image_data"), ints(&[1]))]), 4, 2)), &["\"image_data\" is a list, not a numpy array"]);
    let flat = Py::Array { shape: vec![12], data: vec![0; 12] };
    one_line(load(&Pickler::dumps(&mini_cache(flat, &[]), 3, 2)), &["shape [12], not N×H×W×C"]);
    one_line(load(&Pickler::dumps(&mini_cache(hwc_images(2, 1, 1, 3), &[("x", &[0, 2])]), 3, 2)), &["class \"x\"", "index 2 outside 0..2"]);
    one_line(load(&Pickler::dumps(&Py::Dict(vec![(s("image_data"), hwc_images(1, 1, 1, 3))]), 3, 2)), &["no \"class_dict\" entry"]);
    // A dtype other than uint8 ('u1' patched to 'i1'), and data shorter than the shape says.
    let mut signed = Pickler::dumps(&mini_cache(hwc_images(2, 1, 1, 3), &[]), 3, 2);
    let at = signed.windows(2).position(|w| w == b"u1").unwrap();
    signed[at] = b'i';
    one_line(load(&signed), &["i1 elements, not uint8"]);
    let mut short = Pickler::dumps(&mini_cache(hwc_images(2, 1, 1, 3), &[]), 3, 2);
    let at = short.windows(8).position(|w| w == b"K\x02K\x01K\x01K\x03").unwrap();
    short[at + 1] = 3; // the shape says 3 images, the data holds 2
    one_line(load(&short), &["shape [3, 1, 1, 3] and 1-byte elements holds 6 bytes"]);
    // FC100: labels and images disagree; labels that are not integers.
    let fc_path = dir.join("FC100_test.pickle");
    std::fs::write(&fc_path, Pickler::dumps(&fc100(hwc_images(3, 2, 2, 3), &[1, 2]), 2, 1)).unwrap();
    one_line(load_fc100(&fc_path).unwrap_err(), &["2 labels for 3 images"]);
    std::fs::write(&fc_path, Pickler::dumps(&Py::Dict(vec![(s("data"), hwc_images(1, 1, 1, 3)), (s("labels"), s("x"))]), 2, 1)).unwrap();
    one_line(load_fc100(&fc_path).unwrap_err(), &["\"labels\" is not a list of integers"]);
    // Missing files say where to get them.
    one_line(load_mini_imagenet(&dir.join("mini-imagenet-cache-validation.pkl")).unwrap_err(), &["miniImageNet not found", "zenodo.org"]);
    one_line(load_fc100(&dir.join("FC100_val.pickle")).unwrap_err(), &["FC100 not found", "FC100.zip"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The loaders' images fit the reference's conv4 (SPEC §6.2): 3 channels, floor pooling,
/// miniImageNet 84 → 42 → 21 → 10 → 5 (D = 64·5·5 = 1600), FC100 32 → 16 → 8 → 4 → 2 (D = 256).
#[test]
fn mini_imagenet_and_fc100_shapes_fit_the_conv4() {
    use bilevel_core::meta::Conv4;
    let dir = temp_dir("conv4");
    let mini = dir.join("mini-imagenet-cache-test.pkl");
    std::fs::write(&mini, Pickler::dumps(&mini_cache(hwc_images(2, 84, 84, 3), &[("a", &[0, 1])]), 4, 2)).unwrap();
    let fc = dir.join("FC100_test.pickle");
    std::fs::write(&fc, Pickler::dumps_python2(&fc100(hwc_images(2, 32, 32, 3), &[4, 4]))).unwrap();
    for (set, features) in [(load_mini_imagenet(&mini).unwrap(), 1600), (load_fc100(&fc).unwrap(), 256)] {
        let net = Conv4 { channels: set.channels, height: set.height, width: set.width, hidden: 64, blocks: 4, ways: 5 };
        assert_eq!((net.channels, net.features()), (3, features), "{}×{}", set.height, set.width);
        assert_eq!(net.head_len(), 5 * features + 5);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
