//! TensorBoard event files, laid out as Keras' `TensorBoard` callback lays them out:
//! `<log dir>/train/` and `<log dir>/validation/`, one event file each, holding per epoch
//! (step = the 0-based epoch) the scalar `epoch_<column>` for each history column: `val_*`
//! columns in `validation/` without their prefix, the others (`learning_rate` among them) in
//! `train/`. `train/` also holds text summaries at step 0 (the model summary).
//!
//! An event file is a sequence of records, each `length` (u64, little-endian), the masked
//! CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data; each record's data
//! is one `Event` protobuf, the first one naming the format (`brain.Event:2`). Files are synced
//! after every epoch, so `tensorboard --logdir` shows a run as it trains.
//!
//! A resumed run continues the same files: `Writer::open` is given the history of the
//! checkpoint it resumes from, keeps the records of a file that agree with it (cutting off a
//! record torn by a kill), appends what is missing, and rewrites the file atomically under its
//! own name if it disagrees. No step is ever written twice.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::protobuf::Message;
use crate::{Error, Result};

/// The folder of the training curves (and text summaries), as Keras names it.
pub const TRAIN: &str = "train";
/// The folder of the validation curves, as Keras names it.
pub const VALIDATION: &str = "validation";

/// The first event of every file: the format version.
const FILE_VERSION: &str = "brain.Event:2";
/// `tensorflow.DataType.DT_STRING`.
const DT_STRING: u64 = 7;
/// Bytes an event's `wall_time` field takes when written first: its key and a double.
const WALL_TIME_BYTES: usize = 9;

/// One epoch of a history: the step (the 0-based epoch) and every column by its history name
/// (`loss`, `val_accuracy`, `learning_rate`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Epoch<'a> {
    /// The 0-based epoch.
    pub step: usize,
    /// The history's columns.
    pub columns: BTreeMap<&'a str, f64>,
}

/// Where Keras' TensorBoard callback puts a history column: its folder and scalar tag
/// (`val_loss` → `validation`, `epoch_loss`; `learning_rate` → `train`, `epoch_learning_rate`).
pub fn tag(column: &str) -> (&'static str, String) {
    match column.strip_prefix("val_") {
        Some(name) => (VALIDATION, format!("epoch_{name}")),
        None => (TRAIN, format!("epoch_{column}")),
    }
}

/// The event files of one run, open for appending.
#[derive(Debug)]
pub struct Writer {
    train: EventFile,
    validation: EventFile,
    /// Epochs written so far.
    written: usize,
}

impl Writer {
    /// Opens `<log_dir>/train/` and `<log_dir>/validation/` for a run whose history so far is
    /// `epochs`, with `texts` (tag, Markdown) as text summaries at step 0 in `train/`. On return
    /// each file holds the header and exactly `epochs`: an existing file (a resumed run) is
    /// continued where its records agree with that, and rewritten atomically where they do not.
    pub fn open(log_dir: &Path, texts: &[(&str, &str)], epochs: &[Epoch]) -> Result<Writer> {
        let now = wall_time();
        let mut train = vec![file_version(now)];
        train.extend(texts.iter().map(|(tag, markdown)| text(now, tag, markdown)));
        train.extend(scalars(now, TRAIN, epochs));
        let mut validation = vec![file_version(now)];
        validation.extend(scalars(now, VALIDATION, epochs));
        Ok(Writer {
            train: EventFile::open(&log_dir.join(TRAIN), &train)?,
            validation: EventFile::open(&log_dir.join(VALIDATION), &validation)?,
            written: epochs.len(),
        })
    }

    /// Appends the epochs of `history` (the whole history so far) not written yet, and syncs
    /// both files.
    pub fn write(&mut self, history: &[Epoch]) -> Result<()> {
        let new = history.get(self.written..).unwrap_or_default();
        if new.is_empty() {
            return Ok(());
        }
        let now = wall_time();
        self.train.append(&scalars(now, TRAIN, new))?;
        self.validation.append(&scalars(now, VALIDATION, new))?;
        self.written = history.len();
        Ok(())
    }
}

