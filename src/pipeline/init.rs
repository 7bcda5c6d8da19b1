//! `runner init <image folder>`: a first experiment file for a user's own images, written
//! from what a quick look at the folder shows, so that nobody has to start by editing paths,
//! sizes, the last layer and the loss of an example by hand.
//!
//! The look is cheap: the folder is listed (classes and counts), and only a sample of
//! `SAMPLE` images spread over every class is decoded, for its sizes and colours. The file
//! is the tutorial's CNN scaled to the chosen size, with the last layer and loss the class
//! count needs, a stratified validation split, light augmentation and the output section,
//! each choice explained in a comment. It is checked as `runner check` would check it before
//! it is written, and an existing file is never replaced without `--force`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, Plan, Source};
use crate::data::{self, decode::Probe, Listing};
use crate::model::summary::thousands;
use crate::{Error, Result};

/// Images decoded to choose the size and colour mode.
pub const SAMPLE: usize = 64;

/// Filters of the tutorial's convolution blocks (each a 3x3 convolution and a 2x2 pooling).
const FILTERS: [usize; 4] = [16, 32, 64, 128];

/// What `runner init` wrote.
pub struct Written {
    /// The experiment file.
    pub path: PathBuf,
    /// Its checked plan.
    pub plan: Plan,
    /// Classes and their image counts.
    pub classes: Vec<(String, usize)>,
}

/// Writes an experiment file for the image folder `folder` to `out` (default
/// `experiments/<folder name>.toml`); refuses to replace a file unless `force`.
pub fn init(folder: &Path, out: Option<&Path>, force: bool) -> Result<Written> {
    if !folder.is_dir() {
        let what = if folder.exists() { "is not a folder" } else { "does not exist" };
        return Err(Error::Usage(format!(
            "`{}` {what}; give the folder that holds one subfolder of images per class",
            folder.display()
        )));
    }
    let listing = data::scan(folder)?;
    let counts = listing.counts();
    if listing.classes.len() < 2 {
        return Err(Error::Data(format!(
            "`{}` has {} class folder{} with images; a classifier needs one subfolder per class, at least two",
            folder.display(),
            listing.classes.len(),
            if listing.classes.len() == 1 { "" } else { "s" }
        )));
    }
    // The config holds out a fifth of each class, and one image of every class with two or
    // more: when every class has a single file, nothing is left to validate with.
    let labels: Vec<usize> = listing.samples.iter().map(|s| s.label).collect();
    let split = data::split(&labels, listing.classes.len(), 0.2, 0.0, true, 42);
    if split.val.is_empty() {
        return Err(Error::Data(format!(
            "every class folder of `{}` holds a single file: too few to train on some images and validate on \
             others; put at least two images in each class folder",
            folder.display()
        )));
    }
    let look = look(&listing)?;
    let name = experiment_name(folder);
    let path = match out {
        Some(out) => out.to_path_buf(),
        None => Path::new("experiments").join(format!("{name}.toml")),
    };
    let text = render(folder, &name, &listing, &look);
    // What `runner check` would say, before anything is written.
    let source = Source { path: path.clone(), text: text.clone() };
    let plan = config::validate(config::parse(&source)?, source)?;
    config::check_classes(&plan, &listing.classes)?;
    write_new(&path, text.as_bytes(), force)?;
    let classes = listing.classes.iter().cloned().zip(counts).collect();
    Ok(Written { path, plan, classes })
}

/// What the sampled images showed.
struct Look {
    /// Images decoded, and how many of them could not be.
    sampled: usize,
    unusable: usize,
    /// The size chosen, `[height, width]`, and why.
    size: [usize; 2],
    size_reason: String,
    /// The median image's `[height, width]`.
    median: [usize; 2],
    /// Whether every usable sampled image was grey.
    grayscale: bool,
}

