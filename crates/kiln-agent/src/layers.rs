//! A joined host's copies of the store's layers: fetching those it lacks, in the
//! background, and removing the least recently used when they outgrow their room.
//! Each is received into `FILE.part` (resumed from its length when a transfer was cut
//! off), checked against its SHA-256 and size, pointed at this host's own copy of the
//! layer below it, made read-only and only then renamed into place, so a file at a
//! layer's name is always whole and right. One file is fetched by one thread at a time.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use kiln_agent_api::{AgentError, Layer, LayerSource, LayersReady};

fn fail(msg: impl Into<String>) -> AgentError {
    AgentError::Failed(msg.into())
}

/// How often a long transfer says how far it has come.
const PROGRESS_EVERY: u64 = 64 << 20;

/// One background fetch: its bytes so far, of how many, and how it ended.
struct Fetch {
    done: Arc<AtomicU64>,
    total: u64,
    outcome: Arc<Mutex<Option<Result<u64, AgentError>>>>,
}

/// The fetches under way on a host, by the list of layers asked for.
#[derive(Default)]
pub struct Fetches(Mutex<HashMap<String, Fetch>>);

impl Fetches {
    /// Where `layers` stand under `store`: all there, or being fetched from `source`
    /// (started now if not yet under way). A fetch that failed is returned once, as
    /// this call's error; the next call starts it again.
    pub fn ensure(
        &self,
        store: &Path,
        source: Option<&Arc<dyn LayerSource>>,
        layers: &[Layer],
    ) -> Result<LayersReady, AgentError> {
        let key = layers.iter().map(|l| l.file.as_str()).collect::<Vec<_>>().join("\n");
        let mut fetches = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = fetches.get(&key) {
            let ended = f.outcome.lock().unwrap_or_else(PoisonError::into_inner).take();
            match ended {
                None => return Ok(LayersReady::Fetching { done: f.done.load(Ordering::Relaxed), total: f.total }),
                // Ready only while all are still here (room may have been made since).
                Some(Ok(fetched)) if layers.iter().all(|l| l.file.under(store).exists()) => {
                    fetches.remove(&key);
                    return Ok(LayersReady::Ready { fetched });
                }
                Some(Ok(_)) => {
                    fetches.remove(&key);
                }
                Some(Err(e)) => {
                    fetches.remove(&key);
                    return Err(e);
                }
            }
        }
        let missing: Vec<Layer> = layers.iter().filter(|l| !l.file.under(store).exists()).cloned().collect();
        if missing.is_empty() {
            return Ok(LayersReady::Ready { fetched: 0 });
        }
        let Some(source) = source.cloned() else {
            return Err(AgentError::NotFound(format!(
                "{} is not on this host, and this host has no store to fetch it from",
                missing[0].file
            )));
        };
        let fetch =
            Fetch { done: Arc::default(), total: missing.iter().map(|l| l.size).sum(), outcome: Arc::default() };
        let (done, outcome, store) = (fetch.done.clone(), fetch.outcome.clone(), store.to_path_buf());
        std::thread::Builder::new()
            .name("kiln-layer-fetch".into())
            .spawn(move || {
                let r = fetch_all(&store, source.as_ref(), &missing, &done);
                *outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
            })
            .map_err(|e| fail(format!("starting a layer fetch: {e}")))?;
        let answer = LayersReady::Fetching { done: 0, total: fetch.total };
        fetches.insert(key, fetch);
        Ok(answer)
    }
}

/// Files being fetched by some thread of this process, and a wake-up when one is done.
static CLAIMED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
static RELEASED: Condvar = Condvar::new();

/// A file this thread fetches; another waits until it is released.
struct Claim(PathBuf);

impl Claim {
    fn take(path: &Path) -> Self {
        let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
        while claimed.get_or_insert_with(HashSet::new).contains(path) {
            claimed = RELEASED.wait(claimed).unwrap_or_else(PoisonError::into_inner);
        }
        claimed.get_or_insert_with(HashSet::new).insert(path.to_path_buf());
        Claim(path.to_path_buf())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = claimed.as_mut() {
            set.remove(&self.0);
        }
        RELEASED.notify_all();
    }
}

