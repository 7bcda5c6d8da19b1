//! Scanning and decoding image folders (the split: in `src/data/split.rs`).

use runner::data::{self, Reason};
use runner::data::{ColorMode, Interpolation, Resize};

use crate::util::gray_png;

const BILINEAR: Interpolation = Interpolation::Bilinear;
const STRETCH: Resize = Resize::Stretch;

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
    let gray = data::decode::decode(&path, [4, 4], ColorMode::Grayscale, BILINEAR, STRETCH).unwrap();
    assert_eq!(gray.len(), 16);
    assert_eq!((gray[0], gray[3]), (0, 255));
    let rgb = data::decode::decode(&path, [2, 3], ColorMode::Rgb, BILINEAR, STRETCH).unwrap();
    assert_eq!(rgb.len(), 3 * 2 * 3, "CHW with three channels");

    std::fs::write(tmp.path().join("bad.png"), b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let err =
        data::decode::decode(&tmp.path().join("bad.png"), [4, 4], ColorMode::Grayscale, BILINEAR, STRETCH).unwrap_err();
    assert_eq!(err.0, Reason::Corrupt, "{err:?}");
    std::fs::write(tmp.path().join("notes.jpg"), b"hello").unwrap();
    let err = data::decode::decode(&tmp.path().join("notes.jpg"), [4, 4], ColorMode::Grayscale, BILINEAR, STRETCH)
        .unwrap_err();
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
        let gray = data::decode::decode(&path, [8, 16], ColorMode::Grayscale, BILINEAR, STRETCH)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_dark_left_bright_right(&name, &gray);
        let rgb = data::decode::decode(&path, [8, 16], ColorMode::Rgb, BILINEAR, STRETCH)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        // Every channel plane shows the same halves.
        for c in 0..3 {
            assert_dark_left_bright_right(&format!("{name} channel {c}"), &rgb[c * 128..(c + 1) * 128]);
        }
    }
}

/// A PNG that declares `width`x`height` greyscale pixels but holds almost no data.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    png_bomb_of(width, height, 0)
}

/// [`png_bomb`] of PNG colour type `color` (0 grey, 2 RGB, 6 RGBA), 8 bits a sample.
fn png_bomb_of(width: u32, height: u32, color: u8) -> Vec<u8> {
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
    ihdr.extend_from_slice(&[8, color, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn decompression_bombs_are_rejected_before_allocating() {
    let started = std::time::Instant::now();
    let err =
        data::decode::decode_bytes(&png_bomb(50_000, 50_000), [8, 8], ColorMode::Rgb, BILINEAR, STRETCH).unwrap_err();
    assert_eq!(err.0, Reason::TooLarge, "{err:?}");
    assert!(started.elapsed().as_secs() < 2, "rejection must not decode the image");
}

#[test]
fn exif_orientation_is_applied() {
    let path = crate::util::repo().join("tests/fixtures/odd_images/exif_rotated.jpg");
    // Stored 8 wide and 16 high; displayed (and decoded) 16 wide and 8 high.
    let stored = image::open(&path).unwrap();
    assert_eq!((stored.width(), stored.height()), (8, 16));
    let upright = data::decode::decode(&path, [8, 16], ColorMode::Grayscale, BILINEAR, STRETCH).unwrap();
    assert_dark_left_bright_right("exif_rotated.jpg", &upright);
}

/// Noise images of `side` x `side` RGB in two classes, `per_class` each.
fn noise_pngs(dst: &std::path::Path, per_class: usize, side: u32) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for class in ["a", "b"] {
        std::fs::create_dir_all(dst.join(class)).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(side, side, |_, _| image::Rgb(rng.gen()));
            img.save(dst.join(class).join(format!("{i:05}.png"))).unwrap();
        }
    }
}

/// One epoch of a model that pools 64x64 images straight down to 8x8, so that the data, not
/// the model, is what a run holds.
fn pooling_config(name: &str, data: &std::path::Path, results: &std::path::Path) -> String {
    format!(
        r#"[experiment]
name = "{name}"

[data]
path = "{}"
image_size = [64, 64]

[[model.layers]]
type = "max_pooling2d"
pool_size = [8, 8]

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 2
activation = "softmax"

[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
batch_size = 32

[output]
dir = "{}"
plot_formats = []
"#,
        data.display(),
        results.display()
    )
}

fn peak_anonymous_mib(run: &std::path::Path) -> f64 {
    let manifest = crate::util::manifest(run);
    manifest["peak_anonymous_mib"].as_f64().expect("the manifest records peak_anonymous_mib")
}

/// Images are read from the cache file as batches need them: a dataset 8 times larger (36 MiB
/// decoded against 4.5 MiB) leaves the run's anonymous peak where it was, within a margin far
/// below the 63 MiB that holding the decoded dataset twice would add.
#[test]
fn memory_of_a_training_does_not_grow_with_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for (name, per_class) in [("small", 192), ("large", 8 * 192)] {
        let data = tmp.path().join(name);
        noise_pngs(&data, per_class, 64);
        let config = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&config, pooling_config(name, &data, &tmp.path().join("results"))).unwrap();
        let out = crate::util::runner_with(tmp.path(), &[config.to_str().unwrap()], 2, &tmp.path().join("cache"));
        crate::util::assert_exit(&out, 0);
        peaks.push(peak_anonymous_mib(&tmp.path().join("results").join(name).join("run-001")));
    }
    let (small, large) = (peaks[0], peaks[1]);
    assert!(small > 1.0, "a peak of {small} MiB is not a measurement");
    assert!(large < small + 12.0, "anonymous peak {large} MiB on the large set, {small} MiB on the small one");
}

