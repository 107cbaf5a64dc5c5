//! Recipes: declarative image descriptions in TOML, with the files they add loaded at
//! parse time so that a recipe's content hash covers everything the build reads.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use include_dir::{include_dir, Dir};
use kiln_types::Architecture;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The recipes shipped with Kiln (the Quick Start catalog), compiled into the binary.
pub static BUILTIN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../images");

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe {0}: {1}")]
    Invalid(String, String),
    #[error("no recipe named '{0}': give a path to a .toml file or one of: {1}")]
    Unknown(String, String),
}

/// How the image is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Busybox and a few packages on an ext4 root, a Debian kernel booted directly.
    Tiny,
    /// A full Debian system made by mmdebstrap (systemd, cloud-init, OpenSSH, apt), its
    /// own kernel and initramfs booted directly.
    Debian,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    name: String,
    description: String,
    architecture: String,
    kind: Kind,
    #[serde(default)]
    kernel_package: String,
    /// A kernel built from source instead of `kernel_package` (tiny kind, x86_64).
    #[serde(default)]
    kernel_source: Option<KernelSourceFile>,
    kernel_cmdline: String,
    /// The TCG translation cache its guests get, MiB, instead of the host's (a size
    /// chosen by measuring boot time against memory).
    #[serde(default)]
    tcg_tb_size_mib: Option<u32>,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    boot_modules: Vec<String>,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    initramfs_init: Option<String>,
    overlay: String,
    /// The Debian suite (debian kind).
    #[serde(default)]
    suite: Option<String>,
    /// How images are named: `{name}`, `{arch}`, `{date}` and `{n}` (a counter).
    #[serde(default)]
    image_name: Option<String>,
    default_user: String,
    root_size_gib: u64,
    #[serde(default)]
    commands: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelSourceFile {
    package: String,
    config: String,
}

/// A kernel built from Debian's kernel source package and a config fragment merged
/// onto `make tinyconfig`.
#[derive(Debug, Clone)]
pub struct KernelSource {
    /// The source package (`linux-source-6.1`).
    pub package: String,
    /// The config fragment's text.
    pub config: Vec<u8>,
}

/// A file the recipe adds: contents and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A parsed, validated recipe with its files.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The file name it came from, without `.toml` (`kiln-tiny-x86_64`).
    pub id: String,
    pub name: String,
    pub description: String,
    pub architecture: Architecture,
    pub kind: Kind,
    pub kernel_package: String,
    pub kernel_source: Option<KernelSource>,
    pub kernel_cmdline: String,
    /// The TCG translation cache its guests get, MiB (None: the host's).
    pub tcg_tb_size_mib: Option<u32>,
    pub packages: Vec<String>,
    pub boot_modules: Vec<String>,
    pub modules: Vec<String>,
    pub default_user: String,
    pub root_size_gib: u64,
    pub commands: Vec<String>,
    pub suite: String,
    /// The image name pattern (`{name}-{arch}-{date}` unless the recipe says).
    pub image_name: String,
    /// The initramfs `/init` (tiny kind).
    pub init: Option<FileSpec>,
    /// Files added to the root filesystem, by path relative to `/`.
    pub overlay: BTreeMap<String, FileSpec>,
    text: String,
}

/// A file's mode: scripts are executable, the shadow file private, the rest readable.
fn mode_for(path: &str, contents: &[u8]) -> u32 {
    if path.ends_with("etc/shadow") {
        0o640
    } else if contents.starts_with(b"#!") {
        0o755
    } else {
        0o644
    }
}

fn safe_relative(id: &str, p: &str) -> Result<(), RecipeError> {
    let path = Path::new(p);
    if path.is_absolute() || path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(RecipeError::Invalid(
            id.into(),
            format!("path '{p}' must be relative and stay inside the recipe's directory"),
        ));
    }
    Ok(())
}

/// Where a recipe's files come from.
enum Source<'a> {
    Builtin,
    Disk(&'a Path),
}

