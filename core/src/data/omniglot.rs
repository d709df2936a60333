//! Omniglot (Lake et al.) from the zips of github.com/brendenlake/omniglot: the "small"
//! background subset (`images_background_small1.zip` and `images_background_small2.zip`; their
//! union is 8 alphabets, 242 characters × 20 drawers of 105×105 1-bit PNGs; Greek and Latin are in
//! both and are read once), and the 20 official one-shot runs (`all_runs.zip`: 20-way 1-shot
//! tasks on characters of the evaluation alphabets, so none of them is in the background set).
//!
//! Each image is inverted (strokes 1.0, background 0.0, as learn2learn's `1 - x`) and resized
//! by area averaging (every output pixel is the mean of the source area it covers, with
//! fractional weights at the edges, like OpenCV's `INTER_AREA`); learn2learn resizes with PIL's
//! LANCZOS instead, which rings slightly (values a little outside [0, 1]) where this does not.

use std::io::Read;
use std::path::Path;

use super::episodes::{Episode, ImageSet};
use super::DataError;

/// The zips read, in order; a character in more than one is taken from the first.
pub const OMNIGLOT_ZIPS: [&str; 2] = ["images_background_small1.zip", "images_background_small2.zip"];

const HINT: &str = "get images_background_small1.zip and images_background_small2.zip from \
                    https://github.com/brendenlake/omniglot/tree/master/python";

/// The official one-shot runs.
pub const OMNIGLOT_RUNS_ZIP: &str = "all_runs.zip";

const RUNS_HINT: &str = "get all_runs.zip from https://github.com/brendenlake/omniglot/tree/master/python/one-shot-classification";

/// Opens a zip archive; a missing file is [`DataError::Missing`] with `what` and `hint`.
fn open_zip(path: &Path, what: &str, hint: &str) -> Result<zip::ZipArchive<std::io::BufReader<std::fs::File>>, DataError> {
    let file = super::open_file(path, what, hint)?;
    zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| DataError::invalid(path.display(), format!("not a readable zip archive: {e}")))
}

/// Reads entry `i` of a zip: its name and bytes.
fn read_entry<R: Read + std::io::Seek>(archive: &mut zip::ZipArchive<R>, path: &Path, i: usize) -> Result<(String, Vec<u8>), DataError> {
    let mut entry = archive.by_index(i).map_err(|e| DataError::invalid(path.display(), format!("entry {i}: {e}")))?;
    let name = entry.name().to_string();
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    if !entry.is_dir() {
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::invalid(format!("{}:{name}", path.display()), format!("cannot unzip: {e}")))?;
    }
    Ok((name, bytes))
}

/// One drawing: the PNG decoded, inverted (strokes 1.0) and area-resized to `size`×`size`.
fn drawing(png_bytes: &[u8], size: usize) -> Result<Vec<f32>, String> {
    let (gray, h, w) = decode_gray(png_bytes)?;
    let ink: Vec<f32> = gray.iter().map(|&g| 1.0 - g).collect();
    Ok(area_resize(&ink, h, w, size, size))
}

/// One character's drawings while reading: the zip it comes from, and (file name, image) pairs.
type Character = (usize, Vec<(String, Vec<f32>)>);

/// Reads the Omniglot zips in `dir` (images_background_small1.zip, images_background_small2.zip;
/// their union: 8 alphabets, 242 characters x 20 drawers), decodes the 105x105 PNGs, resizes to
/// `size` x `size` (28), inverts so strokes are 1.0. Class name = "alphabet/character"; classes
/// sorted by name, images of a class by file name.
pub fn load_omniglot(dir: &Path, size: usize) -> Result<ImageSet, DataError> {
    if size == 0 {
        return Err(DataError::invalid("omniglot", "image size 0"));
    }
    let mut classes: std::collections::BTreeMap<String, Character> = Default::default();
    for (z, zip_name) in OMNIGLOT_ZIPS.iter().enumerate() {
        let path = dir.join(zip_name);
        let mut archive = open_zip(&path, &format!("Omniglot's {zip_name}"), HINT)?;
        for i in 0..archive.len() {
            let name = archive
                .name_for_index(i)
                .ok_or_else(|| DataError::invalid(path.display(), format!("entry {i}: unreadable name")))?
                .to_string();
            if !name.ends_with(".png") || name.starts_with("__MACOSX") {
                continue;
            }
            let where_ = || format!("{}:{name}", path.display());
            // <zip folder>/<alphabet>/<character>/<drawing>.png
            let parts: Vec<&str> = name.split('/').collect();
            let [_, alphabet, character, file] = parts[..] else {
                return Err(DataError::invalid(where_(), "expected <folder>/<alphabet>/<character>/<drawing>.png"));
            };
            let class = format!("{alphabet}/{character}");
            let slot = classes.entry(class).or_insert_with(|| (z, Vec::new()));
            if slot.0 != z {
                continue; // the same character from an earlier zip
            }
            let file = file.to_string();
            let (_, bytes) = read_entry(&mut archive, &path, i)?;
            let image = drawing(&bytes, size).map_err(|msg| DataError::invalid(where_(), msg))?;
            slot.1.push((file, image));
        }
    }
    if classes.is_empty() {
        return Err(DataError::invalid(dir.display(), "the Omniglot zips hold no PNG images"));
    }
    let mut set = ImageSet { channels: 1, height: size, width: size, class_names: Vec::new(), images: Vec::new() };
    for (name, (_, mut drawings)) in classes {
        drawings.sort_by(|a, b| a.0.cmp(&b.0));
        set.class_names.push(name);
        set.images.push(drawings.into_iter().flat_map(|(_, img)| img).collect());
    }
    Ok(set)
}

