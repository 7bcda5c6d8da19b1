//! Scanning, splitting and decoding image folders.

use runner::config::ColorMode;
use runner::data;

use crate::util::gray_png;

#[test]
fn scan_sorts_classes_and_files_and_skips_litter() {
    let tmp = tempfile::tempdir().unwrap();
    for (class, files) in [("zebra", ["b.png", "a.png"]), ("ant", ["z.png", "c.png"])] {
        std::fs::create_dir_all(tmp.path().join(class)).unwrap();
        for f in files {
            gray_png(&tmp.path().join(class).join(f), 4, |_, _| 0);
        }
    }
    std::fs::write(tmp.path().join("ant/.DS_Store"), b"x").unwrap();
    std::fs::write(tmp.path().join("ant/Thumbs.db"), b"x").unwrap();
    std::fs::create_dir_all(tmp.path().join(".hidden")).unwrap();
    let listing = data::scan(tmp.path()).unwrap();
    assert_eq!(listing.classes, ["ant", "zebra"]);
    let names: Vec<String> = listing
        .samples
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s.label,
                s.path.file_name().unwrap().to_string_lossy()
            )
        })
        .collect();
    assert_eq!(names, ["0:c.png", "0:z.png", "1:a.png", "1:b.png"]);
    assert_eq!(listing.counts(), [2, 2]);
}

#[test]
fn stratified_split_keeps_class_balance_and_depends_only_on_the_seed() {
    let labels: Vec<usize> = (0..300).map(|i| if i < 200 { 0 } else { 1 }).collect();
    let s = data::split(&labels, 2, 0.3, true, 42);
    assert_eq!(s.val.len(), 90);
    assert_eq!(s.val.iter().filter(|&&i| labels[i] == 1).count(), 30);
    assert_eq!(s.train.len() + s.val.len(), 300);
    let mut all: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..300).collect::<Vec<_>>(),
        "every sample in exactly one split"
    );
    assert_eq!(s, data::split(&labels, 2, 0.3, true, 42));
    assert_ne!(s, data::split(&labels, 2, 0.3, true, 43));

    let plain = data::split(&labels, 2, 0.3, false, 42);
    assert_eq!(plain.val.len(), 90);
}

#[test]
fn epoch_order_is_a_seeded_permutation_that_changes_each_epoch() {
    let train: Vec<usize> = (0..50).collect();
    let e0 = data::epoch_order(&train, 1, 0);
    let e1 = data::epoch_order(&train, 1, 1);
    assert_ne!(e0, e1);
    assert_eq!(e0, data::epoch_order(&train, 1, 0));
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, train);
}

#[test]
fn decode_resizes_converts_and_scales_to_unit_range() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("g.png");
    gray_png(&path, 8, |x, _| if x < 4 { 0 } else { 255 });
    let gray = data::decode::decode(&path, [4, 4], ColorMode::Grayscale).unwrap();
    assert_eq!(gray.len(), 16);
    assert_eq!((gray[0], gray[3]), (0, 255));
    let rgb = data::decode::decode(&path, [2, 3], ColorMode::Rgb).unwrap();
    assert_eq!(rgb.len(), 3 * 2 * 3, "CHW with three channels");

    std::fs::write(tmp.path().join("bad.png"), b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let err = data::decode::decode(&tmp.path().join("bad.png"), [4, 4], ColorMode::Grayscale)
        .unwrap_err();
    assert!(err.contains("corrupt"), "{err}");
    std::fs::write(tmp.path().join("notes.jpg"), b"hello").unwrap();
    assert!(
        data::decode::decode(&tmp.path().join("notes.jpg"), [4, 4], ColorMode::Grayscale).is_err()
    );
}