/// Decodes up to `SAMPLE` images, spread evenly over the listing (which is sorted by class),
/// so the classes are seen (every one, up to `SAMPLE` of them) and the choice is the same on
/// every run.
fn look(listing: &Listing) -> Result<Look> {
    let n = listing.samples.len();
    let picks: Vec<usize> = (0..SAMPLE.min(n)).map(|i| i * n / SAMPLE.min(n)).collect();
    let probes: Vec<std::result::Result<Probe, _>> =
        picks.iter().map(|&i| data::decode::probe(&listing.samples[i].path)).collect();
    let good: Vec<Probe> = probes.iter().filter_map(|p| p.as_ref().ok().copied()).collect();
    if good.is_empty() {
        let first = probes.iter().zip(&picks).find_map(|(p, &i)| p.as_ref().err().map(|e| (i, e)));
        let detail = first
            .map(|(i, (reason, detail))| {
                format!(" (`{}`: {}: {detail})", listing.samples[i].path.display(), reason.name())
            })
            .unwrap_or_default();
        return Err(Error::Data(format!(
            "none of the {} images sampled under `{}` could be decoded{detail}; is this an image folder?",
            picks.len(),
            listing.root.display()
        )));
    }
    usable_in_every_class(listing, &picks, &probes)?;
    let median = |f: fn(&Probe) -> u32| {
        let mut v: Vec<u32> = good.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let median = [median(|p| p.height), median(|p| p.width)];
    let (size, size_reason) = choose_size(median)?;
    Ok(Look {
        sampled: picks.len(),
        unusable: picks.len() - good.len(),
        size,
        size_reason,
        median: median.map(|side| side as usize),
        grayscale: good.iter().all(|p| p.grayscale),
    })
}

/// Fails, naming the class folder, when a class has no image that decodes (only a text file,
/// say): training would stop on it after decoding everything. A class none of whose sampled
/// files decoded has its other files looked at until one does.
fn usable_in_every_class(
    listing: &Listing,
    picks: &[usize],
    probes: &[std::result::Result<Probe, data::decode::Rejection>],
) -> Result<()> {
    let mut usable = vec![false; listing.classes.len()];
    for (&i, probe) in picks.iter().zip(probes) {
        usable[listing.samples[i].label] |= probe.is_ok();
    }
    for (label, class) in listing.classes.iter().enumerate().filter(|&(l, _)| !usable[l]) {
        let (mut files, mut first) = (0, None);
        let found = listing.samples.iter().filter(|s| s.label == label).any(|s| {
            files += 1;
            let rejection = data::decode::probe(&s.path).err();
            if let (None, Some((reason, detail))) = (&first, rejection.as_ref()) {
                first = Some(format!("`{}`: {}: {detail}", s.path.display(), reason.name()));
            }
            rejection.is_none()
        });
        if !found {
            return Err(Error::Data(format!(
                "class folder `{}` has no usable image: none of its {files} file{} decodes ({}); put images in it, \
                 or move it out of `{}`",
                listing.root.join(class).display(),
                if files == 1 { "" } else { "s" },
                first.unwrap_or_default(),
                listing.root.display()
            )));
        }
    }
    Ok(())
}

/// The input size for images whose median size is `[h, w]`: small images as they are, larger
/// ones square, at most the tutorial's 128x128 (a larger size costs time with the square of
/// the side), on a multiple of 16.
fn choose_size([h, w]: [u32; 2]) -> Result<([usize; 2], String)> {
    let (h, w) = (h as usize, w as usize);
    if h.min(w) < 8 {
        return Err(Error::Data(format!(
            "the sampled images are {w}x{h} pixels (median); a convolutional network needs at least 8x8: write \
             the config by hand with a larger data.image_size (every image is resized to it), or start from larger \
             images"
        )));
    }
    if h.max(w) <= 64 {
        return Ok(([h, w], format!("{w}x{h}, the images' own size (the median of")));
    }
    let side = (h.min(w).min(128) / 16 * 16).max(64);
    let why = format!(
        "{side}x{side}, as in the Keras tutorial: every image is resized to it (larger sizes keep more \
         detail and train slower; {w}x{h} is the median of"
    );
    Ok(([side, side], why))
}

/// Convolution blocks that fit an input whose smaller side is `side`: each 3x3 convolution
/// (no padding) and 2x2 pooling takes `s` to `(s - 2) / 2`, and a block is added while at
/// least 3x3 remains, up to the tutorial's four.
fn blocks(side: usize) -> usize {
    let (mut s, mut n) = (side, 0);
    while n < FILTERS.len() && s >= 8 {
        s = (s - 2) / 2;
        n += 1;
    }
    n.max(1)
}

/// `my_pets` for `data/My Pets/`: the experiment's name and the results folder's.
fn experiment_name(folder: &Path) -> String {
    let base = std::fs::canonicalize(folder).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let base = base.unwrap_or_else(|| "experiment".into());
    let name: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let name = name.trim_matches('_').to_string();
    if name.is_empty() {
        "experiment".into()
    } else {
        name
    }
}

/// `s` for a comment: control characters written as escapes (`\n`), since a line break in a
/// folder's name would end the comment and leave the rest of the name to be read as TOML.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// `s` as one word of a shell command, quoted when it needs to be (`'My Pets'`), so the
/// command in the file's first line can be copied.
pub fn shell_word(s: &str) -> String {
    match !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c)) {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    }
}

