//! Sealing the store's qcow2 files against what a joined host may have written into
//! them: a volume's top served to a host is written by that host, header included,
//! and made longer than its qcow2 (`nbd::make_room`). Sealed, a file's header names
//! exactly the layer the store says is under it and no external data file, so nothing
//! that opens it (another host, this host's QEMU, qemu-img) follows a name a host
//! planted; a file that has become a layer (its volume went on to a new overlay) also
//! ends where its qcow2 ends and is read-only.

use std::path::Path;
use std::process::Command;

use kiln_agent_api::AgentError;

fn fail(msg: impl Into<String>) -> AgentError {
    AgentError::Failed(msg.into())
}

/// `qemu-img` with `args` on `file`, its JSON answer (exit status 0 or, for `check`, 3:
/// leaked clusters, which are harmless).
fn qemu_img_json(args: &[&str], file: &Path) -> Result<serde_json::Value, AgentError> {
    let out = Command::new("qemu-img")
        .args(args)
        .arg(file)
        .output()
        .map_err(|e| fail(format!("running qemu-img (install qemu-utils): {e}")))?;
    serde_json::from_slice(&out.stdout).map_err(|_| {
        fail(format!("qemu-img {} {}: {}", args[0], file.display(), String::from_utf8_lossy(&out.stderr).trim()))
    })
}

/// Seals `layer`, whose backing must be `backing` (None: it has none); `frozen`: it has
/// become a layer (cut back and made read-only too). Reads first (`-U`: others may have
/// it open) and writes only what differs, so sealing a sealed file changes nothing.
pub fn seal(layer: &Path, backing: Option<&Path>, frozen: bool) -> Result<(), AgentError> {
    let info = qemu_img_json(&["info", "-U", "-f", "qcow2", "--output=json"], layer)?;
    if !info["format-specific"]["data"]["data-file"].is_null() {
        return Err(fail(format!(
            "{} names an external data file, which no layer of this store has: it was tampered with; \
             it is not sealed, and no host is served it",
            layer.display()
        )));
    }
    let has = info["backing-filename"].as_str().map(Path::new);
    let differs = has != backing || (backing.is_some() && info["backing-filename-format"].as_str() != Some("qcow2"));
    if differs {
        let mut rebase = Command::new("qemu-img");
        rebase.args(["rebase", "-u", "-f", "qcow2"]);
        match backing {
            Some(b) => rebase.args(["-F", "qcow2", "-b"]).arg(b),
            None => rebase.args(["-b", ""]),
        };
        make_writable(layer)?;
        let out = rebase.arg(layer).output().map_err(|e| fail(format!("running qemu-img: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "setting the backing of {}: {}",
                layer.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        tracing::warn!(layer = %layer.display(), had = ?has, "a layer's header named another backing; set to the store's");
    }
    if !frozen {
        return Ok(());
    }
    cut_room(layer)?;
    crate::seal(layer);
    Ok(())
}

/// Cuts a qcow2 file back to its image's end (`qemu-img check`'s image end offset),
/// taking off the room a volume server gave it when it was a served top.
pub fn cut_room(layer: &Path) -> Result<(), AgentError> {
    let len = std::fs::metadata(layer).map_err(|e| fail(format!("reading {}: {e}", layer.display())))?.len();
    let check = qemu_img_json(&["check", "-U", "-f", "qcow2", "--output=json"], layer)?;
    if let Some(end) = check["image-end-offset"].as_u64().filter(|end| *end < len) {
        make_writable(layer)?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(layer)
            .and_then(|f| f.set_len(end))
            .map_err(|e| fail(format!("cutting {} back to its qcow2: {e}", layer.display())))?;
        tracing::info!(layer = %layer.display(), from = len, to = end, "cut a former served top back to its qcow2");
    }
    Ok(())
}

fn make_writable(file: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| fail(format!("making {} writable to seal it: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_img(args: &[&str]) {
        let out = Command::new("qemu-img").args(args).output().expect("qemu-img");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A former top whose header a host changed and that its server made longer is
    /// sealed back to what the store says: the backing the store names, its qcow2's
    /// length, read-only; sealing again changes nothing; a layer naming an external
    /// data file is refused.
    #[test]
    fn a_former_served_top_is_sealed_to_what_the_store_says() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            eprintln!("qemu-img is not installed; skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("kiln-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (base, other, top) = (dir.join("base.qcow2"), dir.join("other.qcow2"), dir.join("top.qcow2"));
        let p = |f: &Path| f.display().to_string();
        qemu_img(&["create", "-q", "-f", "qcow2", &p(&base), "64M"]);
        qemu_img(&["create", "-q", "-f", "qcow2", &p(&other), "64M"]);
        // The host pointed the top at another tenant's file, and its server made it long.
        qemu_img(&["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &p(&other), &p(&top), "64M"]);
        std::fs::OpenOptions::new().write(true).open(&top).expect("open").set_len(80 << 20).expect("grow");

        seal(&top, Some(&base), true).expect("sealed");
        let info = qemu_img_json(&["info", "-U", "-f", "qcow2", "--output=json"], &top).expect("info");
        assert_eq!(info["backing-filename"], p(&base));
        let len = std::fs::metadata(&top).expect("meta").len();
        assert!(len < 1 << 20, "cut back to its qcow2: {len}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&top).expect("meta").permissions().mode() & 0o222, 0);
        let sealed = std::fs::read(&top).expect("read");
        seal(&top, Some(&base), true).expect("sealed again");
        assert_eq!(std::fs::read(&top).expect("read"), sealed, "sealing a sealed layer changes nothing");

        // No backing at all when the store says none.
        seal(&top, None, true).expect("sealed");
        let info = qemu_img_json(&["info", "-U", "-f", "qcow2", "--output=json"], &top).expect("info");
        assert!(info["backing-filename"].is_null(), "{info}");

        let with_data = dir.join("data.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("data_file={}", p(&dir.join("raw"))),
            &p(&with_data),
            "1M",
        ]);
        let refused = seal(&with_data, None, false);
        assert!(matches!(&refused, Err(AgentError::Failed(m)) if m.contains("external data file")), "{refused:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A top that was served (its room a long hole) is cut back to its qcow2 when it
    /// becomes a layer here; one that ends where its qcow2 does is left as it is.
    #[test]
    fn cut_room_takes_off_a_servers_room_only() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            eprintln!("qemu-img is not installed; skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("kiln-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (served, plain) = (dir.join("served.qcow2"), dir.join("plain.qcow2"));
        for f in [&served, &plain] {
            qemu_img(&["create", "-q", "-f", "qcow2", &f.display().to_string(), "1G"]);
        }
        std::fs::OpenOptions::new().write(true).open(&served).expect("open").set_len(8 << 30).expect("room");
        let before = std::fs::read(&plain).expect("read");
        cut_room(&served).expect("cut");
        cut_room(&plain).expect("left");
        let len = std::fs::metadata(&served).expect("meta").len();
        assert!(len < 1 << 20, "cut back to its qcow2: {len}");
        assert_eq!(std::fs::read(&plain).expect("read"), before);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
