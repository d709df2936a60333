//! Few-shot image data: images grouped by class ([`ImageSet`]), the Omniglot rotation
//! augmentation, a seeded split of the classes into meta-train / meta-val / meta-test
//! ([`split_classes`]), and N-way K-shot tasks ([`sample_episode`]).
//!
//! Pure code over host memory (it builds for wasm32 too); the readers that fill an [`ImageSet`]
//! are [`super::omniglot`] and [`super::pickle`].

use rand::seq::{index, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::DataError;

/// Images grouped by class; every image is C×H×W f32, channel-major (CHW), values in the source's
/// convention (Omniglot: strokes 1.0, background 0.0; miniImageNet raw 0..255; FC100 in `[0, 1]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Channels C per image.
    pub channels: usize,
    /// Height H in pixels.
    pub height: usize,
    /// Width W in pixels.
    pub width: usize,
    /// One name per class, in the classes' order.
    pub class_names: Vec<String>,
    /// Per class: the concatenation of that class's images.
    pub images: Vec<Vec<f32>>,
}

/// The suffix [`ImageSet::with_rotations`] gives a rotated class's name: `"<base>@rot<degrees>"`.
const ROTATION_TAG: &str = "@rot";

impl ImageSet {
    /// C·H·W, the length of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Classes in the set.
    pub fn num_classes(&self) -> usize {
        self.images.len()
    }

    /// Images of class `class`.
    pub fn images_in(&self, class: usize) -> usize {
        self.images[class].len() / self.image_len().max(1)
    }

    /// Image `i` of class `class`.
    pub fn image(&self, class: usize, i: usize) -> &[f32] {
        let d = self.image_len();
        &self.images[class][i * d..(i + 1) * d]
    }

    /// Every image in the set.
    pub fn total_images(&self) -> usize {
        (0..self.num_classes()).map(|c| self.images_in(c)).sum()
    }

    /// Every class rotated by 90, 180, 270 degrees (counter-clockwise, as torchvision's `rotate`
    /// turns them) added as new classes (Omniglot augmentation): class `c` rotated by `r·90°` is
    /// class `r·n + c` of the result, named `"<name>@rot<degrees>"`. A 90° turn swaps height
    /// and width, so for non-square images only the 180° rotation is added.
    pub fn with_rotations(mut self) -> ImageSet {
        let n = self.num_classes();
        let quarter_turns: &[usize] = if self.height == self.width { &[1, 2, 3] } else { &[2] };
        for &turns in quarter_turns {
            for c in 0..n {
                let rotated: Vec<f32> = self.images[c].chunks_exact(self.image_len()).flat_map(|img| self.rotate(img, turns)).collect();
                self.images.push(rotated);
                self.class_names.push(format!("{}{ROTATION_TAG}{}", self.class_names[c], turns * 90));
            }
        }
        self
    }

    /// One image turned `turns` quarter turns counter-clockwise (each channel alike); `turns` is
    /// 2 for non-square images. Output pixel (y, x) reads the input pixel that lands there.
    fn rotate(&self, image: &[f32], turns: usize) -> Vec<f32> {
        let (h, w) = (self.height, self.width);
        let mut out = vec![0.0; image.len()];
        for (plane_in, plane_out) in image.chunks_exact(h * w).zip(out.chunks_exact_mut(h * w)) {
            for y in 0..h {
                for x in 0..w {
                    let (sy, sx) = match turns % 4 {
                        0 => (y, x),
                        1 => (x, w - 1 - y),
                        2 => (h - 1 - y, w - 1 - x),
                        _ => (h - 1 - x, y),
                    };
                    plane_out[y * w + x] = plane_in[sy * w + sx];
                }
            }
        }
        out
    }

    /// The classes `classes`, in that order.
    fn select(&self, classes: &[usize]) -> ImageSet {
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: classes.iter().map(|&c| self.class_names[c].clone()).collect(),
            images: classes.iter().map(|&c| self.images[c].clone()).collect(),
        }
    }
}

/// The name of the class a rotated class was made from (the name itself if not rotated).
fn base_name(name: &str) -> &str {
    match name.rfind(ROTATION_TAG) {
        Some(at) if name[at + ROTATION_TAG.len()..].parse::<u32>().is_ok() => &name[..at],
        _ => name,
    }
}

