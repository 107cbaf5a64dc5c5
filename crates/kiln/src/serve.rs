//! `kiln serve`: opens the data directory's store as a control plane, makes the
//! operator account on first start, runs the start-up sweeps, then the reconciler,
//! the import worker, the Quick Start builder, the guests' services and the API until
//! SIGTERM; and `kiln images import` of a local file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use kiln_control::Cloud;
use kiln_store::{Location, Store};
use kiln_types::region::RegionConfig;

use crate::args::HostArgs;
use crate::{credentials, data_dir, quickstart};

/// The account made on first start, whose key is the `[default]` profile.
pub(crate) use kiln_control::accounts::OPERATOR;

/// Every public EC2 region: what a Kiln serves unless `--regions` narrows it.
pub(crate) fn default_regions() -> Vec<String> {
    RegionConfig::catalog().into_iter().map(|r| r.name).collect()
}

/// The regions named, or every public one when none are.
pub(crate) fn region_configs(names: &[String]) -> Result<Vec<RegionConfig>> {
    if names.is_empty() {
        return Ok(RegionConfig::catalog());
    }
    names
        .iter()
        .map(|n| RegionConfig::named(n).with_context(|| format!("'{n}' is not a region name like us-east-1")))
        .collect()
}

/// The file in which a server started with `--database` records it, so that every
/// `kiln` command given the same data directory reaches the same store.
const DATABASE_FILE: &str = "database";

/// Where the data directory's cloud keeps its state: `$KILN_DATABASE_URL`, else the
/// database a server recorded in DATA_DIR/database, else SQLite in DATA_DIR/kiln.db.
pub(crate) fn location(dir: &std::path::Path) -> Result<Location> {
    if let Some(url) = std::env::var("KILN_DATABASE_URL").ok().filter(|u| !u.trim().is_empty()) {
        return Ok(Location::parse(url.trim()));
    }
    match std::fs::read_to_string(dir.join(DATABASE_FILE)) {
        Ok(url) if !url.trim().is_empty() => Ok(Location::parse(url.trim())),
        Ok(_) => Ok(Location::Sqlite(dir.join("kiln.db"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Location::Sqlite(dir.join("kiln.db"))),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.join(DATABASE_FILE).display())),
    }
}

/// Records `url` as the data directory's database (owner-only: it may hold a password).
pub(crate) fn record_database(dir: &std::path::Path, url: &str) -> Result<()> {
    data_dir::prepare(dir)?;
    let path = dir.join(DATABASE_FILE);
    std::fs::write(&path, format!("{url}\n")).with_context(|| format!("writing {}", path.display()))?;
    data_dir::restrict(&path)
}

/// Opens the data directory's store as a control plane.
pub(crate) fn open(dir: &std::path::Path, regions: &[String]) -> Result<Cloud> {
    data_dir::prepare(dir)?;
    let at = location(dir)?;
    let store = Store::open_at(&at).with_context(|| format!("opening the database {}", at.redacted()))?;
    if let Location::Sqlite(path) = &at {
        data_dir::restrict(path)?;
    }
    Ok(Cloud::new(store, region_configs(regions)?, dir.to_path_buf()))
}

/// Where a server listens: the EC2 API, and the hosts' agents' endpoint with the names
/// its certificate carries, if it serves one.
pub(crate) struct Listen {
    pub(crate) api: SocketAddr,
    pub(crate) agents: Option<(SocketAddr, Vec<String>)>,
}

