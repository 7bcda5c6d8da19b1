//! The decoded-image cache: one file per dataset folder and preprocessing setting, holding the
//! resized pixels (or the quarantine verdict) of every file, keyed by the file's identity
//! (path, inode), size and modification time. A second run on the same folder decodes nothing;
//! a changed file is decoded again; a cache file that is truncated, corrupt or from another
//! setting is ignored and rebuilt.
//!
//! Location: `$RUNNER_CACHE_DIR`, else `$XDG_CACHE_HOME/runner`, else `~/.cache/runner`, else
//! the system temporary folder; file `images-<hash of folder and settings>.bin`, with
//! `images-<hash>.lock` beside it. Deleting the cache file is always safe (the lock file too,
//! when no runner is running).
//!
//! # Layout
//!
//! Training reads images from this file as it needs them, so a run's memory does not grow
//! with the dataset. Hence fixed-size records that one positioned read (`pread`) fetches, and
//! a small index that says where each file's record is, so `runner check` learns the
//! quarantine verdicts without reading a pixel. All integers are little-endian:
//!
//! ```text
//! MAGIC (16 bytes)
//! records   one per usable image, `record_len` bytes each: slot k at MAGIC.len() + k * record_len
//! index     settings, record_len, file count, then per file: name, size, mtime, inode, tag,
//!           and (slot, CRC-32 of the record) for pixels or the detail of a quarantine reason
//! footer    index length (u64), CRC-32 of the index (u32), END (8 bytes)
//! ```
//!
//! The file is not memory-mapped: a mapped file truncated by someone else kills the process
//! with SIGBUS on the next access, while a positioned read past the end returns short, which
//! [`Records::read`] turns into an error naming the file. Each record's CRC-32 is checked on
//! every read, so a file rewritten in place under a running training is an error too, not
//! wrong pixels.
//!
//! # Many runners, one cache
//!
//! A new cache file is written under a unique temporary name in the cache folder, synced and
//! renamed over the old one, so a reader never sees a torn file, and a runner that opened the
//! old file keeps reading it (an open file outlives its name). Runners that must decode take an
//! exclusive lock on the lock file first; the others wait for it and then find the images in
//! the finished cache instead of decoding them again. The lock is `flock`: on NFS it works
//! where the server and clients support locking (NFSv4, or v3 with lockd); where locking is
//! unsupported the runner says so and goes on without it, when two runners may decode the same
//! images but still never corrupt the cache (the rename is atomic).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::quarantine::Reason;
use crate::{Error, Result};

const MAGIC: &[u8; 16] = b"RUNNER-IMGCACHE2";
const END: &[u8; 8] = b"RIMGEND2";
const FOOTER: u64 = 8 + 4 + END.len() as u64;

/// Identity and version of a file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
}

impl Stamp {
    /// The stamp of `path` now.
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = match meta.modified()?.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        Ok(Stamp { size: meta.len(), mtime_ns, inode })
    }
}

/// What decoding a file gave: pixels, or why it cannot be used.
pub type Decoded = std::result::Result<Vec<u8>, (Reason, String)>;

/// Where a usable image's pixels are in a records file, and their CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The record's number.
    pub index: u64,
    /// CRC-32 of the record's bytes.
    pub crc: u32,
}

/// What a cache file says about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Its pixels are in this record.
    Pixels(Slot),
    /// It cannot be used, and why.
    Quarantined(Reason, String),
}

/// The index of a cache file: every file it knows, with its stamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    entries: HashMap<String, (Stamp, Entry)>,
}

impl Index {
    /// What the cache knows of `name`, if the file has not changed since.
    pub fn get(&self, name: &str, stamp: Stamp) -> Option<&Entry> {
        self.entries.get(name).filter(|(s, _)| *s == stamp).map(|(_, e)| e)
    }
}

/// The folder caches live in (see the module docs).
pub fn default_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("RUNNER_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("runner")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/runner")))
        .unwrap_or_else(|| std::env::temp_dir().join("runner-cache"))
}

/// The cache of one dataset folder under one setting: its file and lock file.
pub struct Cache {
    file: PathBuf,
    key: String,
}