/// A seeded split of the classes into meta-train / meta-val / meta-test, no class in two parts.
#[derive(Clone, Debug)]
pub struct MetaSplit {
    /// Meta-training classes.
    pub train: ImageSet,
    /// Meta-validation classes.
    pub val: ImageSet,
    /// Meta-test classes.
    pub test: ImageSet,
}

/// Splits the classes at random (ChaCha8 from `seed`): `test_classes` to meta-test,
/// `val_classes` to meta-val, the rest to meta-train; each part keeps the set's class order.
/// The split is by base character: if `set` already holds rotated classes
/// ([`ImageSet::with_rotations`]), a character and its rotations go to the same part and the
/// counts are in base characters (rotating after the split gives the same parts).
pub fn split_classes(set: ImageSet, val_classes: usize, test_classes: usize, seed: u64) -> Result<MetaSplit, DataError> {
    // Group the classes by base character, in order of first appearance.
    let mut bases: Vec<&str> = Vec::new();
    let mut group_of = Vec::with_capacity(set.num_classes());
    for name in &set.class_names {
        let base = base_name(name);
        let g = bases.iter().position(|&b| b == base).unwrap_or_else(|| {
            bases.push(base);
            bases.len() - 1
        });
        group_of.push(g);
    }
    let groups = bases.len();
    if val_classes + test_classes >= groups {
        return Err(DataError::invalid(
            "class split",
            format!("{val_classes} validation + {test_classes} test classes leave no training class (the set has {groups})"),
        ));
    }
    let mut order: Vec<usize> = (0..groups).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut part_of_group = vec![0u8; groups]; // 0 train, 1 val, 2 test
    for (rank, &g) in order.iter().enumerate() {
        part_of_group[g] = if rank < test_classes {
            2
        } else if rank < test_classes + val_classes {
            1
        } else {
            0
        };
    }
    let part = |p: u8| -> Vec<usize> { (0..set.num_classes()).filter(|&c| part_of_group[group_of[c]] == p).collect() };
    Ok(MetaSplit { train: set.select(&part(0)), val: set.select(&part(1)), test: set.select(&part(2)) })
}

/// One N-way K-shot task. Images are stored support first then query, class-major inside each
/// (support = ways·shots images: class 0's shots, then class 1's, ...; same for query),
/// labels are 0..ways−1 after a random relabelling.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// Classes N in the task.
    pub ways: usize,
    /// Support images K per class.
    pub shots: usize,
    /// Query images per class.
    pub queries: usize,
    /// (ways·shots + ways·queries) · image_len values, support then query.
    pub images: Vec<f32>,
    /// One label per image, in the same order as `images`.
    pub labels: Vec<u32>,
}

impl Episode {
    /// Images in the support set (ways·shots).
    pub fn support_len(&self) -> usize {
        self.ways * self.shots
    }

    /// Images in the query set (ways·queries).
    pub fn query_len(&self) -> usize {
        self.ways * self.queries
    }
}

/// Draws `ways` distinct classes and `shots + queries` distinct images of each, seeded by `rng`.
/// Label `i` goes to the `i`-th class drawn, so the labelling is a random one. The first
/// `shots` images drawn of a class are its support, the rest its query.
/// Errors (never panics) on ways < 2, shots == 0, queries == 0, too few classes or too few images.
pub fn sample_episode(set: &ImageSet, ways: usize, shots: usize, queries: usize, rng: &mut impl Rng) -> Result<Episode, DataError> {
    let bad = |msg: String| Err(DataError::invalid("episode", msg));
    if ways < 2 {
        return bad(format!("{ways}-way tasks are not classification tasks (need at least 2 ways)"));
    }
    if shots == 0 {
        return bad("0 shots: each class needs at least one support image".into());
    }
    if queries == 0 {
        return bad("0 queries: each class needs at least one query image".into());
    }
    if ways > set.num_classes() {
        return bad(format!("{ways} ways but the set has only {} classes", set.num_classes()));
    }
    let per_class = shots + queries;
    if let Some(c) = (0..set.num_classes()).find(|&c| set.images_in(c) < per_class) {
        return bad(format!(
            "{shots} shots + {queries} queries need {per_class} images per class, but class {:?} has {}",
            set.class_names[c],
            set.images_in(c)
        ));
    }
    let classes = index::sample(rng, set.num_classes(), ways).into_vec();
    let picks: Vec<Vec<usize>> = classes.iter().map(|&c| index::sample(rng, set.images_in(c), per_class).into_vec()).collect();
    let d = set.image_len();
    let mut images = Vec::with_capacity(ways * per_class * d);
    let mut labels = Vec::with_capacity(ways * per_class);
    for range in [0..shots, shots..per_class] {
        for (label, (&c, picked)) in classes.iter().zip(&picks).enumerate() {
            for &i in &picked[range.clone()] {
                images.extend_from_slice(set.image(c, i));
                labels.push(label as u32);
            }
        }
    }
    Ok(Episode { ways, shots, queries, images, labels })
}

