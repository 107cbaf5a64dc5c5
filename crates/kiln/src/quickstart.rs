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
        if cloud.images_for_recipe(r, &hash)?.iter().all(|i| i.account_id != account) {
            missing.push(r.clone());
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let progress = StderrProgress { label: recipe.id.clone() };
    let built = kiln_builder::build(recipe, &cloud.data_dir().join("builds"), cache, &progress)
        .with_context(|| format!("building {}", recipe.id))?;
    let date = chrono::Utc::now().format("%Y%m%d");
    let mut made = Vec::new();
    for region in missing {
        let scope = Scope { account: account.to_owned(), region: region.clone() };
        let taken: Vec<String> =
            cloud.images(&scope, &[], &["self".into()], &[])?.into_iter().map(|v| v.image.name).collect();
        let name = image_name(
            &recipe.image_name,
            &recipe.name,
            recipe.deb_arch(),
            recipe.architecture.as_str(),
            &date.to_string(),
            &taken,
        );
        let products = BuildProducts {
            name,
            description: recipe.description.clone(),
            recipe: recipe.id.clone(),
            hash: hash.clone(),
            architecture: recipe.architecture,
            root_disk: built.root_disk.clone(),
            kernel: built.kernel.clone(),
            initrd: built.initrd.clone(),
            kernel_cmdline: built.kernel_cmdline.clone(),
            root_size_gib: built.root_size_gib,
            default_user: recipe.default_user.clone(),
            public,
        };
        let tags = vec![("kiln:recipe".to_owned(), recipe.id.clone())];
        let image = cloud
            .register_build(&scope, &products, &tags)
            .with_context(|| format!("registering {} in {region}", recipe.id))?;
        made.push((region, image.id));
    }
    Ok(made)
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