/// An exclusive hold on a cache's lock file, released when dropped.
pub struct Lock(Option<File>);

impl Cache {
    /// The cache of dataset folder `root` under `settings` (a description of every
    /// preprocessing choice that changes the pixels) in folder `dir`.
    pub fn new(dir: &Path, root: &Path, settings: &str) -> Cache {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let key = format!("{}\n{settings}", root.display());
        let file = dir.join(format!("images-{:016x}.bin", crate::hash::fnv1a(key.as_bytes())));
        Cache { file, key }
    }

    /// Where this cache is stored.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The cache file's records (of `record_len` bytes) and index, reading only the index.
    /// A missing file gives `None`; an unusable one too, with the reason logged.
    pub fn open(&self, record_len: usize) -> Option<(Records, Index)> {
        let file = File::open(&self.file).ok()?;
        match read_index(&file, &self.key, record_len) {
            Ok(index) => Some((Records { file, path: Some(self.file.clone()), record_len }, index)),
            Err(why) => {
                tracing::warn!(
                    "ignoring the image cache {}: {why}; it is rebuilt as images are decoded",
                    self.file.display()
                );
                None
            }
        }
    }

    /// Takes the exclusive lock of this cache, waiting (and saying so) while another runner
    /// holds it; `what` names the dataset folder in that message. Where the filesystem cannot
    /// lock, says so and goes on without the lock.
    pub fn lock(&self, what: &Path) -> Result<Lock> {
        let path = self.file.with_extension("lock");
        create_parent(&path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("opening the image cache's lock file", &path, e))?;
        let unsupported = |e: std::io::Error| {
            tracing::warn!(
                "cannot lock {} ({e}); going on without it: runners sharing this cache may decode the same \
                 images twice, but the cache stays whole",
                path.display()
            );
            Ok(Lock(None))
        };
        match file.try_lock() {
            Ok(()) => Ok(Lock(Some(file))),
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!(
                    "waiting for another runner to finish decoding {} (it holds {})",
                    what.display(),
                    path.display()
                );
                match file.lock() {
                    Ok(()) => Ok(Lock(Some(file))),
                    Err(e) => unsupported(e),
                }
            }
            Err(std::fs::TryLockError::Error(e)) => unsupported(e),
        }
    }

    /// A writer of a new cache file, which [`Writer::finish`] puts in place of this one.
    pub fn writer(&self, record_len: usize) -> Result<Writer> {
        create_parent(&self.file)?;
        let tmp = crate::results::temporary_path(&self.file);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("creating the image cache", &tmp, e))?;
        Writer::start(file, Some((Temporary(tmp), self.file.clone())), self.key.clone(), record_len)
    }
}

impl Lock {
    /// Whether the lock is really held (false where the filesystem cannot lock).
    pub fn held(&self) -> bool {
        self.0.is_some()
    }
}

fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the cache folder", dir, e))
}

/// Fixed-size pixel records in a file (a cache file, or an unnamed temporary file), read at
/// random. Reading needs only `&self`, from any thread.
#[derive(Debug)]
pub struct Records {
    file: File,
    /// The cache file; `None` for an unnamed temporary file.
    path: Option<PathBuf>,
    record_len: usize,
}

impl Records {
    /// Bytes per record.
    pub fn record_len(&self) -> usize {
        self.record_len
    }

