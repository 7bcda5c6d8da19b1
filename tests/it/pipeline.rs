//! The data pipeline through the real binary: a messy folder, the decoded-image cache, the
//! test split.

use std::path::Path;

use crate::data::png_bomb;
use crate::util::*;

fn config(name: &str, data: &Path, extra_data: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
seed = 5

[data]
path = "{}"
image_size = [8, 16]
color_mode = "rgb"
validation_split = 0.25
{extra_data}

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 2
activation = "softmax"

[train]
loss = "categorical_crossentropy"
epochs = 1
batch_size = 4

[output]
dir = "results"
"#,
        data.display()
    )
}

/// Every case of a messy folder; returns the expected quarantine rows (path under the
/// dataset folder, reason), sorted.
fn messy_folder(root: &Path) -> Vec<(String, &'static str)> {
    let odd = repo().join("tests/fixtures/odd_images");
    std::fs::create_dir_all(root.join("odd")).unwrap();
    std::fs::create_dir_all(root.join("plain/sub")).unwrap();
    for f in std::fs::read_dir(&odd).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, root.join("odd").join(f.file_name().unwrap())).unwrap();
    }
    for i in 0..6 {
        gray_png(&root.join(format!("plain/{i}.png")), 12, |x, _| if x < 6 { 0 } else { 255 });
    }
    let jpeg = std::fs::read(odd.join("gray.jpg")).unwrap();
    std::fs::write(root.join("odd/empty.jpg"), b"").unwrap();
    std::fs::write(root.join("odd/truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::write(root.join("odd/notes.txt"), b"a text file").unwrap();
    std::fs::write(root.join("odd/fake.png"), b"not really a png").unwrap();
    std::fs::write(root.join("odd/scan.tif"), b"II*\x00\x08\x00\x00\x00\x00\x00").unwrap();
    std::fs::write(root.join("odd/bomb.png"), png_bomb(50_000, 50_000)).unwrap();
    std::fs::write(root.join("odd/Thumbs.db"), b"litter").unwrap();
    std::fs::write(root.join("odd/.DS_Store"), b"litter").unwrap();
    std::fs::write(root.join("README.txt"), b"about this folder").unwrap();
    gray_png(&root.join("plain/sub/deep.png"), 12, |_, _| 0);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("..", root.join("plain/loop")).unwrap();
        std::os::unix::fs::symlink("plain", root.join("linked_class")).unwrap();
        std::os::unix::fs::symlink("/no/such/file.png", root.join("plain/broken.png")).unwrap();
    }
    let mut rows = vec![
        ("README.txt".to_string(), "outside_class_folders"),
        ("odd/bomb.png".into(), "too_large"),
        ("odd/empty.jpg".into(), "empty_file"),
        ("odd/fake.png".into(), "not_an_image"),
        ("odd/notes.txt".into(), "not_an_image"),
        ("odd/scan.tif".into(), "unsupported_format"),
        ("odd/truncated.jpg".into(), "corrupt_image"),
        ("plain/sub".into(), "folder_not_followed"),
    ];
    if cfg!(unix) {
        rows.extend([
            ("linked_class".to_string(), "folder_not_followed"),
            ("plain/broken.png".into(), "unreadable"),
            ("plain/loop".into(), "folder_not_followed"),
        ]);
    }
    rows.sort();
    rows
}

fn quarantine_rows(csv: &str, root: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}/", root.display());
    let mut rows: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.splitn(3, ',');
            let path = f.next().unwrap().trim_start_matches(&prefix).to_string();
            (path, f.next().unwrap().to_string())
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_messy_folder_trains_with_every_bad_file_quarantined_and_odd_ones_used() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("messy");
    let expected = messy_folder(&data);
    std::fs::write(tmp.path().join("exp.toml"), config("messy", &data, "")).unwrap();
    let out = runner_with(tmp.path(), &["exp.toml"], 2, &tmp.path().join("cache"));
    assert_exit(&out, 0);
    let run = tmp.path().join("results/messy/run-001");
    let csv = std::fs::read_to_string(run.join("quarantine.csv")).unwrap();
    let got = quarantine_rows(&csv, &data);
    let want: Vec<(String, String)> = expected.iter().map(|(p, r)| (p.clone(), r.to_string())).collect();
    assert_eq!(got, want, "quarantine.csv:\n{csv}");
    assert!(stderr(&out).contains(&format!("{} files quarantined", want.len())), "{}", stderr(&out));

    // Every odd image (10) and every plain one (6) is used.
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    assert_eq!(split.lines().count() - 1, 16, "{split}");
    for odd in ["cmyk.jpg", "palette.png", "gray16.png", "exif_rotated.jpg", "image.webp", "UPPER.JPG"] {
        assert!(split.contains(odd), "{odd} should be used:\n{split}");
    }
}

