//! Few-shot data: Omniglot from the shared data folder (`<repo>/../shared/data/omniglot`, the
//! "small" background zips), the class split, N-way K-shot episodes, and their errors.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use bilevel_core::data::episodes::{sample_episode, split_classes, ImageSet};
use bilevel_core::data::omniglot::{load_omniglot, OMNIGLOT_ZIPS};
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
