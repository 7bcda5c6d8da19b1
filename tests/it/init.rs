//! `runner init`: an experiment file written from a folder of images, which checks and trains
//! without edits.

use std::path::Path;

use crate::util::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value line of `key` in a TOML text, without its comment.
fn value<'a>(text: &'a str, key: &str) -> &'a str {
    let line =
        text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key} in\n{text}"));
    line[key.len() + 3..].split('#').next().unwrap().trim()
}

#[test]
fn init_on_the_bundled_images_writes_a_ten_class_grayscale_config_that_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = repo().join("data/fashion_mnist");
    let out = runner(tmp.path(), &["init", data.to_str().unwrap(), "-o", "fm.toml"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("wrote fm.toml: 10 classes (10,000 images), 28x28 grayscale"), "{}", stdout(&out));
    let text = std::fs::read_to_string(tmp.path().join("fm.toml")).unwrap();
    assert!(text.contains("#   ankle_boot 1,000, bag 1,000,"), "the classes and counts are in a comment:\n{text}");
    assert_eq!(value(&text, "image_size"), "[28, 28]");
    assert!(!text.contains("resize"), "images of image_size's shape need no resize hint:\n{text}");
    assert_eq!(value(&text, "color_mode"), "\"grayscale\"");
    assert_eq!(value(&text, "loss"), "\"sparse_categorical_crossentropy\"");
    assert!(text.contains("units = 10\nactivation = \"softmax\""), "{text}");
    assert_eq!(value(&text, "stratify"), "true");
    assert!(text.contains("[augment]") && text.contains("[output]"), "{text}");
    // Two blocks fit 28x28 (28 → 13 → 5); a third would leave 1x1.
    assert_eq!(text.matches("type = \"conv2d\"").count(), 2, "{text}");

    let out = runner(tmp.path(), &["check", "fm.toml"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("Data: ") && stdout(&out).contains("Total params: 56,714"), "{}", stdout(&out));

    // An existing file is kept unless --force.
    std::fs::write(tmp.path().join("fm.toml"), "# mine\n").unwrap();
    let out = runner(tmp.path(), &["init", data.to_str().unwrap(), "-o", "fm.toml"]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("`fm.toml` already exists") && stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(tmp.path().join("fm.toml")).unwrap(), "# mine\n");
    assert_exit(&runner(tmp.path(), &["init", data.to_str().unwrap(), "-o", "fm.toml", "--force"]), 0);
    // A folder is never a file to write, with --force or without.
    std::fs::create_dir(tmp.path().join("configs")).unwrap();
    let out = runner(tmp.path(), &["init", data.to_str().unwrap(), "-o", "configs", "--force"]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("`configs` is a folder; give -o the file to write"), "{}", stderr(&out));
    std::fs::remove_dir(tmp.path().join("configs")).unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join("fm.toml")).unwrap(), text);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind: {leftovers:?}");
}

#[test]
fn init_on_a_two_class_folder_of_colour_jpegs_writes_a_sigmoid_config_that_trains() {
    let tmp = tempfile::tempdir().unwrap();
    // 160x200 colour JPEGs, plus an empty file and a text file named .jpg among them.
    striped_jpegs(&tmp.path().join("My Pets"), 12, (200, 160));
    let out = runner(tmp.path(), &["init", "My Pets"]);
    assert_exit(&out, 0);
    let path = tmp.path().join("experiments/my_pets.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(value(&text, "name"), "\"my_pets\"");
    assert_eq!(value(&text, "path"), "\"My Pets\"");
    assert_eq!(value(&text, "image_size"), "[128, 128]", "larger images become the tutorial's 128x128");
    assert!(text.contains("200x160 is the median"), "the size is explained:\n{text}");
    assert!(text.contains("\n# resize = \"crop\"\n"), "non-square images get the resize hint:\n{text}");
    assert_eq!(value(&text, "color_mode"), "\"rgb\"");
    assert_eq!(value(&text, "loss"), "\"binary_crossentropy\"");
    assert!(text.contains("units = 1\nactivation = \"sigmoid\""), "{text}");
    assert!(text.contains("could not be decoded"), "unusable sampled files are mentioned:\n{text}");
    assert_eq!(text.matches("type = \"conv2d\"").count(), 4, "128x128 fits the tutorial's four blocks");

    // Runs as written (one epoch to keep the test short), bad files quarantined.
    let out = runner(tmp.path(), &["experiments/my_pets.toml", "--set", "train.epochs=1", "-q"]);
    assert_exit(&out, 0);
    let run = tmp.path().join("results/my_pets/run-001");
    assert!(run.join("history.csv").is_file() && run.join("weights.safetensors").is_file());
}

