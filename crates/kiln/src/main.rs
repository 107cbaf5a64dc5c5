//! The `kiln` binary: `kiln serve` runs the cloud; `kiln account` manages accounts in a
//! data directory; `kiln bench` measures the API.

mod bench;
mod credentials;
mod data_dir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kiln_control::Cloud;
use kiln_store::Store;
use kiln_types::region::{is_valid_region_name, RegionConfig};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "An EC2-compatible private cloud that runs real virtual machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cloud: the EC2 API on --listen, state in --data-dir.
    Serve {
        /// Address and port for the EC2 API.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[command(flatten)]
        dir: DataDirArg,
        /// Regions to serve, comma-separated (each gets zones a, b and c).
        #[arg(long, value_delimiter = ',', default_values_t = kiln_types::region::DEFAULT_REGIONS.map(String::from))]
        regions: Vec<String>,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        max_body: usize,
    },
    /// Manage accounts (local administration of a data directory).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Build and manage machine images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Measure the API against a baseline server.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build an image from a recipe: a built-in name (kiln-tiny-x86_64, ...) or a .toml file.
    Build {
        recipe: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account and add a profile NAME to DATA_DIR/credentials.
    Create {
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(clap::Args)]
struct DataDirArg {
    /// Where Kiln keeps its state [default: $KILN_HOME, else /var/lib/kiln as root, else ~/.local/share/kiln].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataDirArg {
    fn resolve(&self) -> Result<PathBuf> {
        data_dir::resolve(self.data_dir.clone())
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("kiln: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            dir,
            regions,
            max_body,
        } => serve(listen, dir.resolve()?, &regions, max_body),
        Command::Account {
            command: AccountCommand::Create { name, dir },
        } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &kiln_types::region::DEFAULT_REGIONS.map(String::from))?;
            let new = cloud.create_account(&name, false)?;
            credentials::add_profile(&dir, &name, &new.key.access_key_id, &new.key.secret)?;
            println!("account   {}", new.account.id);
            println!("name      {}", new.account.name);
            println!("access key {}", new.key.access_key_id);
            println!("profile   {name} in {}", dir.join("credentials").display());
            Ok(())
        }
        Command::Account {
            command: AccountCommand::List { dir },
        } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &kiln_types::region::DEFAULT_REGIONS.map(String::from))?;
            println!("{:<14} {:<20} {:<9} CREATED", "ACCOUNT", "NAME", "ROLE");
            for a in cloud.accounts()? {
                let role = if a.is_provider { "provider" } else { "user" };
                println!("{:<14} {:<20} {:<9} {}", a.id, a.name, role, a.created_at);
            }
            Ok(())
        }
        Command::Image {
            command: ImageCommand::Build { recipe, dir },
        } => {
            let dir = dir.resolve()?;
            data_dir::prepare(&dir)?;
            let recipe = kiln_builder::Recipe::load(&recipe)?;
            let progress = kiln_builder::StderrProgress {
                label: recipe.id.clone(),
            };
            let built =
                kiln_builder::build(&recipe, &dir.join("builds"), &dir.join("cache"), &progress)?;
            println!("{}", built.root_disk.display());
            Ok(())
        }
        Command::Bench(args) => bench::run(args),
    }
}

fn region_configs(names: &[String]) -> Result<Vec<RegionConfig>> {
    if names.is_empty() {
        bail!("--regions needs at least one region");
    }
    names
        .iter()
        .map(|n| {
            if is_valid_region_name(n) {
                Ok(RegionConfig::with_three_zones(n))
            } else {
                bail!("'{n}' is not a region name like us-east-1")
            }
        })
        .collect()
}

/// Opens the data directory's store as a control plane.
fn open(dir: &std::path::Path, regions: &[String]) -> Result<Cloud> {
    data_dir::prepare(dir)?;
    let store = Store::open(&dir.join("kiln.db"))
        .with_context(|| format!("opening the database in {}", dir.display()))?;
    data_dir::restrict(&dir.join("kiln.db"))?;
    Ok(Cloud::new(store, region_configs(regions)?))
}

/// The account made on first start, whose key is the `[default]` profile.
const OPERATOR: &str = "operator";

fn serve(listen: SocketAddr, dir: PathBuf, regions: &[String], max_body: usize) -> Result<()> {
    let cloud = open(&dir, regions)?;
    let first_start = cloud.account_by_name(OPERATOR)?.is_none();
    if first_start {
        let new = cloud.create_account(OPERATOR, false)?;
        credentials::add_profile(&dir, "default", &new.key.access_key_id, &new.key.secret)?;
        println!(
            "Created the operator account {} and its access key.",
            new.account.id
        );
    }
    cloud.ensure_defaults()?;
    credentials::write_config(&dir, &regions[0])?;
    let cloud = Arc::new(cloud);

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("binding {listen}: is another kiln running? try --listen 127.0.0.1:PORT")
            })?;
        let addr = listener.local_addr()?;
        println!(
            "Kiln is serving the EC2 API on http://{addr} (data in {})",
            dir.display()
        );
        println!("Use it with:");
        println!(
            "  export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_CONFIG_FILE={config}",
            creds = dir.join("credentials").display(),
            config = dir.join("config").display()
        );
        println!("  aws --endpoint-url http://{addr} ec2 describe-regions");
        tracing::info!(%addr, "listening");
        kiln_server::serve(
            listener,
            cloud,
            kiln_server::ApiConfig {
                max_body,
                ..Default::default()
            },
            shutdown_signal(),
        )
        .await?;
        println!("Kiln stopped.");
        Ok(())
    })
}

async fn shutdown_signal() {
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
