//! Every file runner reads is read with a size limit for what it is (a config, a split file, a
//! checkpoint, ...). A wrong path, such as a disk image given as the config or a log given as
//! the split file, then fails at once with a message that names the file, its limit and what
//! to do, instead of filling memory first.
//!
//! Reading stops one byte past the limit whatever the file's metadata says, so pipes, FIFOs
//! and `/dev/fd/N` (whose length reads as 0) are read like files, and a file that grows while
//! it is read is still cut off: `runner <(sed 's/epochs = 20/epochs = 1/' base.toml)` works.
//! The standard library has no bounded `fs::read`; `Read::take` is all it takes, so no crate.

use std::io::{ErrorKind, Read};
use std::path::Path;

/// What a file is for, and how large it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// What the file is, as messages name it: `config`, `split file`.
    pub what: &'static str,
    /// The largest size accepted, in bytes.
    pub bytes: u64,
    /// What to do about a larger file.
    pub hint: &'static str,
}

const MIB: u64 = 1 << 20;

/// An experiment file, or a file it `extends`: a few KiB in practice, so 1 MiB is only ever
/// passed by the wrong file.
pub const CONFIG: Limit = Limit {
    what: "config",
    bytes: MIB,
    hint: "an experiment file is a few KiB: check that the path names the .toml file you meant",
};

/// `data.split_file`: a line of about 100 bytes per image, so 256 MiB holds a split of over
/// two million images (ImageNet's training set is 1.3 million).
pub const SPLIT_FILE: Limit = Limit {
    what: "split file",
    bytes: 256 * MIB,
    hint: "point data.split_file at the split.csv of a run (one line per image)",
};

/// Weights and checkpoints (safetensors): 4 GiB is a billion float32 parameters, far past
/// the networks a config describes.
pub const WEIGHTS: Limit = Limit {
    what: "weights or checkpoint file",
    bytes: 4096 * MIB,
    hint: "runner's weights and checkpoints are far smaller: check that the file is the one the run wrote",
};

/// The other files runner writes and reads back: manifests, histories, sweep and trial
/// state, heartbeats, test metrics, logs, TensorBoard event files. Each grows by a line or a
/// record per epoch or trial, so 256 MiB is only reached by a file that is not runner's.
pub const RUN_FILE: Limit = Limit {
    what: "run folder file",
    bytes: 256 * MIB,
    hint: "runner writes such files far smaller: check that it is the file the run wrote, or remove it",
};

/// The bytes of `path`, at most `limit.bytes` of them: a larger file is an error of kind
/// `FileTooLarge` whose message gives the limit and `limit.hint` (callers add the path).
pub fn read(path: &Path, limit: &Limit) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    // The length of a regular file saves the copies of a growing buffer; a pipe says 0.
    let expected = file.metadata().map_or(0, |m| m.len()).min(limit.bytes);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit.bytes {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, limit: &Limit) -> std::io::Result<String> {
    String::from_utf8(read(path, limit)?).map_err(|e| {
        std::io::Error::new(
            ErrorKind::InvalidData,
            format!("it is not UTF-8 text (at byte {}); a {} is text", e.utf8_error().valid_up_to(), limit.what),
        )
    })
}

/// The error for a file over `limit`.
fn too_large(limit: &Limit) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::FileTooLarge,
        format!("it is larger than {}, the limit for a {}; {}", size(limit.bytes), limit.what, limit.hint),
    )
}

/// `1 MiB`, `4 GiB`, `300 bytes`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    const SMALL: Limit = Limit { what: "test file", bytes: 10, hint: "make it smaller" };

    #[test]
    fn a_file_up_to_the_limit_is_read_and_one_byte_more_is_refused_naming_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read(&path, &SMALL).unwrap(), b"0123456789");
        std::fs::write(&path, b"0123456789a").unwrap();
        let err = read(&path, &SMALL).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "it is larger than 10 bytes, the limit for a test file; make it smaller");
        assert_eq!(read(&dir.path().join("missing"), &SMALL).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_pipe_is_read_through_dev_fd_and_limited_though_its_length_reads_zero() {
        for (text, fits) in [(&b"0123456789"[..], true), (&b"0123456789abcdef"[..], false)] {
            let (reader, mut writer) = std::io::pipe().unwrap();
            let path = std::path::PathBuf::from(format!("/dev/fd/{}", reader.as_raw_fd()));
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "a pipe reports no length");
            let feed = std::thread::spawn(move || {
                // The reader stops one byte past the limit: the rest may find the pipe closed.
                let _ = writer.write_all(text);
            });
            let got = read(&path, &SMALL);
            drop(reader);
            feed.join().unwrap();
            match fits {
                true => assert_eq!(got.unwrap(), text),
                false => assert_eq!(got.unwrap_err().kind(), ErrorKind::FileTooLarge),
            }
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_saying_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"ab\xffc").unwrap();
        let err = read_to_string(&path, &SMALL).unwrap_err();
        assert_eq!(err.to_string(), "it is not UTF-8 text (at byte 2); a test file is text");
    }

    #[test]
    fn limits_print_in_the_largest_whole_unit() {
        assert_eq!(size(CONFIG.bytes), "1 MiB");
        assert_eq!(size(WEIGHTS.bytes), "4 GiB");
        assert_eq!(size(3 << 10), "3 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