    /// Reads record `slot` into `out` (`record_len` bytes) and checks its CRC-32. `image` names
    /// the source file in errors: a file shorter than its index (truncated while in use) and a
    /// record that no longer matches its checksum (rewritten in place) are errors that say
    /// what to do, never a crash.
    pub fn read(&self, slot: Slot, out: &mut [u8], image: &Path) -> Result<()> {
        debug_assert_eq!(out.len(), self.record_len);
        let at = MAGIC.len() as u64 + slot.index * self.record_len as u64;
        match self.file.read_exact_at(out, at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(self.problem(&format!(
                    "is shorter than its index says (the record of {} is missing): it was truncated while this \
                     run was reading it",
                    image.display()
                )))
            }
            Err(e) => return Err(self.problem(&format!("cannot be read (image {}): {e}", image.display()))),
        }
        if crc32fast::hash(out) != slot.crc {
            return Err(self.problem(&format!(
                "is damaged or was changed after it was written: the record of {} no longer matches its checksum",
                image.display()
            )));
        }
        Ok(())
    }

    /// An error saying what is wrong with this file and what to do; built only when a read
    /// fails, since reads run for every image of every batch.
    fn problem(&self, wrong: &str) -> Error {
        let (what, fix) = match &self.path {
            Some(p) => (
                format!("the image cache {}", p.display()),
                "delete it and run again; never edit or truncate a cache file while runs use it",
            ),
            None => (
                "the temporary file of decoded images (data.cache = false)".to_string(),
                "run again, with more free space in the cache folder",
            ),
        };
        Error::Data(format!("{what} {wrong}; {fix}"))
    }
}

/// Writes a records file: records as they come, then the index and footer. Memory holds one
/// index entry per file, never the pixels.
pub struct Writer {
    out: BufWriter<File>,
    /// The temporary name and the cache file it becomes; `None` for an unnamed file.
    names: Option<(Temporary, PathBuf)>,
    key: String,
    record_len: usize,
    records: u64,
    entries: Vec<(String, Stamp, Entry)>,
}

impl Writer {
    /// A writer of an unnamed temporary file in `dir` (nothing is left behind, whatever
    /// happens), for images that are not cached.
    pub fn unnamed(dir: &Path, record_len: usize) -> Result<Writer> {
        let file = tempfile::tempfile_in(dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(|e| Error::io("creating a temporary file for the decoded images in", dir, e))?;
        Writer::start(file, None, String::new(), record_len)
    }

    fn start(file: File, names: Option<(Temporary, PathBuf)>, key: String, record_len: usize) -> Result<Writer> {
        let mut writer = Writer { out: BufWriter::new(file), names, key, record_len, records: 0, entries: Vec::new() };
        writer.write(MAGIC)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| self.failed(e))
    }

    fn failed(&self, e: std::io::Error) -> Error {
        match &self.names {
            Some((tmp, _)) => Error::io("writing the image cache (free space, or set data.cache = false)", &tmp.0, e),
            None => Error::Data(format!("writing the temporary file of decoded images: {e}")),
        }
    }

    /// Appends the pixels of `name` (`record_len` bytes) and returns where they are.
    pub fn pixels(&mut self, name: String, stamp: Stamp, pixels: &[u8]) -> Result<Slot> {
        debug_assert_eq!(pixels.len(), self.record_len);
        let slot = Slot { index: self.records, crc: crc32fast::hash(pixels) };
        self.write(pixels)?;
        self.records += 1;
        self.entries.push((name, stamp, Entry::Pixels(slot)));
        Ok(slot)
    }

    /// Records that `name` cannot be used, and why.
    pub fn quarantined(&mut self, name: String, stamp: Stamp, reason: Reason, detail: String) {
        self.entries.push((name, stamp, Entry::Quarantined(reason, detail)));
    }

    /// Writes the index, and for a cache file syncs it and renames it into place. The
    /// records stay readable through the returned value whatever happens to the name later.
    pub fn finish(mut self) -> Result<Records> {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let index = index_bytes(&self.key, self.record_len, &self.entries);
        let mut footer = (index.len() as u64).to_le_bytes().to_vec();
        footer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        footer.extend_from_slice(END);
        self.write(&index)?;
        self.write(&footer)?;
        // On any error below, dropping `names` removes the temporary file.
        let Writer { out, names, record_len, .. } = self;
        let file = out.into_inner().map_err(|e| {
            let shown = names.as_ref().map_or(Path::new("(temporary file)"), |(tmp, _)| &tmp.0);
            Error::io("writing the image cache", shown, e.into_error())
        })?;
        let path = match names {
            None => None,
            Some((tmp, target)) => {
                file.sync_all()
                    .and_then(|()| std::fs::rename(&tmp.0, &target))
                    .map_err(|e| Error::io("writing the image cache", &target, e))?;
                std::mem::forget(tmp);
                Some(target)
            }
        };
        Ok(Records { file, path, record_len })
    }
}