/// One event file, open for appending.
#[derive(Debug)]
struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// The event file in `dir` (created if there is none), holding exactly `events`.
    fn open(dir: &Path, events: &[Message]) -> Result<EventFile> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating folder", dir, e))?;
        let mut existing = event_files(dir)?;
        let kept = existing.pop();
        let path = kept.clone().unwrap_or_else(|| dir.join(file_name()));
        let bytes = match &kept {
            Some(p) => super::bounded::read(p, &super::bounded::RUN_FILE).map_err(|e| Error::io("reading", p, e))?,
            None => Vec::new(),
        };
        let (records, intact) = read_records(&bytes);
        let agreeing = records.iter().zip(events).take_while(|(r, e)| same_event(r, e.as_bytes())).count();
        let file = if kept.is_some() && agreeing == records.len() {
            // The file so far is right (less a torn record, if a kill left one): continue it.
            let file = OpenOptions::new().append(true).open(&path).map_err(|e| Error::io("opening", &path, e))?;
            if intact < bytes.len() {
                file.set_len(intact as u64).map_err(|e| Error::io("cutting a torn record off", &path, e))?;
            }
            let mut file = EventFile { path, file };
            file.append(&events[agreeing..])?;
            file
        } else {
            let bytes: Vec<u8> = events.iter().flat_map(|e| record(e.as_bytes())).collect();
            replace(&path, &bytes)?;
            let file = OpenOptions::new().append(true).open(&path).map_err(|e| Error::io("opening", &path, e))?;
            EventFile { path, file }
        };
        // Older files of the same folder would repeat steps: only one stays.
        for old in existing {
            std::fs::remove_file(&old).map_err(|e| Error::io("removing", &old, e))?;
        }
        Ok(file)
    }

    /// Appends `events` and syncs the file.
    fn append(&mut self, events: &[Message]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = events.iter().flat_map(|e| record(e.as_bytes())).collect();
        let path = &self.path;
        self.file.write_all(&bytes).map_err(|e| Error::io("writing", path, e))?;
        self.file.sync_data().map_err(|e| Error::io("syncing", path, e))
    }
}

/// Writes `bytes` to `path` atomically, through a temporary name without `tfevents` in it:
/// TensorBoard reads every file whose name has it, a temporary one too.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    super::write_through(&super::temporary_path(&path.with_file_name("events")), path, bytes)
}

/// The event files in `dir`, by name.
fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("events.out.tfevents.")))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// `events.out.tfevents.<unix time>.<host>.<pid>.v2`, as TensorFlow names its event files.
fn file_name() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let host: String = super::manifest::hostname()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    format!("events.out.tfevents.{secs}.{host}.{}.v2", std::process::id())
}

/// Seconds since the Unix epoch.
fn wall_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An `Event`: `wall_time` (always first), then `step` when given, then `rest`'s fields.
fn event(wall_time: f64, step: Option<usize>, build: impl FnOnce(&mut Message)) -> Message {
    let mut event = Message::new();
    event.double(1, wall_time);
    if let Some(step) = step {
        event.int64(2, step as i64);
    }
    build(&mut event);
    event
}

/// Whether two encoded events are the same but for their wall time.
fn same_event(a: &[u8], b: &[u8]) -> bool {
    let timed = |e: &[u8]| e.len() >= WALL_TIME_BYTES && e[0] == 0x09;
    timed(a) && timed(b) && a[WALL_TIME_BYTES..] == b[WALL_TIME_BYTES..]
}

/// The event naming the file format.
fn file_version(wall_time: f64) -> Message {
    event(wall_time, None, |e| {
        e.string(3, FILE_VERSION);
    })
}

