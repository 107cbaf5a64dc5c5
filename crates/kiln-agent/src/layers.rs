//! Fetching the store's layers a host lacks: each is received into `FILE.part`
//! (resumed from its length when a transfer was cut off), checked against its SHA-256
//! and size, pointed at this host's own copy of the layer below it, made read-only and
//! only then renamed into place, so a file at a layer's name is always whole and right.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kiln_agent_api::{AgentError, Layer, LayerSource};

fn fail(msg: impl Into<String>) -> AgentError {
    AgentError::Failed(msg.into())
}

/// How often a long transfer says how far it has come.
const PROGRESS_EVERY: u64 = 64 << 20;

/// Makes sure each of `layers` is under `store`, fetching the missing ones from
/// `source` in order; returns the bytes fetched.
pub fn fetch(store: &Path, source: Option<&dyn LayerSource>, layers: &[Layer]) -> Result<u64, AgentError> {
    let mut fetched = 0;
    for l in layers {
        let path = l.file.under(store);
        if path.exists() {
            continue;
        }
        let source = source.ok_or_else(|| {
            AgentError::NotFound(format!("{} is not on this host, and this host has no store to fetch it from", l.file))
        })?;
        fetched += fetch_one(store, source, l)?;
    }
    Ok(fetched)
}

fn fetch_one(store: &Path, source: &dyn LayerSource, l: &Layer) -> Result<u64, AgentError> {
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
        let out = Command::new("qemu-img")
            .args(["rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(below.under(store))
            .arg(&part)
            .output()
            .map_err(|e| fail(format!("running qemu-img (install qemu-utils): {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&part);
            return Err(fail(format!(
                "qemu-img rebase {}: {}",
                part.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    crate::seal(&part);
    std::fs::rename(&part, &path).map_err(|e| fail(format!("moving {} into place: {e}", path.display())))?;
    tracing::info!(layer = %l.file, bytes = got, took = ?started.elapsed(), "fetched a layer");
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_agent_api::StorePath;
    use sha2::{Digest, Sha256};
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
    /// nothing under the layer's name.
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
        let source = Flaky { content: content.clone(), cut: 1_000_000, opened: AtomicUsize::new(0) };
        let first = fetch(&store, Some(&source), std::slice::from_ref(&layer));
        assert!(matches!(&first, Err(AgentError::Failed(m)) if m.contains("cut off after 1000000 of")), "{first:?}");
        assert!(!layer.file.under(&store).exists(), "nothing under the layer's name until it is whole");
        // The next try asks only for what is missing.
        assert_eq!(fetch(&store, Some(&source), std::slice::from_ref(&layer)).expect("fetched"), 2_000_000);
        assert_eq!(std::fs::read(layer.file.under(&store)).expect("layer"), content);
        assert_eq!(fetch(&store, None, std::slice::from_ref(&layer)).expect("already here"), 0);

        // A part left by a process that died mid-transfer is resumed from its length.
        let other = Layer { file: StorePath::new("kernels/k-initrd").expect("path"), ..layer.clone() };
        std::fs::write(store.join("kernels/k-initrd.part"), &content[..2_000_000]).expect("part");
        let source = Flaky { content: content.clone(), cut: content.len(), opened: AtomicUsize::new(0) };
        assert_eq!(fetch(&store, Some(&source), std::slice::from_ref(&other)).expect("resumed"), 1_000_000);
        assert_eq!(std::fs::read(other.file.under(&store)).expect("layer"), content);

        let wrong = Layer { file: StorePath::new("kernels/k-wrong").expect("path"), sha256: "0".repeat(64), ..layer };
        assert!(fetch(&store, Some(&source), std::slice::from_ref(&wrong)).is_err());
        assert!(!wrong.file.under(&store).exists());
        assert!(matches!(fetch(&store, None, &[wrong]), Err(AgentError::NotFound(_))));
        let _ = std::fs::remove_dir_all(&store);
    }
}
