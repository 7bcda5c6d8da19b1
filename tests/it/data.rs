//! Scanning and decoding image folders (the split: in `src/data/split.rs`).

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