/// Two runners started at once on one dataset with one cache folder: one decodes while the
/// other waits for the cache lock and then reads what the first wrote; both runs complete and
/// the cache is whole (a third run decodes nothing).
#[test]
fn two_runners_filling_one_cache_at_once_both_finish_with_one_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    noise_pngs(&data, 400, 64);
    let cache = tmp.path().join("cache");
    let start = |name: &str| {
        let config = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&config, pooling_config(name, &data, &tmp.path().join("results"))).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg(&config)
            .current_dir(tmp.path())
            .env("RAYON_NUM_THREADS", "1")
            .env("RUNNER_CACHE_DIR", &cache)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("first"), start("second"));
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut decoded = Vec::new();
    for (out, name) in outputs.iter().zip(["first", "second"]) {
        crate::util::assert_exit(out, 0);
        let run = tmp.path().join("results").join(name).join("run-001");
        let manifest = crate::util::manifest(&run);
        decoded.push(manifest["dataset"]["decoded"].as_u64().unwrap());
    }
    decoded.sort();
    assert_eq!(decoded, [0, 800], "one runner decoded every image, the other none");
    let files: Vec<String> =
        std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.iter().filter(|f| f.ends_with(".bin")).count(), 1, "one cache file: {files:?}");
    assert!(files.iter().all(|f| f.ends_with(".bin") || f.ends_with(".lock")), "no temporary file left: {files:?}");
    let out = crate::util::runner_with(tmp.path(), &[tmp.path().join("first.toml").to_str().unwrap()], 2, &cache);
    crate::util::assert_exit(&out, 0);
    let manifest = crate::util::manifest(&tmp.path().join("results/first/run-002"));
    assert_eq!(manifest["dataset"]["decoded"], 0, "the cache is whole");
}

/// A PNG of `width` x `height` with `channels` channels (1 or 3) whose pixels follow the
/// formula of tests/reference/make_resize_reference.py, and the colour mode to decode it in.
fn reference_png(width: u32, height: u32, channels: u32) -> (Vec<u8>, ColorMode) {
    let value = |x: u64, y: u64, c: u64| {
        let (w, h) = (u64::from(width), u64::from(height));
        ((x * 255 / (w - 1) + y * 97 / (h - 1) + ((x * 31 + y * 17 + c * 59) * 2_654_435_761 >> 7) % 41 + c * 40) % 256)
            as u8
    };
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut png);
    let (mode, color) = match channels {
        1 => (ColorMode::Grayscale, image::ExtendedColorType::L8),
        _ => (ColorMode::Rgb, image::ExtendedColorType::Rgb8),
    };
    let raw: Vec<u8> = (0..u64::from(height))
        .flat_map(|y| (0..u64::from(width)).flat_map(move |x| (0..u64::from(channels)).map(move |c| (x, y, c))))
        .map(|(x, y, c)| value(x, y, c))
        .collect();
    image::ImageEncoder::write_image(encoder, &raw, width, height, color).unwrap();
    (png, mode)
}