pub(crate) fn serve(
    listen: Listen,
    dir: PathBuf,
    regions: &[String],
    max_body: usize,
    quickstart: Option<(PathBuf, Vec<String>)>,
    host: &HostArgs,
    import_dirs: Vec<PathBuf>,
) -> Result<()> {
    let Listen { api: listen, agents } = listen;
    // The address joined hosts reach this server at is its own host's on the network
    // between hosts, where its VPCs meet theirs.
    let underlay = agents.as_ref().and_then(|(addr, _)| match addr.ip() {
        std::net::IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() => Some(a),
        _ => None,
    });
    let agent = host.agent(&dir, underlay);
    let shared = location(&dir)?.is_shared();
    let _pool = if agent.has_vpc_networking() {
        Some(crate::host::claim_pool(&dir, host.public_ip_pool, shared)?)
    } else {
        None
    };
    let probe_agent = agent.clone();
    let mut cloud = open(&dir, regions)?
        .with_agent(agent.clone(), host.limits())
        .with_guest_ports(agent)
        .with_host_dialer(crate::remote_host::dialer());
    cloud.import_dirs = import_dirs;
    cloud.public_pool = host.public_ip_pool;
    std::fs::create_dir_all(dir.join("imports")).context("creating DATA_DIR/imports")?;
    let first_start = cloud.account_by_name(OPERATOR)?.is_none();
    if first_start {
        let new = cloud.create_account(OPERATOR, false)?;
        credentials::add_profile(&dir, "default", &new.key.access_key_id, &new.key.secret)?;
        println!("Created the operator account {} and its access key.", new.account.id);
        println!("Set its console password with: kiln account password {OPERATOR} --data-dir {}", dir.display());
    }
    cloud.ensure_defaults()?;
    credentials::write_config(&dir, &cloud.regions[0].name)?;
    // Probed once, here, rather than by the first RunInstances.
    tracing::info!(qemu = %cloud.agent()?.info()?.qemu_version, "host");
    let cloud = Arc::new(cloud);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lead = Arc::new(crate::lead::Lead::new(listen));
    // Settled before anything starts: a lone server cleans up after its predecessor here,
    // as before, and leads from its first pass.
    lead.renew(&cloud);
    if lead.unsettled() {
        take_over(&cloud, &dir)?;
        lead.settle();
    }
    crate::host::probe_ahead(probe_agent, dir.clone(), stop.clone());
    let keeper = {
        let (cloud, stop, lead, dir) = (cloud.clone(), stop.clone(), lead.clone(), dir.clone());
        let mut quickstart = quickstart;
        std::thread::spawn(move || {
            let mut builder = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if lead.unsettled() {
                    // The lease is ours now: finish what a previous holder left before
                    // the host's work starts here.
                    if let Err(e) = take_over(&cloud, &dir) {
                        tracing::warn!(error = %e, "cleaning up after the previous holder failed");
                    }
                    lead.settle();
                }
                // The API answers at once; the images appear as they are built, by the
                // first server here to do the host's work.
                if let Some((cache, only)) = quickstart.take_if(|_| lead.leads()) {
                    let (cloud, stop) = (cloud.clone(), stop.clone());
                    builder = Some(std::thread::spawn(move || quickstart::ensure(&cloud, &cache, &only, &stop)));
                }
                lead.sleep_renewing(&cloud, &stop);
            }
            lead.release(&cloud);
            builder
        })
    };
    let reconciler = {
        let (cloud, stop, lead) = (cloud.clone(), stop.clone(), lead.clone());
        std::thread::spawn(move || {
            let r = kiln_control::reconcile::Reconciler::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if lead.leads() {
                    let started = std::time::Instant::now();
                    if let Err(e) = cloud.reconcile(&r) {
                        tracing::warn!(error = %e, "reconcile pass failed");
                    }
                    kiln_control::metrics::reconcile_pass(started.elapsed());
                }
                cloud.nudge.wait(std::time::Duration::from_millis(500));
            }
        })
    };
    let importer = {
        let (cloud, stop, lead) = (cloud.clone(), stop.clone(), lead.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if lead.leads() {
                    if let Err(e) = cloud.process_imports() {
                        tracing::warn!(error = %e, "import pass failed");
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        })
    };

    let agents = match agents {
        Some((addr, mut names)) => {
            names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
            if !addr.ip().is_unspecified() {
                names.push(addr.ip().to_string());
            }
            let acceptor = kiln_server::agents::tls_acceptor(&cloud, &names)?;
            // Joined hosts' volumes are served from the store at the address hosts
            // reach this server at.
            if !addr.ip().is_unspecified() {
                cloud.serve_volumes_on(addr.ip());
            }
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding the agents' endpoint {addr}: try another --agent-listen"))?;
            listener.set_nonblocking(true)?;
            Some((listener, acceptor))
        }
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let agents = match agents {
            Some((listener, acceptor)) => {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                println!("Hosts' agents join at https://{} (kiln host join-token --zone ZONE)", listener.local_addr()?);
                Some(tokio::spawn(kiln_server::agents::serve(listener, acceptor, cloud.clone())))
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}: is another kiln running? try --listen 127.0.0.1:PORT"))?;
        let addr = listener.local_addr()?;
        println!("Kiln is serving the EC2 API on http://{addr} (data in {})", dir.display());
        println!("Use it with:");
        println!(
            "  export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_CONFIG_FILE={config}",
            creds = dir.join("credentials").display(),
            config = dir.join("config").display()
        );
        println!("  aws --endpoint-url http://{addr} ec2 describe-regions");
        println!("The console: http://{addr}/console/ (kiln account password NAME sets a password)");
        tracing::info!(%addr, "listening");
        let (guests_stop, guests_rx) = tokio::sync::watch::channel(false);
        let guests = tokio::spawn(crate::lead::guest_services(cloud.clone(), lead.clone(), guests_rx));
        let config = kiln_server::ApiConfig { max_body, ..Default::default() };
        kiln_server::serve(listener, cloud, config, shutdown_signal()).await?;
        let _ = guests_stop.send(true);
        let _ = guests.await;
        if let Some(a) = agents {
            a.abort();
        }
        Ok::<_, anyhow::Error>(())
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reconciler.join();
    let _ = importer.join();
    if let Ok(Some(b)) = keeper.join() {
        if !b.is_finished() {
            println!("Waiting for the image build in progress to finish...");
        }
        let _ = b.join();
    }
    println!("Kiln stopped (instances keep running and are adopted at the next start).");
    Ok(())
}

/// What the server that takes the host's work does first: clears what a previous
/// holder (this data directory's last server, or a server that died) left half done.
fn take_over(cloud: &Cloud, dir: &std::path::Path) -> Result<()> {
    cloud.remove_stray_volumes()?;
    cloud.collect_layers()?;
    cloud.purge_finished_workflows()?;
    for action in kiln_builder::clean_interrupted(&dir.join("builds")) {
        tracing::warn!(%action, "cleaning up an interrupted image build");
    }
    cloud.fail_interrupted_builds()?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// `kiln image import`: places the file in DATA_DIR/imports (a hard link, else a
/// copy) and runs the same import the API runs, showing its progress.
pub(crate) fn import_file(
    dir: &std::path::Path,
    file: &std::path::Path,
    account: &str,
    region: &str,
    arch: &str,
) -> Result<()> {
    let cloud = open(dir, &default_regions())?;
    let owner = cloud
        .account_by_name(account)?
        .with_context(|| format!("no account named '{account}' (see `kiln account list`)"))?;
    let architecture =
        arch.parse().map_err(|_| anyhow::anyhow!("unknown architecture '{arch}' (x86_64, i386, arm64)"))?;
    let imports = dir.join("imports");
    std::fs::create_dir_all(&imports)?;
    let name = file.file_name().context("the file has no name")?;
    let placed = imports.join(format!("{}-{}", std::process::id(), name.to_string_lossy()));
    if std::fs::hard_link(file, &placed).is_err() {
        eprintln!("copying {} into {}...", file.display(), imports.display());
        std::fs::copy(file, &placed).with_context(|| format!("copying {}", file.display()))?;
    }
    let scope = kiln_control::Scope { account: owner.id, region: region.to_owned() };
    let request = kiln_control::imports::ImportRequest {
        image: true,
        url: format!("file://{}", placed.display()),
        format: None,
        description: format!("Imported from {}", file.display()),
        architecture: Some(architecture),
    };
    let task = cloud.start_import(&scope, request);
    let result = task.and_then(|t| {
        eprintln!("import task {}: converting...", t.id);
        cloud.process_imports()?;
        cloud.import_tasks(&scope, true, std::slice::from_ref(&t.id))
    });
    let _ = std::fs::remove_file(&placed);
    let task = result?.pop().context("the import task vanished")?;
    match task.image_id {
        Some(image) if task.status == "completed" => {
            println!("{region}\t{image}");
            Ok(())
        }
        _ => bail!("import failed: {}", task.status_message),
    }
}