/// Makes sure each of `layers` is under `store`, fetching the missing ones from
/// `source` in order and counting the bytes in `done`; returns the bytes fetched.
pub fn fetch_all(
    store: &Path,
    source: &dyn LayerSource,
    layers: &[Layer],
    done: &AtomicU64,
) -> Result<u64, AgentError> {
    let mut fetched = 0;
    for l in layers {
        let path = l.file.under(store);
        let _claim = Claim::take(&path);
        if path.exists() {
            continue;
        }
        fetched += fetch_one(store, source, l, done)?;
    }
    Ok(fetched)
}

fn fetch_one(store: &Path, source: &dyn LayerSource, l: &Layer, done: &AtomicU64) -> Result<u64, AgentError> {
    let path = l.file.under(store);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
    }
    let part = path.with_extension(match path.extension() {
        Some(ext) => format!("{}.part", ext.to_string_lossy()),
        None => "part".into(),
    });
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > l.size {
        let _ = std::fs::remove_file(&part);
        have = 0;
    }
    let started = Instant::now();
    let mut got = 0;
    if have < l.size {
        tracing::info!(layer = %l.file, from = have, size = l.size, "fetching a layer from the store");
        let mut from = source.open(&l.file, have)?.take(l.size - have);
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| fail(format!("opening {}: {e}", part.display())))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).map_err(|e| {
                fail(format!("{} was cut off after {} bytes ({e}); the next try resumes there", l.file, have + got))
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| fail(format!("writing {}: {e}", part.display())))?;
            if (got + n as u64) / PROGRESS_EVERY > got / PROGRESS_EVERY {
                tracing::info!(layer = %l.file, done = have + got + n as u64, size = l.size, "fetching a layer");
            }
            got += n as u64;
            done.fetch_add(n as u64, Ordering::Relaxed);
        }
        out.sync_all().map_err(|e| fail(format!("writing {}: {e}", part.display())))?;
        if have + got < l.size {
            return Err(fail(format!(
                "{} was cut off after {} of {} bytes; the next try resumes there",
                l.file,
                have + got,
                l.size
            )));
        }
    }
    let digest = Layer::sha256_of(&part).map_err(|e| fail(format!("reading {}: {e}", part.display())))?;
    let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if len != l.size || digest != l.sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(fail(format!(
            "{} arrived as {len} bytes with SHA-256 {digest}, not the store's {} bytes with {}; it is fetched again \
             from the start on the next try",
            l.file, l.size, l.sha256
        )));
    }
    if let Some(below) = &l.backing {
        // The layer names the one below it by the store's path on the control plane's
        // machine; here it is this host's copy (fetched before it).
        let mut rebase = Command::new("qemu-img");
        rebase.args(["rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b"]).arg(below.under(store)).arg(&part);
        crate::qemu_img(&mut rebase, &part, &format!("qemu-img rebase {}", part.display()))?;
    }
    crate::seal(&part);
    std::fs::rename(&part, &path).map_err(|e| fail(format!("moving {} into place: {e}", path.display())))?;
    tracing::info!(layer = %l.file, bytes = got, took = ?started.elapsed(), "fetched a layer");
    Ok(got)
}

/// The areas of a joined host's store that hold copies of the control plane's files
/// (each keeps the name it has there).
const COPY_AREAS: [&str; 3] = ["kernels", "snapshots", "volumes"];

/// Marks `files` of `store` as used now (their modification time), so that `collect`
/// keeps the most recently used longest.
pub fn touch<'a>(store: &Path, files: impl IntoIterator<Item = &'a kiln_agent_api::StorePath>) {
    let now = std::time::SystemTime::now();
    for f in files {
        if let Ok(file) = std::fs::File::open(f.under(store)) {
            let _ = file.set_modified(now);
        }
    }
}

