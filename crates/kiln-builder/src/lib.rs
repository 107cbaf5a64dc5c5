//! Kiln's image builder: turns a recipe (base, architecture, Debian packages, files,
//! build-time commands, default user, boot method) into a bootable root disk (qcow2),
//! a kernel and an initramfs, from Debian's packages only. Builds are cached by the
//! recipe's content hash. This crate makes files; registering them as an AMI is the
//! control plane's job.

mod debian;
mod debs;
mod kernel;
mod kmod;
pub mod recipe;
mod run;
mod tiny;

use std::path::{Path, PathBuf};

pub use recipe::{KernelSource, Recipe, RecipeError, BUILTIN};

/// What can go wrong in a build. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Missing(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// The products of a build, all inside its build directory.
#[derive(Debug, Clone)]
pub struct Built {
    pub hash: String,
    pub root_disk: PathBuf,
    pub kernel: PathBuf,
    /// None for a kernel that mounts the root volume itself (kiln-tiny's own kernel).
    pub initrd: Option<PathBuf>,
    pub kernel_cmdline: String,
    pub root_size_gib: u64,
}

/// Reports progress: one call per step, with a step number out of a total.
pub trait Progress {
    fn step(&self, n: usize, total: usize, what: &str);
}

/// Writes steps to standard error.
pub struct StderrProgress {
    pub label: String,
}

impl Progress for StderrProgress {
    fn step(&self, n: usize, total: usize, what: &str) {
        eprintln!("[{}] {n}/{total} {what}", self.label);
    }
}

/// Clears what an interrupted build left in `builds` (a daemon killed mid-build):
/// its helper processes (mmdebstrap, dpkg-deb, mkfs...), the mounts mmdebstrap made
/// inside the build directory, and the `.partial` directories. Returns what was done.
pub fn clean_interrupted(builds: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(builds) = std::fs::canonicalize(builds) else { return done };
    let marker = builds.to_string_lossy().into_owned();
    let me = std::process::id();
    // Processes still working inside the build directory.
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.filter_map(Result::ok) {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else { continue };
            if pid as u32 == me {
                continue;
            }
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cwd =
                std::fs::read_link(p.path().join("cwd")).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&marker) || cwd.starts_with(&marker) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                done.push(format!("ended process {pid} ({})", text.chars().take(80).collect::<String>()));
            }
        }
    }
    // Mounts under it, deepest first.
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .filter(|m| m.starts_with(&marker))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        if std::process::Command::new("umount").args(["-l", &m]).status().is_ok_and(|s| s.success()) {
            done.push(format!("unmounted {m}"));
        }
    }
    if let Ok(entries) = std::fs::read_dir(&builds) {
        for e in entries.filter_map(Result::ok) {
            if e.file_name().to_string_lossy().ends_with(".partial") && std::fs::remove_dir_all(e.path()).is_ok() {
                done.push(format!("removed {}", e.path().display()));
            }
        }
    }
    done
}

/// Builds `recipe` into `builds/<hash>/`, reusing a finished build with the same hash
/// and downloaded packages in `cache`. A failed build leaves nothing behind.
pub fn build(recipe: &Recipe, builds: &Path, cache: &Path, progress: &dyn Progress) -> Result<Built, BuildError> {
    let hash = recipe.content_hash();
    let dir = builds.join(&hash);
    let built = Built {
        hash: hash.clone(),
        root_disk: dir.join("root.qcow2"),
        kernel: dir.join("vmlinuz"),
        initrd: (recipe.kind == recipe::Kind::Debian || recipe.init.is_some()).then(|| dir.join("initrd.img")),
        kernel_cmdline: recipe.kernel_cmdline.clone(),
        root_size_gib: recipe.root_size_gib,
    };
    if dir.join("done").exists() {
        progress.step(1, 1, &format!("cached build {hash}"));
        return Ok(built);
    }
    let work = builds.join(format!("{hash}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let result = match recipe.kind {
        recipe::Kind::Tiny => tiny::build(recipe, &work, cache, progress),
        recipe::Kind::Debian => debian::build(recipe, &work, cache, progress),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    std::fs::write(work.join("recipe"), &recipe.id).map_err(io("naming the build"))?;
    std::fs::write(work.join("done"), &hash).map_err(io("marking the build done"))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).map_err(io(format!("moving the build into {}", dir.display())))?;
    Ok(built)
}
