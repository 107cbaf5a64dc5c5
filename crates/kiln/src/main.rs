//! The `kiln` binary: `kiln serve` runs the cloud; `kiln account` manages accounts in a
//! data directory; `kiln image` builds images; `kiln bench` measures.

mod bench;
mod credentials;
mod data_dir;
mod quickstart;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kiln_control::Cloud;
use kiln_store::Store;
use kiln_types::region::{is_valid_region_name, RegionConfig, DEFAULT_REGIONS};

#[derive(Parser)]
#[command(name = "kiln", version, about = "An EC2-compatible private cloud that runs real virtual machines")]
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
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_REGIONS.map(String::from))]
        regions: Vec<String>,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        max_body: usize,
        /// Do not build or register the Quick Start images.
        #[arg(long)]
        no_quickstart: bool,
        /// Where downloaded Debian packages are kept [default: DATA_DIR/cache].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Manage accounts (local administration of a data directory).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Build machine images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Measure the API against a baseline server.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build an image from a recipe (a built-in name such as kiln-tiny-x86_64, or a
    /// .toml file) and register it as an AMI.
    Build {
        recipe: String,
        /// The account that will own the image.
        #[arg(long, default_value = OPERATOR)]
        account: String,
        /// Regions to register it in, comma-separated [default: every region].
        #[arg(long, value_delimiter = ',')]
        region: Vec<String>,
        /// Make the image public.
        #[arg(long)]
        public: bool,
        /// Where downloaded Debian packages are kept [default: DATA_DIR/cache].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
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

fn default_regions() -> Vec<String> {
    DEFAULT_REGIONS.map(String::from).to_vec()
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { listen, dir, regions, max_body, no_quickstart, cache_dir } => {
            let dir = dir.resolve()?;
            let cache = cache_dir.unwrap_or_else(|| dir.join("cache"));
            serve(listen, dir, &regions, max_body, (!no_quickstart).then_some(cache))
        }
        Command::Account { command: AccountCommand::Create { name, dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            let new = cloud.create_account(&name, false)?;
            credentials::add_profile(&dir, &name, &new.key.access_key_id, &new.key.secret)?;
            println!("account    {}", new.account.id);
            println!("name       {}", new.account.name);
            println!("access key {}", new.key.access_key_id);
            println!("profile    {name} in {}", dir.join("credentials").display());
            Ok(())
        }
        Command::Account { command: AccountCommand::List { dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            println!("{:<14} {:<20} {:<9} CREATED", "ACCOUNT", "NAME", "ROLE");
            for a in cloud.accounts()? {
                let role = if a.is_provider { "provider" } else { "user" };
                println!("{:<14} {:<20} {:<9} {}", a.id, a.name, role, a.created_at);
            }
            Ok(())
        }
        Command::Image { command: ImageCommand::Build { recipe, account, region, public, cache_dir, dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            let recipe = kiln_builder::Recipe::load(&recipe)?;
            let owner = cloud
                .account_by_name(&account)?
                .with_context(|| format!("no account named '{account}' (see `kiln account list`)"))?;
            let regions = if region.is_empty() { default_regions() } else { region };
            let cache = cache_dir.unwrap_or_else(|| dir.join("cache"));
            let made = quickstart::build_and_register(&cloud, &recipe, &owner.id, &regions, public, &cache)?;
            if made.is_empty() {
                println!("{} is already registered for {account} in {}", recipe.id, regions.join(", "));
            }
            for (region, image) in made {
                println!("{region}\t{image}");
            }
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
    let store =
        Store::open(&dir.join("kiln.db")).with_context(|| format!("opening the database in {}", dir.display()))?;
    data_dir::restrict(&dir.join("kiln.db"))?;
    Ok(Cloud::new(store, region_configs(regions)?, dir.to_path_buf()))
}

/// The account made on first start, whose key is the `[default]` profile.
const OPERATOR: &str = "operator";

fn serve(
    listen: SocketAddr,
    dir: PathBuf,
    regions: &[String],
    max_body: usize,
    quickstart_cache: Option<PathBuf>,
) -> Result<()> {
    let cloud = open(&dir, regions)?;
    let first_start = cloud.account_by_name(OPERATOR)?.is_none();
    if first_start {
        let new = cloud.create_account(OPERATOR, false)?;
        credentials::add_profile(&dir, "default", &new.key.access_key_id, &new.key.secret)?;
        println!("Created the operator account {} and its access key.", new.account.id);
    }
    cloud.ensure_defaults()?;
    credentials::write_config(&dir, &regions[0])?;
    let cloud = Arc::new(cloud);
    if let Some(cache) = quickstart_cache {
        // The API answers at once; the images appear as they are built.
        let cloud = cloud.clone();
        std::thread::spawn(move || quickstart::ensure(&cloud, &cache));
    }

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
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
        tracing::info!(%addr, "listening");
        kiln_server::serve(
            listener,
            cloud,
            kiln_server::ApiConfig { max_body, ..Default::default() },
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