/// Every copy under `store`: a read-only file (as a fetch leaves it; a file anyone may
/// write is no copy, such as a volume an older Kiln made on this host) with its size
/// and when it was last used.
fn copies(store: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = Vec::new();
    let mut dirs: Vec<PathBuf> = COPY_AREAS.iter().map(|a| store.join(a)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file()
                && meta.permissions().mode() & 0o222 == 0
                && path.extension().is_none_or(|e| e != "part")
            {
                found.push((path, meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
    }
    found
}

/// Removes copies under `store` that no VM uses (`in_use`), least recently used first,
/// until the copies take at most `room` bytes; returns the bytes removed. A copy in use
/// is never removed (and removing one would not harm a VM that has it open).
pub fn collect(store: &Path, in_use: &HashSet<PathBuf>, room: u64) -> u64 {
    let mut all = copies(store);
    let mut total: u64 = all.iter().map(|(_, len, _)| len).sum();
    all.sort_by_key(|(_, _, used)| *used);
    let mut removed = 0;
    for (path, len, _) in all {
        if total <= room {
            break;
        }
        if in_use.contains(&path) {
            continue;
        }
        let _claim = Claim::take(&path);
        if std::fs::remove_file(&path).is_ok() {
            tracing::info!(layer = %path.display(), bytes = len, "removed a layer copy no VM here uses, to make room");
            total -= len;
            removed += len;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_agent_api::StorePath;
    use sha2::{Digest, Sha256};
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that serves `content`, cut off after `cut` bytes on its first opening.
    struct Flaky {
        content: Vec<u8>,
        cut: usize,
        opened: AtomicUsize,
    }

    impl LayerSource for Flaky {
        fn open(&self, _file: &StorePath, from: u64) -> Result<Box<dyn Read + Send>, AgentError> {
            let first = self.opened.fetch_add(1, Ordering::SeqCst) == 0;
            let end = if first { self.cut } else { self.content.len() };
            Ok(Box::new(std::io::Cursor::new(self.content[from as usize..end].to_vec())))
        }
    }

    /// A transfer cut off resumes where it stopped and is used only once its hash
    /// matches; a layer already here costs nothing; a wrong hash is refused and leaves
    /// nothing under the layer's name; in the background, a fetch reports its progress
    /// and ends ready.
    #[test]
    fn a_layer_arrives_whole_resumes_after_a_cut_and_is_checked() {
        let store = std::env::temp_dir().join(format!("kiln-layers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let content: Vec<u8> = (0..3_000_000u32).map(|n| (n % 251) as u8).collect();
        let layer = Layer {
            file: StorePath::new("kernels/k-vmlinuz").expect("path"),
            sha256: hex::encode(Sha256::digest(&content)),
            size: content.len() as u64,
            backing: None,
        };
        let done = AtomicU64::new(0);
        let source = Flaky { content: content.clone(), cut: 1_000_000, opened: AtomicUsize::new(0) };
        let first = fetch_all(&store, &source, std::slice::from_ref(&layer), &done);
        assert!(matches!(&first, Err(AgentError::Failed(m)) if m.contains("cut off after 1000000 of")), "{first:?}");
        assert!(!layer.file.under(&store).exists(), "nothing under the layer's name until it is whole");
        // The next try asks only for what is missing.
        assert_eq!(fetch_all(&store, &source, std::slice::from_ref(&layer), &done).expect("fetched"), 2_000_000);
        assert_eq!(done.load(Ordering::Relaxed), 3_000_000);
        assert_eq!(std::fs::read(layer.file.under(&store)).expect("layer"), content);
        let fetches = Fetches::default();
        let ready = fetches.ensure(&store, None, std::slice::from_ref(&layer)).expect("already here");
        assert_eq!(ready, LayersReady::Ready { fetched: 0 });

        // A part left by a process that died mid-transfer is resumed from its length.
        let other = Layer { file: StorePath::new("kernels/k-initrd").expect("path"), ..layer.clone() };
        std::fs::write(store.join("kernels/k-initrd.part"), &content[..2_000_000]).expect("part");
        let source = Flaky { content: content.clone(), cut: content.len(), opened: AtomicUsize::new(0) };
        let done = AtomicU64::new(0);
        assert_eq!(fetch_all(&store, &source, std::slice::from_ref(&other), &done).expect("resumed"), 1_000_000);
        assert_eq!(std::fs::read(other.file.under(&store)).expect("layer"), content);

        let wrong =
            Layer { file: StorePath::new("kernels/k-wrong").expect("path"), sha256: "0".repeat(64), ..layer.clone() };
        assert!(fetch_all(&store, &source, std::slice::from_ref(&wrong), &done).is_err());
        assert!(!wrong.file.under(&store).exists());
        assert!(matches!(fetches.ensure(&store, None, std::slice::from_ref(&wrong)), Err(AgentError::NotFound(_))));

        // In the background: fetching, then ready with the bytes it fetched; a failure
        // is one answer's error.
        let third = Layer { file: StorePath::new("kernels/k-third").expect("path"), ..layer };
        let source: Arc<dyn LayerSource> =
            Arc::new(Flaky { content: content.clone(), cut: content.len(), opened: AtomicUsize::new(0) });
        let first = fetches.ensure(&store, Some(&source), std::slice::from_ref(&third)).expect("started");
        assert!(matches!(first, LayersReady::Fetching { total: 3_000_000, .. }), "{first:?}");
        let mut answer = first;
        for _ in 0..500 {
            answer = fetches.ensure(&store, Some(&source), std::slice::from_ref(&third)).expect("progress");
            if answer == (LayersReady::Ready { fetched: 3_000_000 }) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(answer, LayersReady::Ready { fetched: 3_000_000 });
        let wrong = [wrong];
        let _ = fetches.ensure(&store, Some(&source), &wrong).expect("started");
        let mut failed = false;
        for _ in 0..500 {
            match fetches.ensure(&store, Some(&source), &wrong) {
                Err(AgentError::Failed(_)) => {
                    failed = true;
                    break;
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        assert!(failed, "a fetch that failed is an error");
        let _ = std::fs::remove_dir_all(&store);
    }

    /// Copies outgrowing their room go least recently used first, but never one in use,
    /// and never a file that is no copy (one anyone may write).
    #[test]
    fn copies_beyond_their_room_go_least_recently_used_first_but_not_those_in_use() {
        use std::os::unix::fs::PermissionsExt as _;
        let store = std::env::temp_dir().join(format!("kiln-layer-room-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        let make = |name: &str, len: usize, age_days: u32, sealed: bool| {
            let path = store.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, vec![7u8; len]).expect("copy");
            std::fs::File::open(&path).expect("open").set_modified(now - day * age_days).expect("mtime");
            let mode = if sealed { 0o444 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("mode");
            path
        };
        let oldest = make("snapshots/snap-1.qcow2", 1000, 9, true);
        let in_use = make("volumes/vol-2.qcow2", 1000, 8, true);
        let older = make("kernels/k/vmlinuz", 1000, 7, true);
        let newer = make("snapshots/snap-3.qcow2", 1000, 1, true);
        let volume = make("volumes/vol-4.qcow2", 5000, 30, false);
        let part = make("snapshots/snap-5.qcow2.part", 5000, 30, true);
        let _ = make("snapshots/snap-6.qcow2.part", 0, 0, false);
        // Used just now, though it was fetched long ago.
        touch(&store, [&StorePath::new("snapshots/snap-1.qcow2").expect("path")]);

        let used: HashSet<PathBuf> = [in_use.clone()].into();
        assert_eq!(collect(&store, &used, 4000), 0, "within room: nothing goes");
        assert_eq!(collect(&store, &used, 2500), 2000);
        assert!(!older.exists() && !newer.exists(), "the least recently used go first");
        assert!(oldest.exists(), "a copy used just now stays");
        assert!(in_use.exists(), "a copy in use stays");
        assert!(volume.exists() && part.exists(), "a writable file and a fetch under way are no copies");
        assert_eq!(collect(&store, &used, 0), 1000);
        assert!(!oldest.exists() && in_use.exists());
        let _ = std::fs::remove_dir_all(&store);
    }
}