/// The 20 official one-shot runs of `dir/all_runs.zip` (Lake et al. 2015), each a 20-way 1-shot
/// [`Episode`] of `size`×`size` drawings (same preprocessing as [`load_omniglot`]): the support
/// is `runNN/training/class01..class20.png` (labels 0..19), the query the 20 `test/itemMM.png`
/// put in class order by `class_labels.txt` (each run tests every class once).
pub fn load_omniglot_runs(dir: &Path, size: usize) -> Result<Vec<Episode>, DataError> {
    if size == 0 {
        return Err(DataError::invalid("omniglot", "image size 0"));
    }
    let path = dir.join(OMNIGLOT_RUNS_ZIP);
    let mut archive = open_zip(&path, "Omniglot's one-shot runs (all_runs.zip)", RUNS_HINT)?;
    let mut files = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let (name, bytes) = read_entry(&mut archive, &path, i)?;
        if !name.ends_with('/') {
            files.insert(name, bytes);
        }
    }
    let bad = |what: &str, msg: String| DataError::invalid(format!("{}:{what}", path.display()), msg);
    let mut runs = Vec::new();
    for (name, labels) in files.iter().filter(|(n, _)| n.ends_with("/class_labels.txt")) {
        let run = &name[..name.len() - "class_labels.txt".len()];
        let text = std::str::from_utf8(labels).map_err(|_| bad(name, "not UTF-8 text".into()))?;
        // "runNN/test/itemMM.png runNN/training/classKK.png" per line.
        let mut query_of: std::collections::BTreeMap<&str, &str> = Default::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let [item, class] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                return Err(bad(name, format!("expected \"<test item> <training class>\", got {line:?}")));
            };
            if query_of.insert(class, item).is_some() {
                return Err(bad(name, format!("{class} is tested more than once")));
            }
        }
        let classes: Vec<&String> = files.keys().filter(|k| k.starts_with(&format!("{run}training/")) && k.ends_with(".png")).collect();
        if classes.len() < 2 || classes.len() != query_of.len() {
            return Err(bad(name, format!("{} training classes, {} tested", classes.len(), query_of.len())));
        }
        let read = |file: &str| -> Result<Vec<f32>, DataError> {
            let bytes = files.get(file).ok_or_else(|| bad(name, format!("names {file}, which is not in the archive")))?;
            drawing(bytes, size).map_err(|msg| bad(file, msg))
        };
        let ways = classes.len();
        let mut e = Episode {
            ways,
            shots: 1,
            queries: 1,
            images: Vec::with_capacity(2 * ways * size * size),
            labels: Vec::with_capacity(2 * ways),
        };
        for (label, class) in classes.iter().enumerate() {
            e.images.extend(read(class)?);
            e.labels.push(label as u32);
        }
        for (label, class) in classes.iter().enumerate() {
            let item = query_of.get(class.as_str()).ok_or_else(|| bad(name, format!("{class} is never tested")))?;
            e.images.extend(read(item)?);
            e.labels.push(label as u32);
        }
        runs.push(e);
    }
    if runs.is_empty() {
        return Err(DataError::invalid(path.display(), "no runNN/class_labels.txt in the archive"));
    }
    Ok(runs)
}

