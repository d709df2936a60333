//! The real data sets: 20 Newsgroups and ijcnn1 from the shared data folder (`<repo>/../shared/data`),
//! MNIST from `<repo>/data/mnist` (`scripts/setup.sh` fetches it). The counts are the ones the
//! reference pipeline (scikit-learn) gives, so they must match exactly.

use std::path::PathBuf;
use std::time::Instant;

use bilevel_core::backend::HostMatrix;
use bilevel_core::data::idx::Mnist;
use bilevel_core::data::newsgroups::{self, Cache, Newsgroups};
use bilevel_core::data::{class_counts, ijcnn1};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shared_data() -> PathBuf {
    repo().join("../shared/data")
}

fn labels(l: &[f64]) -> Vec<usize> {
    l.iter().map(|&y| y as usize).collect()
}

#[test]
fn newsgroups_matches_scikit_learn_and_caches() {
    let archive = shared_data().join(newsgroups::ARCHIVE);
    let cache = std::env::temp_dir().join(format!("bilevel-20news-cache-{}", std::process::id()));
    let t = Instant::now();
    let (ng, status) = newsgroups::load(&archive, Some(&cache)).unwrap();
    eprintln!("20news built in {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(status.status(), "written");
    assert_eq!(ng.groups.len(), 20);
    assert_eq!(ng.groups[0], "alt.atheism");
    assert_eq!(ng.vocabulary.len(), 130_107);
    assert_eq!(ng.train.x.shape(), (11_314, 130_107));
    assert_eq!(ng.train.x.nnz(), 1_787_565);
    assert_eq!(ng.test.x.shape(), (7_532, 130_107));
    assert!(ng.vocabulary.windows(2).all(|w| w[0] < w[1]));
    // Every row has unit norm.
    for i in [0, 5_000, 11_313] {
        let norm: f64 = ng.train.x.row(i).iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-12);
    }
    // The bydate training subset's class sizes (scikit-learn's `np.bincount(y_train)`).
    assert_eq!(
        class_counts(&labels(&ng.train.labels), 20),
        [480, 584, 591, 590, 578, 593, 585, 594, 598, 597, 600, 595, 591, 594, 593, 599, 546, 564, 465, 377]
    );

    // The paper's split: 5,657 / 5,657, stratified, seeded.
    let (train, val) = ng.paper_split(0);
    assert_eq!((train.x.shape().0, val.x.shape().0), (5_657, 5_657));
    assert_eq!(train.x.nnz() + val.x.nnz(), 1_787_565);
    let (ct, cv) = (class_counts(&labels(&train.labels), 20), class_counts(&labels(&val.labels), 20));
    assert!(ct.iter().zip(&cv).all(|(a, b)| a.abs_diff(*b) <= 1), "{ct:?} {cv:?}");
    assert_eq!(ng.paper_split(0).1.labels, val.labels);

    // The second load comes from the cache, identical.
    let t = Instant::now();
    let (again, status) = newsgroups::load(&archive, Some(&cache)).unwrap();
    eprintln!("20news from the cache in {:.2} s", t.elapsed().as_secs_f64());
    assert!(matches!(status, Cache::Hit(_)), "{status:?}");
    same(&ng, &again);

    // A corrupt cache is rebuilt, not trusted.
    let Cache::Hit(file) = status else { unreachable!() };
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let (rebuilt, status) = newsgroups::load(&archive, Some(&cache)).unwrap();
    assert_eq!(status, Cache::Built { path: file.clone(), stale: Some("checksum mismatch".into()), error: None });
    same(&ng, &rebuilt);
    assert_eq!(newsgroups::load(&archive, Some(&cache)).unwrap().1.status(), "hit");
    std::fs::remove_dir_all(&cache).ok();
}

fn same(a: &Newsgroups, b: &Newsgroups) {
    assert_eq!(a.groups, b.groups);
    assert_eq!(a.vocabulary, b.vocabulary);
    for (x, y) in [(&a.train, &b.train), (&a.test, &b.test)] {
        assert_eq!(x.labels, y.labels);
        let (HostMatrix::Csr { indptr: p1, indices: i1, values: v1, .. }, HostMatrix::Csr { indptr: p2, indices: i2, values: v2, .. }) =
            (&x.x, &y.x)
        else {
            panic!("not CSR")
        };
        assert!(p1 == p2 && i1 == i2 && v1 == v2);
    }
}

#[test]
fn ijcnn1_shapes_and_labels() {
    let (train, test) = ijcnn1::read(&shared_data().join("ijcnn1")).unwrap();
    assert_eq!(train.x.shape(), (49_990, 22));
    assert_eq!(test.x.shape(), (91_701, 22));
    let pos = |l: &[f64]| l.iter().filter(|&&y| y == 1.0).count();
    assert!(train.labels.iter().chain(&test.labels).all(|&y| y == 1.0 || y == -1.0));
    assert_eq!(pos(&train.labels), 4_853);
    assert_eq!(pos(&test.labels), 8_712);
}

#[test]
fn mnist_label_counts_and_hyperclean_split() {
    let dir = repo().join("data/mnist");
    let m = Mnist::read(&dir).unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh first)"));
    assert_eq!((m.train_images.count, m.test_images.count), (60_000, 10_000));
    let counts = |l: &[u8]| class_counts(&l.iter().map(|&y| y as usize).collect::<Vec<_>>(), 10);
    assert_eq!(counts(&m.train_labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(counts(&m.test_labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    let (train, val, test) = m.hyperclean();
    assert_eq!((train.x.shape(), val.x.shape(), test.x.shape()), ((20_000, 784), (5_000, 784), (10_000, 784)));
    assert_eq!(val.labels[0], m.train_labels[20_000] as f64);
}