#[test]
fn a_class_with_no_usable_image_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    std::fs::create_dir_all(data.join("good")).unwrap();
    std::fs::create_dir_all(data.join("bad")).unwrap();
    gray_png(&data.join("good/1.png"), 8, |_, _| 1);
    gray_png(&data.join("good/2.png"), 8, |_, _| 2);
    std::fs::write(data.join("bad/1.jpg"), b"").unwrap();
    std::fs::write(tmp.path().join("exp.toml"), config("bad_class", &data, "")).unwrap();
    let out = runner_with(tmp.path(), &["exp.toml"], 2, &tmp.path().join("cache"));
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("class `bad`") && stderr(&out).contains("no usable image"), "{}", stderr(&out));
}

/// The "N decoded, M from the cache" counts of a run's log.
fn cache_counts(out: &std::process::Output) -> (usize, usize) {
    let err = stderr(out);
    let line = err.lines().find(|l| l.contains("from the cache")).unwrap_or_else(|| panic!("no cache line:\n{err}"));
    // "<total> images ready in <s>s: <decoded> decoded, <cached> from the cache in <dir>"
    let (before, after) = line.split_once(" decoded, ").expect("decoded count");
    let decoded = before.rsplit(' ').next().unwrap().parse().unwrap();
    let cached = after.split(' ').next().unwrap().parse().unwrap();
    (decoded, cached)
}

#[test]
fn the_second_run_decodes_nothing_and_changes_invalidate_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    striped_jpegs(&data, 6, (40, 30));
    std::fs::write(tmp.path().join("exp.toml"), config("cache", &data, "")).unwrap();
    let cache = tmp.path().join("cache");
    let run = |args: &[&str]| {
        let out = runner_with(tmp.path(), args, 2, &cache);
        assert_exit(&out, 0);
        cache_counts(&out)
    };
    // 12 JPEGs + 2 bad files; quarantine verdicts are cached too.
    assert_eq!(run(&["data", "exp.toml"]), (14, 0));
    assert_eq!(run(&["exp.toml"]), (0, 14), "a second run must not decode");

    // A rewritten file is decoded again, and only that one.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let img = image::open(data.join("Cat/0.jpg")).unwrap();
    img.fliph().save(data.join("Cat/0.jpg")).unwrap();
    assert_eq!(run(&["data", "exp.toml"]), (1, 13));

    // A damaged cache file is noticed and rebuilt, never trusted.
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .expect("a cache file beside its lock file");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let out = runner_with(tmp.path(), &["data", "exp.toml"], 2, &cache);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("ignoring the image cache"), "{}", stderr(&out));
    assert_eq!(cache_counts(&out), (14, 0));
    // A flipped bit in the index (read whole at the start) is found at once: rebuilt.
    let mut flipped = std::fs::read(&file).unwrap();
    let in_index = flipped.len() - 40;
    flipped[in_index] ^= 0xff;
    std::fs::write(&file, &flipped).unwrap();
    let out = runner_with(tmp.path(), &["data", "exp.toml"], 2, &cache);
    assert!(stderr(&out).contains("checksum mismatch"), "{}", stderr(&out));
    assert_eq!(cache_counts(&out), (14, 0));
    assert_eq!(run(&["data", "exp.toml"]), (0, 14));
    // A flipped bit in an image's pixels (read as batches need them) stops the training that
    // reads it, naming the cache file and what to do; never trained on.
    let mut flipped = std::fs::read(&file).unwrap();
    flipped[16 + 5] ^= 0xff;
    std::fs::write(&file, &flipped).unwrap();
    let out = runner_with(tmp.path(), &["exp.toml"], 2, &cache);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("no longer matches its checksum") && err.contains(&file.display().to_string()), "{err}");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(run(&["data", "exp.toml"]), (14, 0));

    // `cache = false` neither reads nor writes it.
    std::fs::write(tmp.path().join("exp.toml"), config("cache", &data, "cache = false")).unwrap();
    assert_eq!(run(&["data", "exp.toml"]), (14, 0));
}