impl Source<'_> {
    fn read(&self, id: &str, rel: &str) -> Result<Vec<u8>, RecipeError> {
        safe_relative(id, rel)?;
        match self {
            Source::Builtin => BUILTIN
                .get_file(rel)
                .map(|f| f.contents().to_vec())
                .ok_or_else(|| RecipeError::Invalid(id.into(), format!("missing file {rel}"))),
            Source::Disk(base) => std::fs::read(base.join(rel))
                .map_err(|e| RecipeError::Invalid(id.into(), format!("reading {rel}: {e}"))),
        }
    }

    fn tree(&self, id: &str, rel: &str) -> Result<BTreeMap<String, FileSpec>, RecipeError> {
        safe_relative(id, rel)?;
        let mut out = BTreeMap::new();
        match self {
            Source::Builtin => {
                let dir = BUILTIN
                    .get_dir(rel)
                    .ok_or_else(|| RecipeError::Invalid(id.into(), format!("missing directory {rel}")))?;
                fn walk(d: &Dir<'_>, root: &Path, out: &mut BTreeMap<String, FileSpec>) {
                    for f in d.files() {
                        if let Ok(p) = f.path().strip_prefix(root) {
                            let path = p.to_string_lossy().into_owned();
                            let mode = mode_for(&path, f.contents());
                            out.insert(path, FileSpec { contents: f.contents().to_vec(), mode });
                        }
                    }
                    for sub in d.dirs() {
                        walk(sub, root, out);
                    }
                }
                walk(dir, Path::new(rel), &mut out);
            }
            Source::Disk(base) => {
                fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, FileSpec>) -> std::io::Result<()> {
                    for entry in std::fs::read_dir(dir)? {
                        let p = entry?.path();
                        if p.is_dir() {
                            walk(&p, root, out)?;
                        } else if let Ok(rel) = p.strip_prefix(root) {
                            let contents = std::fs::read(&p)?;
                            let path = rel.to_string_lossy().into_owned();
                            let mode = mode_for(&path, &contents);
                            out.insert(path, FileSpec { contents, mode });
                        }
                    }
                    Ok(())
                }
                let root = base.join(rel);
                walk(&root, &root, &mut out)
                    .map_err(|e| RecipeError::Invalid(id.into(), format!("reading {rel}: {e}")))?;
            }
        }
        Ok(out)
    }
}

impl Recipe {
    /// The names of the built-in recipes.
    pub fn builtin_ids() -> Vec<String> {
        let mut ids: Vec<String> =
            BUILTIN.files().filter_map(|f| f.path().to_str()?.strip_suffix(".toml").map(str::to_owned)).collect();
        ids.sort();
        ids
    }