/// Decodes a PNG of any bit depth and colour type to grey levels in [0, 1] (colour by PIL's
/// `convert('L')` weights 0.299, 0.587, 0.114; alpha ignored), row-major, with its height and width.
pub fn decode_gray(bytes: &[u8]) -> Result<(Vec<f32>, usize, usize), String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("not a readable PNG: {e}"))?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(|e| format!("not a readable PNG: {e}"))?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let channels = frame.color_type.samples();
    let mut gray = Vec::with_capacity(w * h);
    for row in buf[..frame.line_size * h].chunks_exact(frame.line_size) {
        for px in row[..w * channels].chunks_exact(channels) {
            let level = match channels {
                1 | 2 => f32::from(px[0]),
                _ => 0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]),
            };
            gray.push(level / 255.0);
        }
    }
    Ok((gray, h, w))
}

/// Area-averaging resize of a `sh`×`sw` plane to `dh`×`dw`: output pixel (i, j) is the mean of
/// the source over the rectangle it covers, `[i·sh/dh, (i+1)·sh/dh) × [j·sw/dw, (j+1)·sw/dw)`,
/// source pixels counted by the fraction of them inside it. Done per axis (it is separable),
/// in f64 so that a uniform area comes out exactly as its value (all-ink is exactly 1.0).
pub fn area_resize(src: &[f32], sh: usize, sw: usize, dh: usize, dw: usize) -> Vec<f32> {
    let (wy, wx) = (area_weights(sh, dh), area_weights(sw, dw));
    // Columns first: sh × dw.
    let mut tmp = vec![0.0f64; sh * dw];
    for y in 0..sh {
        let row = &src[y * sw..(y + 1) * sw];
        for (j, taps) in wx.iter().enumerate() {
            tmp[y * dw + j] = taps.iter().map(|&(k, a)| a * f64::from(row[k])).sum();
        }
    }
    let mut out = vec![0.0f32; dh * dw];
    for (i, taps) in wy.iter().enumerate() {
        for j in 0..dw {
            out[i * dw + j] = taps.iter().map(|&(k, a)| a * tmp[k * dw + j]).sum::<f64>() as f32;
        }
    }
    out
}

/// For each of `dst` output cells along an axis of `src` pixels: the source pixels it overlaps
/// and the weights (overlap / cell width, summing to 1). Exact in rationals: cell `i` spans
/// `[i·src, (i+1)·src)` in units of 1/dst pixel.
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f64)>> {
    (0..dst)
        .map(|i| {
            let (lo, hi) = (i * src, (i + 1) * src);
            (lo / dst..hi.div_ceil(dst))
                .filter_map(|k| {
                    let overlap = hi.min((k + 1) * dst).saturating_sub(lo.max(k * dst));
                    (overlap > 0).then(|| (k, overlap as f64 / src as f64))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_weights_cover_each_cell_once() {
        for (src, dst) in [(105, 28), (28, 105), (10, 10), (7, 3)] {
            let w = area_weights(src, dst);
            let mut per_source = vec![0.0f64; src];
            for taps in &w {
                let s: f64 = taps.iter().map(|t| t.1).sum();
                assert!((s - 1.0).abs() < 1e-12, "{src}->{dst}: weights sum to {s}");
                for &(k, a) in taps {
                    per_source[k] += a;
                }
            }
            // Each source pixel contributes dst/src in total (its area, in output cells).
            for p in per_source {
                assert!((p - dst as f64 / src as f64).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn area_resize_averages_blocks_and_keeps_the_mean() {
        // A 4×4 plane to 2×2: the means of the 2×2 blocks.
        let src: Vec<f32> = (0..16).map(|k| k as f32).collect();
        assert_eq!(area_resize(&src, 4, 4, 2, 2), vec![2.5, 4.5, 10.5, 12.5]);
        // 105 → 28 keeps the mean (the weights are a partition of unity per source pixel).
        let src: Vec<f32> = (0..105 * 105).map(|k| ((k * 7919) % 13) as f32 / 12.0).collect();
        let out = area_resize(&src, 105, 105, 28, 28);
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!((mean(&out) - mean(&src)).abs() < 1e-5);
        assert!(out.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert_eq!(area_resize(&[1.0; 105 * 105], 105, 105, 28, 28), vec![1.0; 28 * 28]);
    }

    #[test]
    fn decode_gray_reads_one_bit_png() {
        // Encode a 3×2 1-bit image with the png crate and read it back.
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 3, 2);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::One);
            let mut w = enc.write_header().unwrap();
            // Rows 101 and 010 (MSB first, padded to a byte).
            w.write_image_data(&[0b1010_0000, 0b0100_0000]).unwrap();
        }
        let (g, h, w) = decode_gray(&bytes).unwrap();
        assert_eq!((h, w), (2, 3));
        assert_eq!(g, vec![1., 0., 1., 0., 1., 0.]);
        assert!(decode_gray(&bytes[..bytes.len() / 2]).unwrap_err().contains("not a readable PNG"));
    }
}
