//! The decoded-image cache: one file per dataset folder and preprocessing setting, holding the
//! resized pixels (or the quarantine verdict) of every file, keyed by the file's identity
//! (path, inode), size and modification time. A second run on the same folder decodes nothing;
//! a changed file is decoded again; a cache file that is truncated, corrupt or from another
//! setting is ignored and rebuilt (its contents are checked with a CRC-32 before use).
//!
//! Location: `$RUNNER_CACHE_DIR`, else `$XDG_CACHE_HOME/runner`, else `~/.cache/runner`, else
//! the system temporary folder; file `images-<hash of folder and settings>.bin`. Deleting it
//! is always safe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::quarantine::Reason;

const MAGIC: &[u8; 16] = b"RUNNER-IMGCACHE1";

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
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Stamp { size: meta.len(), mtime_ns, inode })
    }
}

/// What decoding a file gave: pixels, or why it cannot be used.
pub type Decoded = Result<Vec<u8>, (Reason, String)>;

/// An open cache.
pub struct Cache {
    file: PathBuf,
    settings: String,
    entries: HashMap<String, (Stamp, Decoded)>,
    changed: bool,
}

/// The folder caches live in (see the module docs).
pub fn default_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("RUNNER_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("runner")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/runner")))
        .unwrap_or_else(|| std::env::temp_dir().join("runner-cache"))
}