/// A TOML basic string on one line: quotes, backslashes and control characters escaped (the
/// `toml` crate would write a name with a line break as a multi-line string).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out += &format!("\\u{:04X}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The experiment file.
fn render(folder: &Path, name: &str, listing: &Listing, look: &Look) -> String {
    let counts = listing.counts();
    let classes = listing.classes.len();
    let [h, w] = look.size;
    let mut t = String::new();
    let command = comment(&shell_word(&folder.display().to_string()));
    let _ = writeln!(t, "# Written by `runner init {command}` (runner {}).", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(t, "# Check it with `runner check <this file>`, train it with `runner <this file>`.");
    let _ = writeln!(t, "#");
    let total: usize = counts.iter().sum();
    let _ = writeln!(t, "# {classes} classes, {} images:", thousands(total));
    let entries: Vec<String> =
        listing.classes.iter().zip(&counts).map(|(c, n)| format!("{} {}", comment(c), thousands(*n))).collect();
    for line in wrap(&entries, 94) {
        let _ = writeln!(t, "#   {line}");
    }
    let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    if min > 0 && max >= 3 * min {
        let _ = writeln!(
            t,
            "# The classes are unbalanced (largest {max}, smallest {min}): accuracy flatters a model that \
             favours the large ones; look at the confusion matrix."
        );
    }
    if !listing.quarantined.is_empty() {
        let _ = writeln!(
            t,
            "# {} entries of the folder are not images in a class folder and are skipped (`runner check` lists them).",
            listing.quarantined.len()
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "[experiment]");
    let _ = writeln!(t, "name = {}", quoted(name));
    let _ = writeln!(t, "{:<26} # every random choice (split, order, weights) derives from it", "seed = 42");
    let _ = writeln!(t, "device = \"cpu\"");
    let _ = writeln!(t);
    let _ = writeln!(t, "[data]");
    let path = quoted(&folder.display().to_string());
    match folder.is_relative() {
        true => {
            let _ = writeln!(t, "{:<26} # relative to the folder runner is started in", format!("path = {path}"));
        }
        false => {
            let _ = writeln!(t, "path = {path}");
        }
    }
    let unusable = match look.unusable {
        0 => String::new(),
        n => format!("; {n} of them could not be decoded: such files are skipped in training"),
    };
    let sample = format!("{} images sampled from {}{unusable}", look.sampled, thousands(total));
    let words: Vec<String> =
        format!("Image size {} {sample}).", look.size_reason).split(' ').map(str::to_string).collect();
    for line in wrap_words(&words, 94) {
        let _ = writeln!(t, "# {line}");
    }
    let _ = writeln!(t, "image_size = [{h}, {w}]");
    let [mh, mw] = look.median;
    if mh * w != mw * h {
        // Not the images' shape: say how to keep their proportions, leaving Keras' default.
        let _ = writeln!(t, "# The median image ({mw}x{mh}) is not of image_size's shape and is stretched to it;");
        let _ = writeln!(t, "# \"crop\" keeps its proportions by cutting the edges, \"pad\" by adding black bars.");
        let _ = writeln!(t, "# resize = \"crop\"");
    }
    let color = if look.grayscale { "grayscale" } else { "rgb" };
    let why = if look.grayscale { "every sampled image is grey" } else { "the images are in colour" };
    let _ = writeln!(t, "{:<26} # {why}", format!("color_mode = \"{color}\""));
    let _ = writeln!(t, "{:<26} # a fifth of each class is held out to validate", "validation_split = 0.2");
    let _ = writeln!(t, "stratify = true");
    let _ = writeln!(t);
    let _ = writeln!(t, "# Light augmentation of the training images. Drop horizontal_flip if a mirrored image");
    let _ =
        writeln!(t, "# would belong to another class (digits, letters, left/right); preview with `runner augment`.");
    let _ = writeln!(t, "[augment]");
    let _ = writeln!(t, "rotation_range = 10");
    let _ = writeln!(t, "width_shift_range = 0.1");
    let _ = writeln!(t, "height_shift_range = 0.1");
    let _ = writeln!(t, "zoom_range = 0.1");
    let _ = writeln!(t, "horizontal_flip = true");
    let _ = writeln!(t, "fill_mode = \"nearest\"");
    let n = blocks(h.min(w));
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "# The Keras tutorial's CNN, {n} of its 4 blocks for {w}x{h} inputs: Conv2D(3x3, relu) + MaxPooling2D(2)."
    );
    for filters in &FILTERS[..n] {
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "[[model.layers]]\ntype = \"conv2d\"\nfilters = {filters}\nkernel_size = [3, 3]\nactivation = \"relu\""
        );
        let _ = writeln!(t);
        let _ = writeln!(t, "[[model.layers]]\ntype = \"max_pooling2d\"\npool_size = [2, 2]");
    }
    let units = if h.max(w) <= 64 { 64 } else { 256 };
    let _ = writeln!(t);
    let _ = writeln!(t, "[[model.layers]]\ntype = \"flatten\"");
    let _ = writeln!(t);
    let _ = writeln!(t, "[[model.layers]]\ntype = \"dense\"\nunits = {units}\nactivation = \"relu\"");
    let _ = writeln!(t);
    let loss = if classes == 2 {
        let _ =
            writeln!(t, "# Two classes: one sigmoid unit, the probability of \"{}\".", comment(&listing.classes[1]));
        let _ = writeln!(t, "[[model.layers]]\ntype = \"dense\"\nunits = 1\nactivation = \"sigmoid\"");
        "binary_crossentropy"
    } else {
        let _ = writeln!(t, "# {classes} classes: one softmax unit per class.");
        let _ = writeln!(t, "[[model.layers]]\ntype = \"dense\"\nunits = {classes}\nactivation = \"softmax\"");
        "sparse_categorical_crossentropy"
    };
    let _ = writeln!(t);
    let _ = writeln!(t, "[train]");
    let _ = writeln!(t, "optimizer = \"adam\"");
    let _ = writeln!(t, "learning_rate = 0.001");
    let _ = writeln!(t, "loss = \"{loss}\"");
    let _ = writeln!(t, "metrics = [\"accuracy\"]");
    let _ = writeln!(t, "epochs = 20");
    let _ = writeln!(t, "batch_size = 32");
    let _ = writeln!(t);
    let _ = writeln!(t, "# Stop when the validation loss has not improved for 5 epochs, keeping the best weights.");
    let _ = writeln!(t, "[train.early_stopping]");
    let _ = writeln!(t, "monitor = \"val_loss\"");
    let _ = writeln!(t, "patience = 5");
    let _ = writeln!(t, "restore_best_weights = true");
    let _ = writeln!(t);
    let _ = writeln!(t, "# Each run writes results/{name}/run-NNN/: config, history, curves, weights, report.");
    let _ = writeln!(t, "[output]");
    let _ = writeln!(t, "dir = \"results\"");
    let _ = writeln!(t, "plot_formats = [\"png\", \"svg\"]");
    t
}