/// Training-time augmentation: every image of `images` (C×H×W each) translated by its own
/// offset (dy, dx), drawn uniformly from [−max_shift, max_shift]², the pixels moved outside
/// dropped and the uncovered ones set to 0 (Omniglot's background). Small shifts keep a
/// character's identity, so each draw is a new image of the same class: with only a few hundred
/// meta-training characters, this is what keeps the backbone from memorising them.
pub fn random_shift(images: &mut [f32], channels: usize, height: usize, width: usize, max_shift: usize, rng: &mut impl Rng) {
    let d = channels * height * width;
    if max_shift == 0 || d == 0 {
        return;
    }
    let k = max_shift as i64;
    let mut src = vec![0.0f32; d];
    for image in images.chunks_exact_mut(d) {
        let (dy, dx) = (rng.random_range(-k..=k) as isize, rng.random_range(-k..=k) as isize);
        shift_image(image, &mut src, channels, height, width, dy, dx);
    }
}

/// `image[c, y, x] ← image[c, y − dy, x − dx]` (0 where that is outside); `src` is scratch.
fn shift_image(image: &mut [f32], src: &mut [f32], channels: usize, height: usize, width: usize, dy: isize, dx: isize) {
    src.copy_from_slice(image);
    image.fill(0.0);
    let (h, w) = (height as isize, width as isize);
    // Destination columns x with 0 ≤ x − dx < w.
    let (x0, x1) = (dx.max(0), (w + dx).min(w));
    if x0 >= x1 {
        return;
    }
    for c in 0..channels {
        for y in dy.max(0)..(h + dy).min(h) {
            let dst = (c * height) as isize * w + y * w;
            let from = (c * height) as isize * w + (y - dy) * w;
            image[(dst + x0) as usize..(dst + x1) as usize].copy_from_slice(&src[(from + x0 - dx) as usize..(from + x1 - dx) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `classes` classes of `per_class` 1×2×3 images; pixel value = class·1000 + image·10 + pixel.
    fn toy(classes: usize, per_class: usize, h: usize, w: usize) -> ImageSet {
        let d = h * w;
        ImageSet {
            channels: 1,
            height: h,
            width: w,
            class_names: (0..classes).map(|c| format!("alpha/char{c:02}")).collect(),
            images: (0..classes).map(|c| (0..per_class * d).map(|k| (c * 1000 + (k / d) * 10 + k % d) as f32).collect()).collect(),
        }
    }

    #[test]
    fn quarter_turns_compose_and_match_the_definition() {
        let set = toy(1, 1, 3, 3);
        let img = set.image(0, 0).to_vec(); // rows [0 1 2; 3 4 5; 6 7 8]
        assert_eq!(set.rotate(&img, 1), vec![2., 5., 8., 1., 4., 7., 0., 3., 6.]);
        assert_eq!(set.rotate(&img, 2), img.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(set.rotate(&set.rotate(&img, 1), 1), set.rotate(&img, 2));
        assert_eq!(set.rotate(&set.rotate(&img, 2), 1), set.rotate(&img, 3));
        assert_eq!(set.rotate(&set.rotate(&img, 3), 1), img);
    }

    #[test]
    fn non_square_sets_get_only_the_half_turn() {
        let r = toy(2, 3, 2, 3).with_rotations();
        assert_eq!(r.num_classes(), 4);
        assert_eq!(r.class_names[3], "alpha/char01@rot180");
        assert_eq!(r.image(2, 1), toy(1, 3, 2, 3).image(0, 1).iter().rev().copied().collect::<Vec<_>>());
    }

    #[test]
    fn base_names_strip_only_rotation_tags() {
        assert_eq!(base_name("a/b@rot90"), "a/b");
        assert_eq!(base_name("a/b"), "a/b");
        assert_eq!(base_name("a/b@rotx"), "a/b@rotx");
    }

    #[test]
    fn split_before_or_after_rotation_gives_the_same_characters() {
        let set = toy(10, 2, 2, 2);
        let a = split_classes(set.clone(), 2, 3, 7).unwrap();
        let b = split_classes(set.with_rotations(), 2, 3, 7).unwrap();
        assert_eq!((a.train.num_classes(), a.val.num_classes(), a.test.num_classes()), (5, 2, 3));
        assert_eq!((b.train.num_classes(), b.val.num_classes(), b.test.num_classes()), (20, 8, 12));
        for (pa, pb) in [(&a.train, &b.train), (&a.val, &b.val), (&a.test, &b.test)] {
            let mut rotated_later = pa.clone().with_rotations().class_names;
            let mut split_later = pb.class_names.clone();
            rotated_later.sort();
            split_later.sort();
            assert_eq!(rotated_later, split_later);
        }
        assert!(split_classes(toy(3, 2, 2, 2), 1, 2, 0).is_err());
    }

    #[test]
    fn episode_layout_is_support_then_query_class_major() {
        let set = toy(6, 5, 1, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let e = sample_episode(&set, 3, 2, 1, &mut rng).unwrap();
        assert_eq!(e.labels, vec![0, 0, 1, 1, 2, 2, 0, 1, 2]);
        let class_of = |k: usize| (e.images[k * 2] / 1000.0) as usize;
        for k in 0..9 {
            assert_eq!(class_of(k), class_of(e.labels[k] as usize * 2), "image {k} is not of its label's class");
        }
    }

    #[test]
    fn shifts_move_pixels_and_fill_with_zero() {
        // 2 channels of 3×4, pixel value = 100·c + 10·y + x + 1 (never 0).
        let (c, h, w) = (2, 3, 4);
        let original: Vec<f32> = (0..c * h * w).map(|i| (100 * (i / (h * w)) + 10 * ((i / w) % h) + i % w + 1) as f32).collect();
        for dy in -3isize..=3 {
            for dx in -4isize..=4 {
                let mut img = original.clone();
                shift_image(&mut img, &mut vec![0.0; c * h * w], c, h, w, dy, dx);
                for ch in 0..c {
                    for y in 0..h as isize {
                        for x in 0..w as isize {
                            let (sy, sx) = (y - dy, x - dx);
                            let want = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                                original[ch * h * w + (sy * w as isize + sx) as usize]
                            } else {
                                0.0
                            };
                            assert_eq!(img[ch * h * w + (y * w as isize + x) as usize], want, "shift ({dy}, {dx}) at ({ch}, {y}, {x})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn random_shifts_are_bounded_seeded_and_off_at_zero() {
        // One stroke pixel in the middle of each 9×9 image: where it lands gives the offset.
        let (h, w, n) = (9, 9, 200);
        let mut images = vec![0.0f32; n * h * w];
        images.chunks_exact_mut(h * w).for_each(|im| im[4 * w + 4] = 1.0);
        let unshifted = images.clone();
        random_shift(&mut images, 1, h, w, 0, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(images, unshifted);
        let mut again = images.clone();
        random_shift(&mut images, 1, h, w, 2, &mut ChaCha8Rng::seed_from_u64(3));
        random_shift(&mut again, 1, h, w, 2, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(images, again);
        let mut seen = std::collections::HashSet::new();
        for im in images.chunks_exact(h * w) {
            let at = im.iter().position(|&v| v == 1.0).expect("a shift of at most 2 keeps the centre pixel in the image");
            assert_eq!(im.iter().sum::<f32>(), 1.0);
            let (dy, dx) = ((at / w) as isize - 4, (at % w) as isize - 4);
            assert!(dy.abs() <= 2 && dx.abs() <= 2, "offset ({dy}, {dx})");
            seen.insert((dy, dx));
        }
        assert_eq!(seen.len(), 25, "all 25 offsets drawn in 200 images");
    }
}