/// Asserts that runner's CHW bytes `got` are within `tolerance` of the reference's HWC `want`,
/// but at pixels `skip` says to leave out (row, column).
fn assert_within(
    got: &[u8],
    want: &[u8],
    [h, w]: [usize; 2],
    c: usize,
    tolerance: u8,
    case: &str,
    skip: impl Fn(usize, usize) -> bool,
) {
    assert_eq!(got.len(), want.len(), "{case}: sizes");
    for (i, &g) in got.iter().enumerate() {
        let (ch, pixel) = (i / (h * w), i % (h * w));
        if skip(pixel / w, pixel % w) {
            continue;
        }
        let p = want[pixel * c + ch];
        assert!(g.abs_diff(p) <= tolerance, "{case}: channel {ch} pixel {pixel}: runner {g}, reference {p}");
    }
}

/// Every `data.interpolation` against its reference resizing the same pixels (written by
/// tests/reference/make_resize_reference.py): Pillow for `bilinear` and `area`, TensorFlow
/// (Keras' `image_dataset_from_directory`) for `nearest`; shrinking and enlarging, greyscale
/// and RGB. Pillow and fast_image_resize both convolve in fixed point with Pillow's filter
/// weights, so a value may differ by one step of rounding at most; nearest neighbour picks
/// the same pixels.
#[test]
fn each_interpolation_resizes_as_its_reference_does() {
    let path = crate::util::repo().join("tests/reference/resize.json");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 24);
    for case in cases {
        let n = |k: &str| case[k].as_u64().unwrap() as u32;
        let (channels, width, height) = (n("channels"), n("width"), n("height"));
        let (png, mode) = reference_png(width, height, channels);
        let interpolation: Interpolation =
            serde_json::from_value(case["interpolation"].clone()).expect("an interpolation name");
        let [w, h] = [n("out_width") as usize, n("out_height") as usize];
        let got = data::decode::decode_bytes(&png, [h, w], mode, interpolation, STRETCH).unwrap();
        let want: Vec<u8> = case["hwc"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        let tolerance = if interpolation == Interpolation::Nearest { 0 } else { 1 };
        let name = format!("{interpolation:?} {width}x{height}x{channels} to {w}x{h}");
        assert_within(&got, &want, [h, w], channels as usize, tolerance, &name, |_, _| false);
    }
}

/// Whether output pixel `k` of `n` input pixels resized to `m` has an edge exactly on an
/// input pixel's centre (`k · n / m = j + ½` at its start or end): there a box filter's one
/// input pixel is in or out by the last bit of a float, and Pillow's arithmetic and
/// fast_image_resize's round it differently (a whole pixel's difference in the mean).
fn box_edge_on_a_centre(k: usize, n: usize, m: usize) -> bool {
    [k, k + 1].iter().any(|&e| (2 * e * n) % (2 * m) == m)
}