impl Cache {
    /// Opens the cache of dataset folder `root` under `settings` (a description of every
    /// preprocessing choice that changes the pixels) in folder `dir`. A missing or unusable
    /// cache file gives an empty cache; the reason is logged.
    pub fn open(dir: &Path, root: &Path, settings: &str) -> Cache {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let key = format!("{}\n{settings}", root.display());
        let file = dir.join(format!("images-{:016x}.bin", crate::hash::fnv1a(key.as_bytes())));
        let entries = match std::fs::read(&file) {
            Ok(bytes) => parse(&bytes, &key).unwrap_or_else(|why| {
                tracing::warn!("ignoring the image cache {}: {why}; rebuilding it", file.display());
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        Cache { file, settings: key, entries, changed: false }
    }

    /// Where this cache is stored.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The cached result for `name` if the file has not changed since.
    pub fn get(&self, name: &str, stamp: Stamp) -> Option<&Decoded> {
        self.entries.get(name).filter(|(s, _)| *s == stamp).map(|(_, d)| d)
    }

    /// Records the result for `name`.
    pub fn insert(&mut self, name: String, stamp: Stamp, decoded: Decoded) {
        self.entries.insert(name, (stamp, decoded));
        self.changed = true;
    }

    /// Keeps only `names` (files that no longer exist are dropped).
    pub fn retain(&mut self, names: &std::collections::HashSet<&str>) {
        let before = self.entries.len();
        self.entries.retain(|k, _| names.contains(k.as_str()));
        self.changed |= self.entries.len() != before;
    }

    /// Writes the cache if anything changed (atomically, so a crash never leaves a torn file).
    pub fn save(&self) -> crate::Result<()> {
        if !self.changed {
            return Ok(());
        }
        std::fs::create_dir_all(self.file.parent().unwrap_or(Path::new(".")))
            .map_err(|e| crate::Error::io("creating cache folder", &self.file, e))?;
        crate::results::write_atomic(&self.file, &self.to_bytes())
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_bytes(&mut out, self.settings.as_bytes());
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        out.extend_from_slice(&(names.len() as u64).to_le_bytes());
        for name in names {
            let (stamp, decoded) = &self.entries[name];
            put_bytes(&mut out, name.as_bytes());
            out.extend_from_slice(&stamp.size.to_le_bytes());
            out.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
            out.extend_from_slice(&stamp.inode.to_le_bytes());
            match decoded {
                Ok(pixels) => {
                    out.push(0);
                    put_bytes(&mut out, pixels);
                }
                Err((reason, detail)) => {
                    out.push(1 + Reason::ALL.iter().position(|r| r == reason).unwrap_or(0) as u8);
                    put_bytes(&mut out, detail.as_bytes());
                }
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A bounds-checked reader over the cache bytes.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.u64()?).map_err(|_| "bad length")?;
        self.take(n)
    }
}

fn parse(bytes: &[u8], settings: &str) -> Result<HashMap<String, (Stamp, Decoded)>, String> {
    let body_len = bytes.len().checked_sub(4).ok_or("truncated")?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("checksum mismatch (truncated or damaged)".into());
    }
    let mut input = Input(body);
    if input.take(MAGIC.len())? != MAGIC {
        return Err("not a runner image cache of this version".into());
    }
    if input.bytes()? != settings.as_bytes() {
        return Err("made for other settings".into());
    }
    let count = input.u64()?;
    let mut entries = HashMap::new();
    for _ in 0..count {
        let name = String::from_utf8(input.bytes()?.to_vec()).map_err(|_| "bad name")?;
        let size = input.u64()?;
        let mtime_ns = i128::from_le_bytes(input.take(16)?.try_into().expect("16 bytes"));
        let inode = input.u64()?;
        let tag = input.take(1)?[0];
        let payload = input.bytes()?.to_vec();
        let decoded = match tag {
            0 => Ok(payload),
            t => {
                let reason = *Reason::ALL.get(usize::from(t) - 1).ok_or("bad reason")?;
                Err((reason, String::from_utf8_lossy(&payload).into_owned()))
            }
        };
        entries.insert(name, (Stamp { size, mtime_ns, inode }, decoded));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/data/cats\nsize=180x180 rgb";

    /// Entries of every kind: pixels (some empty), each quarantine reason, odd names and
    /// stamps before the Unix epoch.
    fn entries() -> HashMap<String, (Stamp, Decoded)> {
        let mut out = HashMap::new();
        for i in 0..4u8 {
            let stamp =
                Stamp { size: 100 + u64::from(i), mtime_ns: 1_700_000_000_123_456_789 * i128::from(i), inode: 7 };
            out.insert(format!("cat/{i}.png"), (stamp, Ok((0..i * 3).collect())));
        }
        for (i, reason) in Reason::ALL.into_iter().enumerate() {
            let stamp = Stamp { size: i as u64, mtime_ns: -(i as i128) - 1, inode: u64::MAX - i as u64 };
            out.insert(format!("dog/bad, \"{i}\" é.png"), (stamp, Err((reason, format!("why {i}\nmore")))));
        }
        out
    }

    fn cache(entries: HashMap<String, (Stamp, Decoded)>) -> Cache {
        Cache { file: PathBuf::new(), settings: KEY.into(), entries, changed: true }
    }

    /// `body` with its CRC appended, as a writer would finish it.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out
    }

    #[test]
    fn written_then_parsed_gives_the_same_entries() {
        let bytes = cache(entries()).to_bytes();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(parse(&bytes, KEY), Ok(entries()));
        let empty = cache(HashMap::new()).to_bytes();
        assert_eq!(parse(&empty, KEY), Ok(HashMap::new()));
    }

    #[test]
    fn the_bytes_do_not_depend_on_the_order_of_the_map() {
        let mut reversed = HashMap::new();
        let mut all: Vec<_> = entries().into_iter().collect();
        all.sort_by(|a, b| b.0.cmp(&a.0));
        reversed.extend(all);
        assert_eq!(cache(reversed).to_bytes(), cache(entries()).to_bytes());
    }

    #[test]
    fn a_truncated_or_damaged_file_is_rejected() {
        let bytes = cache(entries()).to_bytes();
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut], KEY).is_err(), "cut at {cut} of {}", bytes.len());
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(parse(&damaged, KEY).is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn a_short_body_with_a_valid_checksum_is_rejected_not_misread() {
        // Cut inside the entries and resealed: the lengths point past the end.
        let body = &cache(entries()).to_bytes()[..];
        let body = &body[..body.len() - 4];
        for cut in 0..body.len() {
            assert_eq!(parse(&sealed(&body[..cut]), KEY), Err("truncated".into()), "cut at {cut}");
        }
    }

    #[test]
    fn a_file_for_other_settings_or_of_another_format_is_rejected() {
        let bytes = cache(entries()).to_bytes();
        assert_eq!(parse(&bytes, "/data/cats\nsize=128x128 rgb"), Err("made for other settings".into()));
        let body = &bytes[..bytes.len() - 4];
        let mut other_version = body.to_vec();
        other_version[MAGIC.len() - 1] = b'2';
        assert_eq!(parse(&sealed(&other_version), KEY), Err("not a runner image cache of this version".into()));
        // A reason tag past the known reasons.
        let one = cache(HashMap::from([("a".to_string(), (Stamp { size: 1, mtime_ns: 2, inode: 3 }, Ok(vec![9])))]));
        let mut body = one.to_bytes();
        body.truncate(body.len() - 4);
        let tag = body.len() - 8 - 1 - 1;
        assert_eq!(body[tag], 0, "the pixels tag");
        body[tag] = Reason::ALL.len() as u8 + 1;
        assert_eq!(parse(&sealed(&body), KEY), Err("bad reason".into()));
    }

    #[test]
    fn a_saved_cache_reopens_and_answers_only_for_unchanged_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, root) = (tmp.path().join("cache"), tmp.path().join("data"));
        std::fs::create_dir(&root).unwrap();
        let stamp = Stamp { size: 3, mtime_ns: 5, inode: 8 };
        let mut c = Cache::open(&dir, &root, "s");
        assert!(c.get("a.png", stamp).is_none());
        c.insert("a.png".into(), stamp, Ok(vec![1, 2, 3]));
        c.insert("b.png".into(), stamp, Err((Reason::Empty, String::new())));
        c.save().unwrap();
        let c = Cache::open(&dir, &root, "s");
        assert_eq!(c.get("a.png", stamp), Some(&Ok(vec![1, 2, 3])));
        assert_eq!(c.get("b.png", stamp), Some(&Err((Reason::Empty, String::new()))));
        assert!(c.get("a.png", Stamp { mtime_ns: 6, ..stamp }).is_none(), "a changed file is decoded again");
        // Other settings use another file; a damaged file gives an empty cache.
        assert!(Cache::open(&dir, &root, "t").get("a.png", stamp).is_none());
        let file = c.file().to_path_buf();
        std::fs::write(&file, &std::fs::read(&file).unwrap()[..20]).unwrap();
        assert!(Cache::open(&dir, &root, "s").get("a.png", stamp).is_none());
    }
}