#[test]
fn init_refuses_what_is_not_a_folder_of_class_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let out = runner(tmp.path(), &["init", "nowhere"]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("`nowhere` does not exist"), "{}", stderr(&out));

    fashion_subset(&tmp.path().join("one"), &["bag"], 5);
    let out = runner(tmp.path(), &["init", "one"]);
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("at least two"), "{}", stderr(&out));
    assert!(!Path::new(&tmp.path().join("experiments")).exists(), "nothing is written");
}

/// Folder and class names with spaces, quotes, commas, non-ASCII and even a line break stay
/// inside their comments and strings, so the file is valid TOML that checks and trains; a
/// class folder holding no image (only a text file) is named before anything is written.
#[test]
fn odd_folder_and_class_names_give_a_valid_file_and_a_class_without_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("my \"odd\"\nfolder");
    let classes = ["it's a bag", "trouser, \"café\"", "two\nlines = 3"];
    for (class, source) in classes.iter().zip(["bag", "trouser", "sneaker"]) {
        fashion_subset(&folder, &[source], 6);
        std::fs::rename(folder.join(source), folder.join(class)).unwrap();
    }
    std::fs::create_dir(folder.join("notes")).unwrap();
    std::fs::write(folder.join("notes/readme.txt"), "not an image").unwrap();
    let folder_arg = folder.to_str().unwrap();
    let out = runner(tmp.path(), &["init", folder_arg, "-o", "odd.toml"]);
    assert_exit(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("notes` has no usable image: none of its 1 file decodes"), "{err}");
    assert!(err.contains("readme.txt`: not_an_image") && err.contains("move it out of"), "{err}");
    assert!(!tmp.path().join("odd.toml").exists(), "nothing is written");

    std::fs::remove_dir_all(folder.join("notes")).unwrap();
    let out = runner(tmp.path(), &["init", folder_arg, "-o", "new folder/odd.toml"]);
    assert_exit(&out, 0);
    let text = std::fs::read_to_string(tmp.path().join("new folder/odd.toml")).unwrap();
    assert!(text.starts_with("# Written by `runner init '"), "the folder is quoted for a shell:\n{text}");
    assert!(text.contains("#   it's a bag 6, trouser, \"café\" 6, two\\nlines = 3 6\n"), "{text}");
    assert!(text.contains("path = \"") && text.contains("my \\\"odd\\\"\\u000Afolder\"\n"), "{text}");
    let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed["data"]["path"].as_str(), Some(folder_arg));
    assert_exit(&runner(tmp.path(), &["check", "new folder/odd.toml"]), 0);
    assert_exit(&runner(tmp.path(), &["new folder/odd.toml", "--set", "train.epochs=1", "-q"]), 0);
}

/// A folder whose classes have one file each leaves nothing to validate with: `init` says so
/// instead of writing a config that stops after decoding, and `check` of such a config fails
/// as training would.
#[test]
fn one_image_per_class_is_too_few_for_init_and_for_check() {
    let tmp = tempfile::tempdir().unwrap();
    fashion_subset(&tmp.path().join("tiny"), &["bag", "trouser"], 1);
    let out = runner(tmp.path(), &["init", "tiny"]);
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("holds a single file") && stderr(&out).contains("at least two"), "{}", stderr(&out));

    fashion_subset(&tmp.path().join("two"), &["bag", "trouser"], 2);
    assert_exit(&runner(tmp.path(), &["init", "two", "-o", "two.toml"]), 0);
    let text = std::fs::read_to_string(tmp.path().join("two.toml")).unwrap();
    std::fs::write(tmp.path().join("tiny.toml"), text.replace("path = \"two\"", "path = \"tiny\"")).unwrap();
    let out = runner(tmp.path(), &["check", "tiny.toml"]);
    assert_exit(&out, 65);
    assert!(stdout(&out).contains("Total params"), "the model's part is still shown: {}", stdout(&out));
    assert!(stderr(&out).contains("too few to split into training and validation"), "{}", stderr(&out));
}