/// A cache file being written, under its temporary name: removed when dropped, so a writer
/// dropped before `finish` (an error, a panic) leaves nothing behind.
struct Temporary(PathBuf);

impl Drop for Temporary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn index_bytes(key: &str, record_len: usize, entries: &[(String, Stamp, Entry)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, key.as_bytes());
    out.extend_from_slice(&(record_len as u64).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (name, stamp, entry) in entries {
        put_bytes(&mut out, name.as_bytes());
        out.extend_from_slice(&stamp.size.to_le_bytes());
        out.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&stamp.inode.to_le_bytes());
        match entry {
            Entry::Pixels(slot) => {
                out.push(0);
                out.extend_from_slice(&slot.index.to_le_bytes());
                out.extend_from_slice(&slot.crc.to_le_bytes());
            }
            Entry::Quarantined(reason, detail) => {
                out.push(1 + Reason::ALL.iter().position(|r| r == reason).unwrap_or(0) as u8);
                put_bytes(&mut out, detail.as_bytes());
            }
        }
    }
    out
}

/// A bounds-checked reader over the index bytes.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = usize::try_from(self.u64()?).map_err(|_| "bad length")?;
        self.take(n)
    }
}

/// Reads and checks the index of a cache file: its footer, its checksum, its settings, and
/// that the records it points at are all inside the file.
fn read_index(file: &File, key: &str, record_len: usize) -> std::result::Result<Index, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut magic = [0u8; MAGIC.len()];
    let truncated = |e: std::io::Error| e.to_string();
    if len < MAGIC.len() as u64 + FOOTER {
        return Err("truncated".into());
    }
    file.read_exact_at(&mut magic, 0).map_err(truncated)?;
    if &magic != MAGIC {
        return Err("not a runner image cache of this version".into());
    }
    let mut footer = [0u8; FOOTER as usize];
    file.read_exact_at(&mut footer, len - FOOTER).map_err(truncated)?;
    if &footer[12..] != END {
        return Err("truncated (no index at its end)".into());
    }
    let index_len = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
    let records_end = (len - FOOTER).checked_sub(index_len).filter(|&e| e >= MAGIC.len() as u64).ok_or("truncated")?;
    let mut bytes = vec![0u8; usize::try_from(index_len).map_err(|_| "bad length")?];
    file.read_exact_at(&mut bytes, records_end).map_err(truncated)?;
    if crc32fast::hash(&bytes).to_le_bytes() != footer[8..12] {
        return Err("checksum mismatch (truncated or damaged)".into());
    }
    let index = parse_index(&bytes, key, record_len)?;
    let records = (records_end - MAGIC.len() as u64) / record_len as u64;
    if !(records_end - MAGIC.len() as u64).is_multiple_of(record_len as u64)
        || index.entries.values().any(|(_, e)| matches!(e, Entry::Pixels(s) if s.index >= records))
    {
        return Err("its records do not match its index".into());
    }
    Ok(index)
}