#[test]
fn the_test_split_is_held_out_and_evaluated_once_after_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    striped_jpegs(&data, 20, (40, 30));
    std::fs::write(tmp.path().join("exp.toml"), config("held_out", &data, "test_split = 0.25")).unwrap();
    let out = runner_with(tmp.path(), &["exp.toml"], 2, &tmp.path().join("cache"));
    assert_exit(&out, 0);
    let run = tmp.path().join("results/held_out/run-001");
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    let count = |s: &str| split.lines().filter(|l| l.ends_with(&format!(",{s}"))).count();
    assert_eq!((count("train"), count("validation"), count("test")), (20, 10, 10), "{split}");
    for class in ["Cat", "Dog"] {
        let n = split.lines().filter(|l| l.contains(&format!(",{class},test"))).count();
        assert_eq!(n, 5, "test split is stratified:\n{split}");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("test_metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["samples"], 10);
    let manifest = manifest(&run);
    assert_eq!((manifest["dataset"]["train"].as_u64(), manifest["dataset"]["test"].as_u64()), (Some(20), Some(10)));
}

#[test]
fn runner_data_writes_pictures_of_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    fashion_subset(&data, &["bag", "coat", "dress"], 30);
    std::fs::write(tmp.path().join("exp.toml"), config("pictures", &data, "").replace("units = 2", "units = 3"))
        .unwrap();
    let out = runner_with(tmp.path(), &["data", "exp.toml"], 2, &tmp.path().join("cache"));
    assert_exit(&out, 0);
    let dir = tmp.path().join("results/pictures/data");
    let grid = image::open(dir.join("samples.png")).unwrap();
    assert!(grid.width() > 3 * 300 && grid.height() > 300, "{}x{}", grid.width(), grid.height());
    let svg = std::fs::read_to_string(dir.join("samples.svg")).unwrap();
    assert_eq!(svg.matches("<image ").count(), 3, "one grid per class");
    for class in ["bag", "coat", "dress"] {
        assert!(svg.contains(&format!(">{class}</text>")), "{class} title missing");
    }
    let counts = std::fs::read_to_string(dir.join("class_counts.svg")).unwrap();
    assert!(counts.contains("validation") && counts.contains("coat"), "class_counts.svg lacks labels");
    image::open(dir.join("class_counts.png")).unwrap();
    assert!(!tmp.path().join("results/pictures/run-001").exists(), "`runner data` does not train");
}

#[test]
fn a_recorded_split_can_be_reused_by_a_later_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    striped_jpegs(&data, 12, (40, 30));
    std::fs::write(tmp.path().join("exp.toml"), config("reuse", &data, "test_split = 0.25")).unwrap();
    let cache = tmp.path().join("cache");
    assert_exit(&runner_with(tmp.path(), &["exp.toml"], 2, &cache), 0);
    let first = std::fs::read_to_string(tmp.path().join("results/reuse/run-001/split.csv")).unwrap();
    // Another seed would draw another split; the recorded one wins.
    let args =
        ["exp.toml", "--set", "experiment.seed=99", "--set", "data.split_file=\"results/reuse/run-001/split.csv\""];
    assert_exit(&runner_with(tmp.path(), &args, 2, &cache), 0);
    let second = std::fs::read_to_string(tmp.path().join("results/reuse/run-002/split.csv")).unwrap();
    assert_eq!(first, second);
    assert_exit(&runner_with(tmp.path(), &["exp.toml", "--set", "experiment.seed=99"], 2, &cache), 0);
    assert_ne!(first, std::fs::read_to_string(tmp.path().join("results/reuse/run-003/split.csv")).unwrap());

    // A split file that does not cover the folder is refused.
    let partial: String = first.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(tmp.path().join("partial.csv"), partial).unwrap();
    let out = runner_with(tmp.path(), &["exp.toml", "--set", "data.split_file=\"partial.csv\""], 2, &cache);
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("are not in it"), "{}", stderr(&out));
}

