//! Kernel modules: which files to load, and in which order, read from the `depends=`
//! field of each module's `.modinfo` section (what `depmod` would write to
//! `modules.dep`; kmod is not installed on every build host).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::BuildError;

/// Modules of one kernel tree, by name (dashes as underscores).
pub struct Modules {
    by_name: HashMap<String, PathBuf>,
}

impl Modules {
    pub fn index(modules_dir: &Path) -> Result<Self, BuildError> {
        let mut by_name = HashMap::new();
        let mut stack = vec![modules_dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(crate::io(format!("reading {}", dir.display())))?;
            for e in entries.filter_map(Result::ok) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                    by_name.insert(name.replace('-', "_"), p.clone());
                }
            }
        }
        Ok(Self { by_name })
    }

    fn depends(&self, path: &Path) -> Result<Vec<String>, BuildError> {
        let bytes = std::fs::read(path).map_err(crate::io(format!("reading {}", path.display())))?;
        Ok(modinfo_depends(&bytes))
    }

    /// `wanted` and everything they need, dependencies first. Modules built into the
    /// kernel (absent from the tree) are skipped when something depends on them, but a
    /// wanted module that does not exist at all is an error only if the kernel does not
    /// have it built in; the caller cannot know, so missing wanted modules are skipped
    /// with a warning.
    pub fn load_order(&self, wanted: &[String]) -> Result<Vec<(String, PathBuf)>, BuildError> {
        let mut order: Vec<(String, PathBuf)> = Vec::new();
        let mut visiting: Vec<String> = Vec::new();
        for w in wanted {
            self.visit(&w.replace('-', "_"), &mut order, &mut visiting)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<(String, PathBuf)>,
        visiting: &mut Vec<String>,
    ) -> Result<(), BuildError> {
        if order.iter().any(|(n, _)| n == name) || visiting.iter().any(|v| v == name) {
            return Ok(());
        }
        let Some(path) = self.by_name.get(name) else {
            tracing::info!(module = name, "not a loadable module here (built into the kernel?)");
            return Ok(());
        };
        visiting.push(name.to_owned());
        for dep in self.depends(path)? {
            self.visit(&dep, order, visiting)?;
        }
        visiting.pop();
        order.push((name.to_owned(), path.clone()));
        Ok(())
    }
}

/// The `depends=` list from a module's bytes.
fn modinfo_depends(bytes: &[u8]) -> Vec<String> {
    let needle = b"\0depends=";
    let Some(start) = bytes.windows(needle.len()).position(|w| w == needle) else {
        return Vec::new();
    };
    let rest = &bytes[start + needle.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_from_modinfo() {
        let bytes = b"\x7fELF junk\0license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0";
        assert_eq!(modinfo_depends(bytes), vec!["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
        assert!(modinfo_depends(b"nothing").is_empty());
    }

    #[test]
    fn orders_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("kiln-kmod-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("drivers")).expect("dir");
        std::fs::write(dir.join("drivers/virtio_net.ko"), b"\0depends=net_failover,virtio\0").expect("w");
        std::fs::write(dir.join("drivers/net_failover.ko"), b"\0depends=failover\0").expect("w");
        std::fs::write(dir.join("drivers/failover.ko"), b"\0depends=\0").expect("w");
        std::fs::write(dir.join("drivers/virtio.ko"), b"\0depends=\0").expect("w");
        let m = Modules::index(&dir).expect("index");
        let order: Vec<String> =
            m.load_order(&["virtio_net".into()]).expect("order").into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, vec!["failover", "net_failover", "virtio", "virtio_net"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