fn parse_index(bytes: &[u8], key: &str, record_len: usize) -> std::result::Result<Index, String> {
    let mut input = Input(bytes);
    if input.bytes()? != key.as_bytes() {
        return Err("made for other settings".into());
    }
    if input.u64()? != record_len as u64 {
        return Err("made for another image size".into());
    }
    let count = input.u64()?;
    let mut entries = HashMap::new();
    for _ in 0..count {
        let name = String::from_utf8(input.bytes()?.to_vec()).map_err(|_| "bad name")?;
        let size = input.u64()?;
        let mtime_ns = i128::from_le_bytes(input.take(16)?.try_into().expect("16 bytes"));
        let inode = input.u64()?;
        let entry = match input.take(1)?[0] {
            0 => {
                let index = input.u64()?;
                let crc = u32::from_le_bytes(input.take(4)?.try_into().expect("4 bytes"));
                Entry::Pixels(Slot { index, crc })
            }
            t => {
                let reason = *Reason::ALL.get(usize::from(t) - 1).ok_or("bad reason")?;
                Entry::Quarantined(reason, String::from_utf8_lossy(input.bytes()?).into_owned())
            }
        };
        entries.insert(name, (Stamp { size, mtime_ns, inode }, entry));
    }
    if !input.0.is_empty() {
        return Err("bytes after the index".into());
    }
    Ok(Index { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = 6;

    /// A cache of files of every kind: pixels, each quarantine reason, odd names and stamps
    /// before the Unix epoch.
    fn filled(cache: &Cache) -> Vec<(String, Stamp, Decoded)> {
        let mut files: Vec<(String, Stamp, Decoded)> = Vec::new();
        for i in 0..4u8 {
            let stamp =
                Stamp { size: 100 + u64::from(i), mtime_ns: 1_700_000_000_123_456_789 * i128::from(i), inode: 7 };
            files.push((format!("cat/{i}.png"), stamp, Ok((0..LEN as u8).map(|v| v * i).collect())));
        }
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            let stamp = Stamp { size: i as u64, mtime_ns: -(i as i128) - 1, inode: u64::MAX - i as u64 };
            files.push((format!("dog/bad, \"{i}\" é.png"), stamp, Err((reason, format!("why {i}\nmore")))));
        }
        let mut w = cache.writer(LEN).unwrap();
        for (name, stamp, d) in &files {
            match d {
                Ok(p) => drop(w.pixels(name.clone(), *stamp, p).unwrap()),
                Err((r, why)) => w.quarantined(name.clone(), *stamp, *r, why.clone()),
            }
        }
        w.finish().unwrap();
        files
    }

    fn setup() -> (tempfile::TempDir, Cache) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        std::fs::create_dir(&root).unwrap();
        let cache = Cache::new(&tmp.path().join("cache"), &root, "size=2x1 rgb");
        (tmp, cache)
    }

    #[test]
    fn written_then_opened_gives_every_file_back() {
        let (_tmp, cache) = setup();
        let files = filled(&cache);
        let (records, index) = cache.open(LEN).unwrap();
        let mut buf = vec![0; LEN];
        for (name, stamp, decoded) in files {
            match (index.get(&name, stamp).unwrap(), decoded) {
                (Entry::Pixels(slot), Ok(pixels)) => {
                    records.read(*slot, &mut buf, Path::new(&name)).unwrap();
                    assert_eq!(buf, pixels);
                }
                (Entry::Quarantined(r, why), Err((reason, detail))) => assert_eq!((*r, why), (reason, &detail)),
                (got, want) => panic!("{name}: {got:?} for {want:?}"),
            }
            assert!(index.get(&name, Stamp { mtime_ns: stamp.mtime_ns + 1, ..stamp }).is_none(), "changed file");
        }
        let names: Vec<_> = std::fs::read_dir(cache.file().parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    #[test]
    fn a_cache_for_other_settings_or_damaged_or_truncated_is_not_used() {
        let (tmp, cache) = setup();
        filled(&cache);
        let other = Cache::new(cache.file().parent().unwrap(), &tmp.path().join("data"), "size=3x1 rgb");
        assert!(other.open(LEN).is_none(), "other settings use another file");
        std::fs::copy(cache.file(), other.file()).unwrap();
        assert!(other.open(LEN).is_none(), "made for other settings");
        assert!(cache.open(LEN + 1).is_none(), "another record length");
        let bytes = std::fs::read(cache.file()).unwrap();
        for cut in (0..bytes.len()).step_by(7) {
            std::fs::write(cache.file(), &bytes[..cut]).unwrap();
            assert!(cache.open(LEN).is_none(), "cut at {cut} of {}", bytes.len());
        }
        // A flipped bit in the index or footer; in the magic; a record cut off but the index kept.
        let records_end = MAGIC.len() + 4 * LEN;
        for i in (0..MAGIC.len()).chain(records_end..bytes.len()) {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            std::fs::write(cache.file(), &damaged).unwrap();
            assert!(cache.open(LEN).is_none(), "byte {i} flipped");
        }
        let mut short = bytes[..records_end - LEN].to_vec();
        short.extend_from_slice(&bytes[records_end..]);
        std::fs::write(cache.file(), &short).unwrap();
        assert!(cache.open(LEN).is_none(), "a record missing");
        std::fs::write(cache.file(), &bytes).unwrap();
        assert!(cache.open(LEN).is_some());
    }

    #[test]
    fn a_cache_truncated_or_rewritten_while_open_is_an_error_naming_it() {
        let (_tmp, cache) = setup();
        let files = filled(&cache);
        let (records, index) = cache.open(LEN).unwrap();
        let (name, stamp, _) = &files[3];
        let Some(Entry::Pixels(slot)) = index.get(name, *stamp).cloned() else { panic!("pixels") };
        let mut buf = vec![0; LEN];
        records.read(slot, &mut buf, Path::new(name)).unwrap();

        // Rewritten in place (the same open file): the checksum no longer matches.
        let at = MAGIC.len() as u64 + slot.index * LEN as u64;
        File::options().write(true).open(cache.file()).unwrap().write_all_at(&[255], at).unwrap();
        let err = records.read(slot, &mut buf, Path::new(name)).unwrap_err().to_string();
        assert!(err.contains("no longer matches its checksum"), "{err}");
        assert!(err.contains(&cache.file().display().to_string()) && err.contains("cat/3.png"), "{err}");

        // Truncated: a short read, not a crash.
        File::options().write(true).open(cache.file()).unwrap().set_len(at + 2).unwrap();
        let err = records.read(slot, &mut buf, Path::new(name)).unwrap_err().to_string();
        assert!(err.contains("shorter than its index") && err.contains("delete it and run again"), "{err}");
        assert!(err.contains(&cache.file().display().to_string()), "{err}");
    }

    #[test]
    fn a_reader_keeps_its_file_when_another_runner_replaces_the_cache() {
        let (_tmp, cache) = setup();
        let files = filled(&cache);
        let (records, index) = cache.open(LEN).unwrap();
        let (name, stamp, Ok(pixels)) = &files[2] else { panic!("pixels") };
        let Some(Entry::Pixels(slot)) = index.get(name, *stamp).cloned() else { panic!("pixels") };
        let mut w = cache.writer(LEN).unwrap();
        w.pixels("other.png".into(), *stamp, &[9; LEN]).unwrap();
        w.finish().unwrap();
        let mut buf = vec![0; LEN];
        records.read(slot, &mut buf, Path::new(name)).unwrap();
        assert_eq!(&buf, pixels);
        assert!(cache.open(LEN).unwrap().1.get(name, *stamp).is_none(), "the new file is the cache now");
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing_behind() {
        let (_tmp, cache) = setup();
        let mut w = cache.writer(LEN).unwrap();
        w.pixels("a.png".into(), Stamp { size: 1, mtime_ns: 2, inode: 3 }, &[1; LEN]).unwrap();
        drop(w);
        let folder = cache.file().parent().unwrap();
        assert_eq!(std::fs::read_dir(folder).unwrap().count(), 0);
        assert!(cache.open(LEN).is_none());
        let mut unnamed = Writer::unnamed(folder, LEN).unwrap();
        let slot = unnamed.pixels(String::new(), Stamp { size: 0, mtime_ns: 0, inode: 0 }, &[4; LEN]).unwrap();
        let records = unnamed.finish().unwrap();
        assert_eq!(std::fs::read_dir(folder).unwrap().count(), 0, "an unnamed file has no name");
        let mut buf = vec![0; LEN];
        records.read(slot, &mut buf, Path::new("x")).unwrap();
        assert_eq!(buf, [4; LEN]);
    }

    #[test]
    fn a_second_locker_waits_for_the_first() {
        let (tmp, cache) = setup();
        let first = cache.lock(tmp.path()).unwrap();
        assert!(first.held());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let second = cache.lock(tmp.path()).unwrap();
                tx.send(second.held()).unwrap();
            });
            // The second holder cannot get in until the first lets go.
            assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err());
            drop(first);
            assert!(rx.recv().unwrap());
        });
    }
}