/// A text summary at step 0, as `tf.summary.text` writes it: a scalar string tensor with the
/// text plugin's metadata (whose content, `TextPluginData` version 0, is empty).
fn text(wall_time: f64, tag: &str, markdown: &str) -> Message {
    let mut plugin_data = Message::new();
    plugin_data.string(1, "text");
    let mut metadata = Message::new();
    metadata.message(1, &plugin_data);
    let mut tensor = Message::new();
    tensor.varint(1, DT_STRING).message(2, &Message::new()).bytes(8, markdown.as_bytes());
    let mut value = Message::new();
    value.string(1, tag).message(8, &tensor).message(9, &metadata);
    let mut summary = Message::new();
    summary.message(1, &value);
    event(wall_time, Some(0), |e| {
        e.message(5, &summary);
    })
}

/// One event per epoch with the scalars that go into `folder` (epochs without any are left
/// out).
fn scalars(wall_time: f64, folder: &str, epochs: &[Epoch]) -> Vec<Message> {
    let mut events = Vec::new();
    for epoch in epochs {
        let mut summary = Message::new();
        let mut any = false;
        for (column, &v) in &epoch.columns {
            let (f, tag) = tag(column);
            if f == folder {
                let mut value = Message::new();
                value.string(1, &tag).float(2, v as f32);
                summary.message(1, &value);
                any = true;
            }
        }
        if any {
            events.push(event(wall_time, Some(epoch.step), |e| {
                e.message(5, &summary);
            }));
        }
    }
    events
}

/// A record: the length, its masked CRC-32C, the data, and the data's masked CRC-32C.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// The whole records at the start of `bytes` (up to the first torn or corrupt one), and the
/// length they take.
fn read_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        let (len, crc) = header.split_at(8);
        if masked_crc32c(len).to_le_bytes() != crc {
            break;
        }
        let Ok(n) = usize::try_from(u64::from_le_bytes(len.try_into().expect("8 bytes"))) else { break };
        let start = at + 12;
        let Some(data) = start.checked_add(n).and_then(|end| bytes.get(start..end)) else { break };
        let Some(crc) = bytes.get(start + n..start + n + 4) else { break };
        if masked_crc32c(data).to_le_bytes() != crc {
            break;
        }
        records.push(data);
        at = start + n + 4;
    }
    (records, at)
}

/// CRC-32C as TFRecord masks it: rotated right by 15 bits, plus a constant.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord files.
/// Not the CRC-32 of zip and PNG (`crc32fast`).
fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