/// `data.resize = "crop"` and `"pad"` against Keras' `image_dataset_from_directory`
/// (`crop_to_aspect_ratio`, `pad_to_aspect_ratio`; written by
/// tests/reference/make_resize_aspect_reference.py) on wide, tall and very flat images, to
/// square, tall, wide and larger sizes. The window (what crop keeps, where pad puts the
/// image) must be Keras' exactly; the pixels: nearest identical to Keras', bilinear within 1
/// level of Keras' when enlarging (TensorFlow interpolates in float, runner in fixed point),
/// and bilinear and area within 1 level of Pillow's resizing of Keras' window when shrinking,
/// where runner antialiases as Pillow does and Keras does not (as for `stretch` above). For
/// area, rows and columns whose box edge falls exactly on an input pixel's centre are left
/// out (see `box_edge_on_a_centre`; `stretch` has the same difference at such sizes).
#[test]
fn crop_and_pad_keep_the_aspect_ratio_as_keras_does() {
    let path = crate::util::repo().join("tests/reference/resize_aspect.json");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 96);
    for case in cases {
        let n = |k: &str| case[k].as_u64().unwrap() as u32;
        let (channels, width, height) = (n("channels"), n("width"), n("height"));
        let (png, mode) = reference_png(width, height, channels);
        let interpolation: Interpolation = serde_json::from_value(case["interpolation"].clone()).unwrap();
        let fit: Resize = serde_json::from_value(case["resize"].clone()).unwrap();
        let [w, h] = [n("out_width") as usize, n("out_height") as usize];
        let name = format!("{fit:?} {interpolation:?} {width}x{height}x{channels} to {w}x{h}");
        let window = match fit {
            Resize::Crop => data::decode::crop_window([height, width], [h, w]),
            _ => data::decode::pad_window([height, width], [h, w]),
        };
        let k = &case["window"];
        let keras = [&k["top"], &k["left"], &k["height"], &k["width"]].map(|v| v.as_u64().unwrap() as u32);
        assert_eq!([window.top, window.left, window.height, window.width], keras, "{name}: the window");
        let got = data::decode::decode_bytes(&png, [h, w], mode, interpolation, fit).unwrap();
        let want: Vec<u8> = case["hwc"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        let tolerance = if interpolation == Interpolation::Nearest { 0 } else { 1 };
        // The resized part of the output, and the size it was resized from.
        let (area, from) = match fit {
            Resize::Crop => ([0, 0, h, w], [window.height as usize, window.width as usize]),
            _ => {
                let [t, l] = [window.top as usize, window.left as usize];
                ([t, l, window.height as usize, window.width as usize], [height as usize, width as usize])
            }
        };
        let tie = |y: usize, x: usize| {
            let [t, l, rh, rw] = area;
            let inside = (t..t + rh).contains(&y) && (l..l + rw).contains(&x);
            interpolation == Interpolation::Area
                && inside
                && (box_edge_on_a_centre(y - t, from[0], rh) || box_edge_on_a_centre(x - l, from[1], rw))
        };
        assert_within(&got, &want, [h, w], channels as usize, tolerance, &name, tie);
    }
}

/// The limits at their edges: a file of 256 MiB is read and one byte more is refused unread;
/// an image within 16,384 pixels a side whose decoder would need over 512 MiB is refused
/// before allocating, as is one a pixel wider than the side limit.
#[test]
fn the_file_size_and_decoder_memory_limits_hold_at_their_edges() {
    let tmp = tempfile::tempdir().unwrap();
    let decode = |path: &std::path::Path| data::decode::decode(path, [8, 8], ColorMode::Rgb, BILINEAR, STRETCH);
    // Sparse files: no disk space, and the refused one is never read.
    let at_limit = tmp.path().join("at_limit.png");
    std::fs::File::create(&at_limit).unwrap().set_len(data::decode::MAX_FILE_BYTES).unwrap();
    assert_eq!(decode(&at_limit).unwrap_err().0, Reason::NotAnImage, "256 MiB is read, and is no image");
    let over = tmp.path().join("over.png");
    std::fs::File::create(&over).unwrap().set_len(data::decode::MAX_FILE_BYTES + 1).unwrap();
    let err = decode(&over).unwrap_err();
    assert_eq!(err.0, Reason::TooLarge, "{err:?}");
    assert!(err.1.contains("268435457 bytes is over the 268435456-byte limit"), "{err:?}");

    let started = std::time::Instant::now();
    // 16,000 x 16,000 RGBA: within the side limit, 1,000 MB for the decoder.
    let err = data::decode::decode_bytes(&png_bomb_of(16_000, 16_000, 6), [8, 8], ColorMode::Rgb, BILINEAR, STRETCH)
        .unwrap_err();
    assert_eq!(err.0, Reason::TooLarge, "{err:?}");
    let side = data::decode::MAX_SIDE;
    let err =
        data::decode::decode_bytes(&png_bomb(side + 1, 1), [8, 8], ColorMode::Rgb, BILINEAR, STRETCH).unwrap_err();
    assert_eq!(err.0, Reason::TooLarge, "{err:?}");
    assert!(started.elapsed().as_secs() < 2, "rejections must not decode the images");
    // Just inside both limits (16,384 x 2 grey pixels), the image is decoded (its data is short).
    let err = data::decode::decode_bytes(&png_bomb(side, 2), [8, 8], ColorMode::Rgb, BILINEAR, STRETCH).unwrap_err();
    assert_ne!(err.0, Reason::TooLarge, "{err:?}");
}
