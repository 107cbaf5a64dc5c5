//! `kiln db`: where a data directory's cloud keeps its state, the schema and the
//! leases there (`status`), and copying a SQLite cloud into PostgreSQL (`migrate`).

use anyhow::{bail, Context, Result};
use kiln_store::{Location, Store};

use crate::serve::{default_regions, location, open, record_database};

/// A span of milliseconds as people read it.
fn span(ms: i64) -> String {
    let s = ms.unsigned_abs() as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

pub(crate) fn status(dir: &std::path::Path) -> Result<()> {
    let at = location(dir)?;
    let cloud = open(dir, &default_regions())?;
    println!("store      {}", at.redacted());
    println!(
        "schema     version {} (this kiln knows {})",
        cloud.store.schema_version()?,
        kiln_store::known_schema_version()
    );
    let (leases, now) = cloud.leases()?;
    if leases.is_empty() {
        println!("leases     none held (no server is doing background work)");
    }
    for l in leases {
        let state = if l.expires_at < now {
            format!("lapsed {} ago", span(now - l.expires_at))
        } else {
            format!("lapses in {}", span(l.expires_at - now))
        };
        println!(
            "lease      {}: held by {} for {}, renewed {} ago, {state}",
            l.name,
            l.holder,
            span(now - l.acquired_at),
            span(now - l.renewed_at)
        );
    }
    let counts = cloud.store.read(kiln_store::workflows::counts)?;
    if counts.is_empty() {
        println!("workflows  none");
    }
    for (kind, status, n) in counts {
        println!("workflows  {kind} {status}: {n}");
    }
    Ok(())
}

pub(crate) fn migrate(from: &str, to: &str) -> Result<()> {
    let (Location::Sqlite(db), to_at @ Location::Postgres(_)) = (Location::parse(from), Location::parse(to)) else {
        bail!("kiln db migrate copies a SQLite cloud into PostgreSQL: --from sqlite:DATA_DIR --to postgres://…");
    };
    if !db.exists() {
        bail!("{} does not exist: give --from sqlite:DATA_DIR of an existing cloud", db.display());
    }
    let dir = db.parent().context("the SQLite file has no directory")?.to_path_buf();
    if crate::host::serving(&dir) {
        bail!("a kiln serve is running on {}: stop it first (its instances keep running)", dir.display());
    }
    let source = Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let target = Store::open_at(&to_at).with_context(|| format!("opening {}", to_at.redacted()))?;
    println!("Copying {} into {}", db.display(), to_at.redacted());
    let copied = kiln_store::transfer::copy_all(&source, &target, &|c| {
        if c.source > 0 {
            println!("  {:<28} {:>7} rows", c.table, c.target);
        }
    })?;
    let rows: i64 = copied.iter().map(|c| c.target).sum();
    println!("Copied {} tables, {rows} rows; every count matches.", copied.len());
    record_database(&dir, to)?;
    println!(
        "{} now uses the PostgreSQL database: start kiln serve --data-dir {} as before (it adopts the running instances). \
         {} is kept, unused.",
        dir.display(),
        dir.display(),
        db.display()
    );
    Ok(())
}
