//! Scanning, splitting and decoding image folders.

use runner::data::ColorMode;
use runner::data::{self, Reason};

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
        .map(|s| format!("{}:{}", s.label, s.path.file_name().unwrap().to_string_lossy()))
        .collect();
    assert_eq!(names, ["0:c.png", "0:z.png", "1:a.png", "1:b.png"]);
    assert_eq!(listing.counts(), [2, 2]);
}

#[test]
fn stratified_split_keeps_class_balance_and_depends_only_on_the_seed() {
    let labels: Vec<usize> = (0..300).map(|i| if i < 200 { 0 } else { 1 }).collect();
    let s = data::split(&labels, 2, 0.3, 0.0, true, 42);
    assert_eq!(s.val.len(), 90);
    assert_eq!(s.val.iter().filter(|&&i| labels[i] == 1).count(), 30);
    assert_eq!(s.train.len() + s.val.len(), 300);
    let mut all: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..300).collect::<Vec<_>>(), "every sample in exactly one split");
    assert_eq!(s, data::split(&labels, 2, 0.3, 0.0, true, 42));
    assert_ne!(s, data::split(&labels, 2, 0.3, 0.0, true, 43));

    let plain = data::split(&labels, 2, 0.3, 0.0, false, 42);
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
    let err = data::decode::decode(&tmp.path().join("bad.png"), [4, 4], ColorMode::Grayscale).unwrap_err();
    assert_eq!(err.0, Reason::Corrupt, "{err:?}");
    std::fs::write(tmp.path().join("notes.jpg"), b"hello").unwrap();
    let err = data::decode::decode(&tmp.path().join("notes.jpg"), [4, 4], ColorMode::Grayscale).unwrap_err();
    assert_eq!(err.0, Reason::NotAnImage, "{err:?}");
}

#[test]
fn train_validation_and_test_splits_are_stratified_disjoint_and_seeded() {
    // Three classes of different sizes.
    let labels: Vec<usize> = (0..370)
        .map(|i| {
            if i < 200 {
                0
            } else if i < 300 {
                1
            } else {
                2
            }
        })
        .collect();
    let s = data::split(&labels, 3, 0.2, 0.1, true, 7);
    for (class, n) in [(0, 200.0), (1, 100.0), (2, 70.0)] {
        let count = |idx: &[usize]| idx.iter().filter(|&&i| labels[i] == class).count() as f64;
        assert!((count(&s.val) - n * 0.2).abs() <= 1.0, "class {class} validation {}", count(&s.val));
        assert!((count(&s.test) - n * 0.1).abs() <= 1.0, "class {class} test {}", count(&s.test));
    }
    let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..370).collect::<Vec<_>>(), "every sample in exactly one split");
    assert_eq!(s, data::split(&labels, 3, 0.2, 0.1, true, 7));
    assert_eq!(s.name_of(s.test[0]), "test");
    // A tiny class still keeps one image for training and one for validation.
    let tiny = data::split(&[0, 0, 1, 1], 2, 0.2, 0.2, true, 1);
    assert_eq!((tiny.train.len(), tiny.val.len(), tiny.test.len()), (2, 2, 0));
}

/// Left half dark, right half bright, 16 wide and 8 high, whatever the file format.
fn assert_dark_left_bright_right(name: &str, pixels: &[u8]) {
    let (left, right) = (pixels[8 * 16 / 2 - 16 + 1], pixels[8 * 16 / 2 - 2]);
    assert!(left < 70 && right > 190, "{name}: left {left}, right {right}; pixels {pixels:?}");
}

#[test]
fn unusual_but_valid_images_are_decoded_upright() {
    let dir = crate::util::repo().join("tests/fixtures/odd_images");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    for name in names {
        let path = dir.join(&name);
        let name = name.to_string_lossy();
        let gray =
            data::decode::decode(&path, [8, 16], ColorMode::Grayscale).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_dark_left_bright_right(&name, &gray);
        let rgb = data::decode::decode(&path, [8, 16], ColorMode::Rgb).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        // Every channel plane shows the same halves.
        for c in 0..3 {
            assert_dark_left_bright_right(&format!("{name} channel {c}"), &rgb[c * 128..(c + 1) * 128]);
        }
    }
}

/// A PNG that declares `width`x`height` pixels but holds almost no data.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let chunk = |tag: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(tag);
        c.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(tag);
        crc.update(data);
        c.extend_from_slice(&crc.finalize().to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn decompression_bombs_are_rejected_before_allocating() {
    let started = std::time::Instant::now();
    let err = data::decode::decode_bytes(&png_bomb(50_000, 50_000), [8, 8], ColorMode::Rgb).unwrap_err();
    assert_eq!(err.0, Reason::TooLarge, "{err:?}");
    assert!(started.elapsed().as_secs() < 2, "rejection must not decode the image");
}

#[test]
fn exif_orientation_is_applied() {
    let path = crate::util::repo().join("tests/fixtures/odd_images/exif_rotated.jpg");
    // Stored 8 wide and 16 high; displayed (and decoded) 16 wide and 8 high.
    let stored = image::open(&path).unwrap();
    assert_eq!((stored.width(), stored.height()), (8, 16));
    let upright = data::decode::decode(&path, [8, 16], ColorMode::Grayscale).unwrap();
    assert_dark_left_bright_right("exif_rotated.jpg", &upright);
}