    /// A built-in recipe by id, or a recipe file on disk by path.
    pub fn load(what: &str) -> Result<Recipe, RecipeError> {
        let path = Path::new(what);
        if path.extension().is_some_and(|e| e == "toml") && path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Invalid(what.into(), e.to_string()))?;
            let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let base = path.parent().unwrap_or(Path::new("."));
            return Self::parse(&id, &text, &Source::Disk(base));
        }
        match BUILTIN.get_file(format!("{what}.toml")) {
            Some(f) => {
                let text = f.contents_utf8().ok_or_else(|| RecipeError::Invalid(what.into(), "not UTF-8".into()))?;
                Self::parse(what, text, &Source::Builtin)
            }
            None => Err(RecipeError::Unknown(what.into(), Self::builtin_ids().join(", "))),
        }
    }

    fn parse(id: &str, text: &str, source: &Source<'_>) -> Result<Recipe, RecipeError> {
        let bad = |m: String| RecipeError::Invalid(id.into(), m);
        let f: RecipeFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let architecture: Architecture = f
            .architecture
            .parse()
            .map_err(|_| bad(format!("unknown architecture '{}' (x86_64, i386, arm64)", f.architecture)))?;
        if f.name.is_empty() || !f.name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
            return Err(bad(format!("name '{}' must be letters, digits, '-', '.', '_'", f.name)));
        }
        if !(1..=64).contains(&f.root_size_gib) {
            return Err(bad("root_size_gib must be 1 to 64".into()));
        }
        // Below 8 MiB kiln-tiny took four times as long to boot; above 1 GiB is QEMU's
        // own default on a large host.
        if f.tcg_tb_size_mib.is_some_and(|m| !(8..=1024).contains(&m)) {
            return Err(bad("tcg_tb_size_mib must be 8 to 1024 (MiB)".into()));
        }
        let valid_pkg = |p: &String| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        let kernel: Vec<&String> = match (&f.kind, &f.kernel_source) {
            (Kind::Tiny, Some(src)) => vec![&src.package],
            (Kind::Tiny, None) => vec![&f.kernel_package],
            (Kind::Debian, _) => Vec::new(),
        };
        if let Some(p) = f.packages.iter().chain(kernel).find(|p| !valid_pkg(p)) {
            return Err(bad(format!("'{p}' is not a Debian package name")));
        }
        if f.kernel_source.is_some() {
            if f.kind != Kind::Tiny || architecture != Architecture::X86_64 {
                return Err(bad("kernel_source builds x86_64 kernels for the tiny kind only".into()));
            }
            if !f.kernel_package.is_empty() || !f.boot_modules.is_empty() || !f.modules.is_empty() {
                return Err(bad(
                    "a kernel built from kernel_source has every driver built in: drop kernel_package, boot_modules and modules"
                        .into(),
                ));
            }
        }
        if f.kind == Kind::Tiny && f.initramfs_init.is_none() && f.kernel_source.is_none() {
            return Err(bad("the tiny kind on Debian's kernel needs initramfs_init (its drivers are modules)".into()));
        }
        let suite = f.suite.clone().unwrap_or_else(|| "bookworm".into());
        if !suite.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(bad(format!("suite '{suite}' is not a Debian suite name")));
        }
        if f.default_user.is_empty()
            || !f.default_user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad(format!("default_user '{}' is not a user name", f.default_user)));
        }
        let init = match &f.initramfs_init {
            Some(p) => Some(FileSpec { mode: 0o755, contents: source.read(id, p)? }),
            None => None,
        };
        let overlay = source.tree(id, &f.overlay)?;
        let kernel_source = match &f.kernel_source {
            Some(k) => Some(KernelSource { package: k.package.clone(), config: source.read(id, &k.config)? }),
            None => None,
        };
        Ok(Recipe {
            id: id.to_owned(),
            name: f.name,
            description: f.description,
            architecture,
            kind: f.kind,
            kernel_package: f.kernel_package,
            kernel_source,
            kernel_cmdline: f.kernel_cmdline,
            tcg_tb_size_mib: f.tcg_tb_size_mib,
            packages: f.packages,
            boot_modules: f.boot_modules,
            modules: f.modules,
            default_user: f.default_user,
            root_size_gib: f.root_size_gib,
            commands: f.commands,
            suite,
            image_name: f.image_name.unwrap_or_else(|| "{name}-{arch}-{date}".into()),
            init,
            overlay,
            text: text.to_owned(),
        })
    }

    /// A hash of everything the build reads from the recipe: its text and its files.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.text.as_bytes());
        if let Some(init) = &self.init {
            h.update(&init.contents);
        }
        if let Some(k) = &self.kernel_source {
            h.update(&k.config);
        }
        for (path, f) in &self.overlay {
            h.update(path.as_bytes());
            h.update(f.mode.to_le_bytes());
            h.update(&f.contents);
        }
        hex::encode(&h.finalize()[..16])
    }

    /// Debian's name for the architecture.
    pub fn deb_arch(&self) -> &'static str {
        match self.architecture {
            Architecture::X86_64 => "amd64",
            Architecture::I386 => "i386",
            Architecture::Arm64 => "arm64",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse_and_hash_stably() {
        let ids = Recipe::builtin_ids();
        assert!(ids.contains(&"kiln-tiny-x86_64".to_string()), "{ids:?}");
        for id in ids {
            let r = Recipe::load(&id).expect("parse");
            assert_eq!(r.content_hash(), Recipe::load(&id).expect("parse").content_hash());
            match r.kind {
                Kind::Tiny => {
                    assert_eq!(
                        r.init.is_some(),
                        r.kernel_source.is_none(),
                        "{id}: an initramfs for Debian's kernel only"
                    );
                    assert_eq!(r.overlay["etc/kiln/boot"].mode, 0o755);
                    assert_eq!(r.overlay["etc/kiln/imds"].mode, 0o644, "sourced, not run");
                }
                Kind::Debian => {
                    assert!(r.overlay.contains_key("etc/cloud/cloud.cfg.d/01-kiln.cfg"));
                    assert_eq!(r.default_user, "admin");
                }
            }
        }
        assert!(Recipe::builtin_ids().contains(&"debian-12-amd64".to_string()));
        let x86 = Recipe::load("kiln-tiny-x86_64").expect("x86");
        let arm = Recipe::load("kiln-tiny-arm64").expect("arm");
        assert_ne!(x86.content_hash(), arm.content_hash());
        assert_eq!(arm.deb_arch(), "arm64");
        let own = x86.kernel_source.as_ref().expect("kiln-tiny x86_64 builds its own kernel");
        assert!(String::from_utf8_lossy(&own.config).contains("CONFIG_VIRTIO_BLK=y"));
        assert!(x86.boot_modules.is_empty() && arm.kernel_source.is_none());
        assert!(x86.init.is_none() && arm.init.is_some(), "only Debian's kernels need an initramfs");
        assert_eq!(x86.tcg_tb_size_mib, Some(16), "kiln-tiny x86_64 names its own translation cache");
    }

    #[test]
    fn a_kernel_from_source_is_hashed_and_checked() {
        let dir = std::env::temp_dir().join(format!("kiln-recipe-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).expect("dir");
        std::fs::write(dir.join("init"), "#!/bin/sh\n").expect("init");
        std::fs::write(dir.join("k.config"), "CONFIG_VIRTIO_BLK=y\n").expect("config");
        let no_init = |extra: &str| {
            let text = format!(
                "name = \"t\"\ndescription = \"t\"\narchitecture = \"x86_64\"\nkind = \"tiny\"\n\
                 kernel_cmdline = \"console=ttyS0\"\noverlay = \"rootfs\"\n\
                 default_user = \"ec2-user\"\nroot_size_gib = 1\n{extra}"
            );
            Recipe::parse("t", &text, &Source::Disk(&dir))
        };
        let recipe = |extra: &str| no_init(&format!("initramfs_init = \"init\"\n{extra}"));
        let src = "kernel_source = { package = \"linux-source-6.1\", config = \"k.config\" }\n";
        let first = recipe(src).expect("parse").content_hash();
        std::fs::write(dir.join("k.config"), "CONFIG_VIRTIO_BLK=y\nCONFIG_EXT4_FS=y\n").expect("config");
        assert_ne!(first, recipe(src).expect("parse").content_hash(), "the fragment is part of the hash");
        let with_modules = format!("{src}modules = [\"virtio_net\"]\n");
        assert!(matches!(recipe(&with_modules), Err(RecipeError::Invalid(..))));
        let escaping = "kernel_source = { package = \"linux-source-6.1\", config = \"../k.config\" }\n";
        assert!(matches!(recipe(escaping), Err(RecipeError::Invalid(..))));
        // Without an initramfs: fine for a kernel with its drivers built in, refused for
        // Debian's, whose block drivers are modules.
        assert!(no_init(src).expect("own kernel, no initramfs").init.is_none());
        let debian = "kernel_package = \"linux-image-cloud-amd64\"\nboot_modules = [\"virtio_blk\"]\n";
        assert!(matches!(no_init(debian), Err(RecipeError::Invalid(..))));
        // A translation cache of its own, within bounds.
        assert_eq!(no_init(&format!("{src}tcg_tb_size_mib = 16\n")).expect("16 MiB").tcg_tb_size_mib, Some(16));
        assert!(matches!(no_init(&format!("{src}tcg_tb_size_mib = 2\n")), Err(RecipeError::Invalid(..))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_and_escaping_recipes_are_refused() {
        assert!(matches!(Recipe::load("nope"), Err(RecipeError::Unknown(..))));
        assert!(safe_relative("r", "../etc/passwd").is_err());
        assert!(safe_relative("r", "/etc/passwd").is_err());
        assert!(safe_relative("r", "kiln-tiny/rootfs").is_ok());
    }
}
