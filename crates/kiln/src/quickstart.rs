//! The Quick Start catalog: the built-in recipes, built (or taken from the build cache)
//! and registered as public images of the provider account (alias `amazon`) in every
//! region that lacks them.

use std::path::Path;

use anyhow::{Context, Result};
use kiln_builder::{Recipe, StderrProgress};
use kiln_control::images::BuildProducts;
use kiln_control::{Cloud, Scope};

/// Builds and registers one recipe for `account` in `regions`, skipping regions that
/// already have an image from the same recipe content. Returns the image ids made.
pub fn build_and_register(
    cloud: &Cloud,
    recipe: &Recipe,
    account: &str,
    regions: &[String],
    public: bool,
    cache: &Path,
) -> Result<Vec<(String, String)>> {
    let hash = recipe.content_hash();
    let mut missing = Vec::new();
    for r in regions {
        let have = cloud.images_for_recipe(r, &hash)?;
        if !have.iter().any(|i| i.account_id == account && i.state == "available") {
            missing.push(r.clone());
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    // The images show as pending while they build, and as failed if the build fails.
    let date = chrono::Utc::now().format("%Y%m%d").to_string();
    let tags = vec![("kiln:recipe".to_owned(), recipe.id.clone())];
    let mut reserved = Vec::new();
    for region in &missing {
        let scope = Scope { account: account.to_owned(), region: region.clone() };
        let taken: Vec<String> = cloud
            .images(&scope, &[], &["self".into()], &[])?
            .into_iter()
            .filter(|v| v.image.recipe_hash.as_deref() != Some(hash.as_str()) || v.image.state == "available")
            .map(|v| v.image.name)
            .collect();
        let name = image_name(
            &recipe.image_name,
            &recipe.name,
            recipe.deb_arch(),
            recipe.architecture.as_str(),
            &date,
            &taken,
        );
        let products = products(recipe, &hash, name, public, None);
        let image = cloud
            .reserve_build(&scope, &products, &tags)
            .with_context(|| format!("registering {} in {region}", recipe.id))?;
        reserved.push((scope, image.id, products));
    }
    let progress = StderrProgress { label: recipe.id.clone() };
    let built = match kiln_builder::build(recipe, &cloud.data_dir().join("builds"), cache, &progress) {
        Ok(b) => b,
        Err(e) => {
            for (_, id, _) in &reserved {
                let _ = cloud.fail_build(id, &format!("The image build failed: {e}"));
            }
            return Err(anyhow::Error::from(e).context(format!("building {}", recipe.id)));
        }
    };
    let mut made = Vec::new();
    for (scope, id, p) in reserved {
        let p = products(recipe, &hash, p.name, public, Some(&built));
        if let Err(e) = cloud.complete_build(&scope, &id, &p) {
            let _ = cloud.fail_build(&id, &format!("Registering the build failed: {e}"));
            return Err(anyhow::Error::from(e).context(format!("registering {} in {}", recipe.id, scope.region)));
        }
        made.push((scope.region, id));
    }
    Ok(made)
}

/// What the control plane needs to register a build (paths are empty until built).
fn products(
    recipe: &Recipe,
    hash: &str,
    name: String,
    public: bool,
    built: Option<&kiln_builder::Built>,
) -> BuildProducts {
    let path = |f: fn(&kiln_builder::Built) -> &std::path::PathBuf| built.map(|b| f(b).clone()).unwrap_or_default();
    BuildProducts {
        name,
        description: recipe.description.clone(),
        recipe: recipe.id.clone(),
        hash: hash.to_owned(),
        architecture: recipe.architecture,
        root_disk: path(|b| &b.root_disk),
        kernel: path(|b| &b.kernel),
        initrd: built.and_then(|b| b.initrd.clone()),
        kernel_cmdline: recipe.kernel_cmdline.clone(),
        tcg_tb_size_mib: recipe.tcg_tb_size_mib,
        root_size_gib: recipe.root_size_gib,
        default_user: recipe.default_user.clone(),
        public,
    }
}

/// The first free name from a recipe's pattern: `{name}`, `{arch}` (EC2's name),
/// `{debarch}` (Debian's), `{date}`, and `{n}` counting from 1; without `{n}`, a
/// taken name gets `-2`, `-3`, ...
fn image_name(pattern: &str, name: &str, debarch: &str, arch: &str, date: &str, taken: &[String]) -> String {
    let fill = |n: u32| {
        pattern
            .replace("{name}", name)
            .replace("{arch}", arch)
            .replace("{debarch}", debarch)
            .replace("{date}", date)
            .replace("{n}", &n.to_string())
    };
    if pattern.contains("{n}") {
        return (1..).map(fill).find(|c| !taken.contains(c)).unwrap_or_else(|| fill(1));
    }
    let base = fill(1);
    std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|c| !taken.contains(c))
        .unwrap_or(base)
}

/// Makes the catalog available (the recipes in `only`, or all); a recipe that fails
/// is reported and skipped.
pub fn ensure(cloud: &Cloud, cache: &Path, only: &[String], stop: &std::sync::atomic::AtomicBool) {
    let provider = match cloud.provider() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the provider account; no Quick Start images");
            return;
        }
    };
    let regions: Vec<String> = cloud.regions.iter().map(|r| r.name.clone()).collect();
    let mut ids: Vec<String> =
        Recipe::builtin_ids().into_iter().filter(|id| only.is_empty() || only.contains(id)).collect();
    // The tiny images first: they build in seconds, the full ones in minutes.
    ids.sort_by_key(|id| !id.starts_with("kiln-tiny"));
    for id in ids {
        // Between recipes, a shutdown wins; a build in progress is finished, not cut
        // (mmdebstrap killed half-way leaves mounts behind).
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!("shutting down: the remaining Quick Start images are built at the next start");
            return;
        }
        let result = Recipe::load(&id)
            .map_err(anyhow::Error::from)
            .and_then(|r| build_and_register(cloud, &r, &provider.id, &regions, true, cache));
        match result {
            Ok(made) if made.is_empty() => {
                tracing::info!(recipe = %id, "Quick Start image present")
            }
            Ok(made) => {
                for (region, image) in made {
                    tracing::info!(recipe = %id, %region, %image, "Quick Start image registered");
                }
            }
            Err(e) => {
                tracing::error!(recipe = %id, error = %format!("{e:#}"), "Quick Start image not available; it is retried at the next start")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::image_name;

    #[test]
    fn names_follow_the_official_patterns() {
        let taken = vec!["debian-12-amd64-20261125-1".to_string()];
        assert_eq!(
            image_name("debian-12-amd64-{date}-{n}", "debian-12", "amd64", "x86_64", "20261125", &taken),
            "debian-12-amd64-20261125-2"
        );
        assert_eq!(
            image_name("{name}-{arch}-{date}", "kiln-tiny", "arm64", "arm64", "20261125", &[]),
            "kiln-tiny-arm64-20261125"
        );
        let taken = vec!["kiln-tiny-x86_64-20261125".to_string()];
        assert_eq!(
            image_name("{name}-{arch}-{date}", "kiln-tiny", "amd64", "x86_64", "20261125", &taken),
            "kiln-tiny-x86_64-20261125-2"
        );
    }
}