/// The CRC-32C of every byte value.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(step: usize, loss: f64) -> Epoch<'static> {
        let columns = [("accuracy", 0.5), ("loss", loss), ("learning_rate", 1e-3), ("val_loss", loss + 1.0)];
        Epoch { step, columns: columns.into_iter().collect() }
    }

    /// The only event file of `dir/folder`, as its records.
    fn records_in(dir: &Path, folder: &str) -> (PathBuf, Vec<Vec<u8>>) {
        let files = event_files(&dir.join(folder)).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        let bytes = std::fs::read(&files[0]).unwrap();
        let (records, intact) = read_records(&bytes);
        assert_eq!(intact, bytes.len(), "no torn record");
        (files[0].clone(), records.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// What `Writer::open` with `epochs` writes into `folder`, but for wall times.
    fn expected(folder: &str, epochs: &[Epoch]) -> Vec<Vec<u8>> {
        let mut events = vec![file_version(0.0)];
        if folder == TRAIN {
            events.push(text(0.0, "model_summary", "    a model"));
        }
        events.extend(scalars(0.0, folder, epochs));
        events.into_iter().map(Message::into_bytes).collect()
    }

    fn assert_holds(dir: &Path, epochs: &[Epoch]) {
        for folder in [TRAIN, VALIDATION] {
            let (_, records) = records_in(dir, folder);
            let want = expected(folder, epochs);
            assert_eq!(records.len(), want.len(), "{folder}");
            for (r, w) in records.iter().zip(&want) {
                assert!(same_event(r, w), "{folder}: {r:?} != {w:?}");
            }
        }
    }

    #[test]
    fn crc32c_is_castagnolis_and_its_mask_is_tfrecords() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        let crc = 0xE306_9283u32;
        assert_eq!(masked_crc32c(b"123456789"), crc.rotate_right(15).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn a_record_is_length_crc_data_crc_and_reads_back_until_the_first_damage() {
        let r = record(b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
        assert_eq!(r[..8], 3u64.to_le_bytes());
        assert_eq!(r[8..12], masked_crc32c(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(r[15..], masked_crc32c(b"abc").to_le_bytes());

        let mut bytes = [record(b"abc"), record(b""), record(b"defg")].concat();
        assert_eq!(read_records(&bytes), (vec![&b"abc"[..], b"", b"defg"], bytes.len()));
        // A torn last record is left out, and where the whole ones end is known.
        let whole = bytes.len();
        bytes.extend_from_slice(&record(b"torn")[..10]);
        assert_eq!(read_records(&bytes).1, whole);
        // A flipped bit ends the readable records there.
        bytes[19 + 16 + 13] ^= 1;
        assert_eq!(read_records(&bytes), (vec![&b"abc"[..], b""], 19 + 16));
    }

    #[test]
    fn a_scalar_event_is_keras_tags_in_a_summary() {
        let epochs = [Epoch { step: 3, columns: [("loss", 0.5), ("val_loss", 2.0)].into_iter().collect() }];
        let train = scalars(1.0, TRAIN, &epochs);
        let mut want = vec![0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 3, 0x2a, 19, 0x0a, 17, 0x0a, 10];
        want.extend_from_slice(b"epoch_loss");
        want.extend_from_slice(&[0x15, 0, 0, 0, 0x3f]);
        assert_eq!(train[0].as_bytes(), want);
        assert_eq!(tag("val_loss"), (VALIDATION, "epoch_loss".into()));
        assert_eq!(tag("val_f1_score"), (VALIDATION, "epoch_f1_score".into()));
        assert_eq!(tag("learning_rate"), (TRAIN, "epoch_learning_rate".into()));
        assert_eq!(tag("accuracy"), (TRAIN, "epoch_accuracy".into()));
        assert!(file_name().starts_with("events.out.tfevents.") && file_name().ends_with(".v2"));
    }

    #[test]
    fn a_writer_appends_each_epoch_and_a_resumed_one_continues_without_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let texts = [("model_summary", "    a model")];
        let history: Vec<Epoch> = (0..4).map(|i| epoch(i, 1.0 / (i + 1) as f64)).collect();
        let mut writer = Writer::open(dir, &texts, &[]).unwrap();
        assert_holds(dir, &[]);
        writer.write(&history[..1]).unwrap();
        writer.write(&history[..2]).unwrap();
        writer.write(&history[..2]).unwrap();
        assert_holds(dir, &history[..2]);
        let (name, _) = records_in(dir, TRAIN);
        drop(writer);

        // Resumed from a checkpoint one epoch further than the files (a kill between the two):
        // the missing epoch is appended to the same file, and a torn record is cut off first.
        let mut f = OpenOptions::new().append(true).open(&name).unwrap();
        f.write_all(&record(b"a record cut short")[..14]).unwrap();
        let mut writer = Writer::open(dir, &texts, &history[..3]).unwrap();
        assert_holds(dir, &history[..3]);
        assert_eq!(records_in(dir, TRAIN).0, name, "the same file goes on");
        writer.write(&history).unwrap();
        assert_holds(dir, &history);

        // Resumed from an earlier checkpoint, or one whose values differ: rewritten to match.
        Writer::open(dir, &texts, &history[..2]).unwrap();
        assert_holds(dir, &history[..2]);
        let other: Vec<Epoch> = (0..3).map(|i| epoch(i, 7.0)).collect();
        let mut writer = Writer::open(dir, &texts, &other).unwrap();
        assert_holds(dir, &other);
        assert_eq!(records_in(dir, TRAIN).0, name, "under the same name");
        writer.write(&[other.clone(), vec![epoch(3, 7.0)]].concat()).unwrap();
        assert_holds(dir, &[other, vec![epoch(3, 7.0)]].concat());
        let leftovers: Vec<_> = std::fs::read_dir(dir.join(TRAIN)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary files: {leftovers:?}");
    }
}