/// `items` joined with ", " into lines of at most `width` characters.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let n = items.len();
    let pieces: Vec<String> =
        items.iter().enumerate().map(|(i, item)| if i + 1 < n { format!("{item},") } else { item.clone() }).collect();
    wrap_words(&pieces, width)
}

/// `words` joined with spaces into lines of at most `width` characters (a longer word has a
/// line of its own).
fn wrap_words(words: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for piece in words {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + piece.len() > width {
            lines.push(piece.clone());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(piece);
        }
    }
    lines
}

/// Writes `bytes` to `path` whole or not at all; an existing file is replaced only with
/// `force` (a hard link from the temporary file fails if the name was taken meanwhile).
fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "`{}` is a folder; give -o the file to write, such as `{}`",
            path.display(),
            path.join("experiment.toml").display()
        )));
    }
    if !force && path.exists() {
        return Err(Error::Usage(format!(
            "`{}` already exists; choose another file with -o, or add --force to replace it",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating folder", parent, e))?;
    }
    if force {
        return crate::results::write_atomic(path, bytes);
    }
    let tmp = crate::results::temporary_path(path);
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    written.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Usage(format!(
            "`{}` already exists; choose another file with -o, or add --force to replace it",
            path.display()
        )),
        _ => Error::io("writing", path, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_images_keep_their_size_and_large_ones_become_a_square_of_at_most_128() {
        assert_eq!(choose_size([28, 28]).unwrap().0, [28, 28]);
        assert_eq!(choose_size([32, 48]).unwrap().0, [32, 48]);
        assert_eq!(choose_size([375, 500]).unwrap().0, [128, 128]);
        assert_eq!(choose_size([100, 120]).unwrap().0, [96, 96]);
        assert!(choose_size([5, 40]).is_err());
    }

    #[test]
    fn blocks_stop_before_the_feature_map_gets_smaller_than_three() {
        // 128 → 63 → 30 → 14 → 6: the tutorial's four blocks.
        assert_eq!(blocks(128), 4);
        // 28 → 13 → 5, and a third block would leave 1x1.
        assert_eq!(blocks(28), 2);
        assert_eq!(blocks(8), 1);
    }

    #[test]
    fn names_are_lowercase_words_joined_by_underscores() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("My Pets-2");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(experiment_name(&dir), "my_pets_2");
    }

    #[test]
    fn wrapped_lines_stay_within_the_width() {
        let items: Vec<String> = (0..30).map(|i| format!("class_{i} 1,000")).collect();
        let lines = wrap(&items, 40);
        assert!(lines.len() > 1 && lines.iter().all(|l| l.len() <= 40), "{lines:?}");
        assert_eq!(lines.join(" ").matches("class_").count(), 30);
    }
}