/// Copies the images of `src/<class>` into `dst/<new class>`, each under a new name made by
/// `rename(i)`.
fn copy_renamed(src: &Path, dst: &Path, classes: &[(&str, &str)], rename: impl Fn(usize) -> String) {
    for (from, to) in classes {
        let mut files: Vec<_> = std::fs::read_dir(src.join(from)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        std::fs::create_dir_all(dst.join(to)).unwrap();
        for (i, f) in files.iter().enumerate() {
            std::fs::copy(f, dst.join(to).join(rename(i))).unwrap();
        }
    }
}

#[test]
fn a_split_file_round_trips_names_with_commas_quotes_spaces_and_non_ascii_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    striped_jpegs(&plain, 8, (16, 8));
    let data = tmp.path().join("d");
    let classes = [("Cat", "cat, \"the\" Ünïcode"), ("Dog", "dög, 'x'")];
    copy_renamed(&plain, &data, &classes, |i| format!("{i}, \"quoted\" naïve café €.jpg"));
    std::fs::write(tmp.path().join("exp.toml"), config("names", &data, "")).unwrap();
    let cache = tmp.path().join("cache");
    assert_exit(&runner_with(tmp.path(), &["exp.toml"], 2, &cache), 0);
    let written = std::fs::read(tmp.path().join("results/names/run-001/split.csv")).unwrap();
    let text = String::from_utf8(written.clone()).unwrap();
    assert!(text.contains(",\"cat, \"\"the\"\" Ünïcode\",train\n"), "RFC 4180 quoting:\n{text}");
    // Another seed would draw another split; the recorded one wins, for every name.
    let reuse =
        ["exp.toml", "--set", "experiment.seed=99", "--set", "data.split_file=\"results/names/run-001/split.csv\""];
    assert_exit(&runner_with(tmp.path(), &reuse, 2, &cache), 0);
    assert_eq!(std::fs::read(tmp.path().join("results/names/run-002/split.csv")).unwrap(), written);
    assert_exit(&runner_with(tmp.path(), &["exp.toml", "--set", "experiment.seed=99"], 2, &cache), 0);
    assert_ne!(std::fs::read(tmp.path().join("results/names/run-003/split.csv")).unwrap(), written);

    // A row naming a file outside the dataset folder is refused, with its line and the file.
    for outside in ["/etc/passwd".to_string(), format!("{}/../secret.jpg", data.display())] {
        std::fs::write(tmp.path().join("outside.csv"), format!("{text}{outside},cat,train\n")).unwrap();
        let out = runner_with(tmp.path(), &["exp.toml", "--set", "data.split_file=\"outside.csv\""], 2, &cache);
        assert_exit(&out, 65);
        let err = stderr(&out);
        let line = text.lines().count() + 1;
        assert!(
            err.contains(&format!("outside.csv`: line {line}: `{outside}` is outside the dataset folder")),
            "{err}"
        );
    }

    // A split file over its limit is refused before it fills memory (sparse: no disk used).
    let huge = std::fs::File::create(tmp.path().join("huge.csv")).unwrap();
    huge.set_len(runner::results::bounded::SPLIT_FILE.bytes + 1).unwrap();
    let out = runner_with(tmp.path(), &["exp.toml", "--set", "data.split_file=\"huge.csv\""], 2, &cache);
    assert_exit(&out, 74);
    let err = stderr(&out);
    assert!(
        err.contains("huge.csv`: it is larger than 256 MiB, the limit for a split file; point data.split_file"),
        "{err}"
    );
}

/// `data.resize = "crop"` and `"pad"` train on a folder of 40x30 photos for 8x16 inputs: each
/// mode decodes into its own cache (a second run of one takes every image from it), the
/// resolved config keeps the key (and leaves out the default), and `runner predict` reads
/// the run's mode.
#[test]
fn crop_and_pad_runs_train_on_non_square_images_each_with_its_own_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    striped_jpegs(&data, 6, (40, 30));
    let cache = tmp.path().join("cache");
    let run = |name: &str, extra: &str| {
        std::fs::write(tmp.path().join("exp.toml"), config(name, &data, extra)).unwrap();
        let out = runner_with(tmp.path(), &["exp.toml"], 2, &cache);
        assert_exit(&out, 0);
        cache_counts(&out)
    };
    assert_eq!(run("stretch", ""), (14, 0));
    assert_eq!(run("crop", "resize = \"crop\""), (14, 0), "crop has a cache of its own");
    assert_eq!(run("pad", "resize = \"pad\""), (14, 0), "pad has a cache of its own");
    assert_eq!(run("crop", "resize = \"crop\""), (0, 14));
    let resolved = |name: &str, run: &str| {
        std::fs::read_to_string(tmp.path().join("results").join(name).join(run).join("config.toml")).unwrap()
    };
    assert!(!resolved("stretch", "run-001").contains("resize"));
    assert!(resolved("pad", "run-001").contains("resize = \"pad\""));
    let run_dir = tmp.path().join("results/crop/run-001");
    let out = runner_with(
        tmp.path(),
        &["predict", run_dir.to_str().unwrap(), data.join("Cat/0.jpg").to_str().unwrap(), "--json"],
        2,
        &cache,
    );
    assert_exit(&out, 0);
    let predictions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(predictions[0]["class"].is_string(), "{predictions}");
}
