//! The `kiln` binary: `kiln serve` runs the cloud; `kiln account` manages accounts in a
//! data directory; `kiln image` builds images (the
//! benchmarks are the dev-only `kiln-bench`).

mod agent;
mod args;
mod cli;
mod client;
mod credentials;
mod data_dir;
mod db_cli;
mod fleet_cli;
mod host;
mod host_guests;
mod keys;
mod lead;
mod network_cli;
mod pipe;
mod quickstart;
mod remote_host;
mod serve;
mod ssh;
mod volumes_cli;

use anyhow::{bail, Context, Result};
use clap::Parser;

use args::{
    AccountCommand, Cli, Command, DbCommand, EipCommand, HostCommand, ImageCommand, KeysCommand, MarketplaceCommand,
    SgCommand, SnapshotsCommand, VolumesCommand, VpcCommand,
};
use host::host_info;
use kiln_types::region::FIRST_REGION;
use pipe::pipe;
use serve::{default_regions, import_file, open, serve};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One TLS crypto provider for the process (ring): reqwest's clients and the agents'
    // endpoint use it. Installing fails only if one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = run(Cli::parse_from(args::with_globals_last(std::env::args_os().collect()))) {
        eprintln!("kiln: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            dir,
            database,
            regions,
            max_body,
            no_quickstart,
            quickstart,
            cache_dir,
            host,
            import_dir,
            agent_listen,
            agent_name,
        } => {
            let dir = dir.resolve()?;
            if let Some(url) = &database {
                serve::record_database(&dir, url)?;
            }
            let cache = cache_dir.unwrap_or_else(|| dir.join("cache"));
            for q in &quickstart {
                if !kiln_builder::Recipe::builtin_ids().contains(q) {
                    bail!(
                        "--quickstart {q}: no such recipe (built-in: {})",
                        kiln_builder::Recipe::builtin_ids().join(", ")
                    );
                }
            }
            let listen = serve::Listen { api: listen, agents: agent_listen.map(|a| (a, agent_name)) };
            serve(listen, dir, &regions, max_body, (!no_quickstart).then_some((cache, quickstart)), &host, import_dir)
        }
        Command::Pipe { socket } => pipe(&socket),
        Command::Host { command: HostCommand::Info { host, dir } } => host_info(&dir.resolve()?, &host),
        Command::Host { command } => fleet_cli::fleet(command),
        Command::Agent { control, token, renew, accel, listen, network, no_egress_nat, layer_cache_gib, dir } => {
            let guests = agent::Guests {
                accel: &accel,
                network: &network,
                egress_nat: !no_egress_nat,
                layer_room: layer_cache_gib.saturating_mul(1 << 30),
            };
            agent::run(&dir.resolve()?, &control, token.as_deref(), renew, &guests, listen)
        }
        Command::Db { command: DbCommand::Status { dir } } => db_cli::status(&dir.resolve()?),
        Command::Db { command: DbCommand::Migrate { from, to } } => db_cli::migrate(&from, &to),
        Command::Account { command: AccountCommand::Create { name, dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            let new = cloud.create_account(&name, false)?;
            credentials::add_profile(&dir, &name, &new.key.access_key_id, &new.key.secret)?;
            credentials::add_config_profile(&dir, &name, FIRST_REGION)?;
            println!("account    {}", new.account.id);
            println!("name       {}", new.account.name);
            println!("access key {}", new.key.access_key_id);
            println!("profile    {name} in {}", dir.join("credentials").display());
            Ok(())
        }
        Command::Account { command: AccountCommand::Password { name, dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            let password = read_password()?;
            cloud.set_console_password(&name, &password)?;
            println!("Console password set for {name}: sign in at /console/ on the API's address.");
            Ok(())
        }
        Command::Account { command: AccountCommand::List { dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            println!("{:<14} {:<20} {:<9} CREATED", "ACCOUNT", "NAME", "ROLE");
            for a in cloud.accounts()? {
                let role = if a.is_provider {
                    "provider"
                } else if a.is_vendor {
                    "vendor"
                } else {
                    "user"
                };
                println!("{:<14} {:<20} {:<9} {}", a.id, a.name, role, a.created_at);
            }
            Ok(())
        }
        Command::Images {
            g: _,
            command: Some(ImageCommand::Build { recipe, account, region, public, cache_dir, dir }),
        } => {
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
        Command::Images { command: None, g } => cli::images(&g, None),
        Command::Images { g: _, command: Some(ImageCommand::List { category, g }) } => {
            cli::images(&g, category.as_deref())
        }
        Command::Images { g: _, command: Some(ImageCommand::Share { image, account, g }) } => {
            cli::share(&g, &image, &account, false)
        }
        Command::Images { g: _, command: Some(ImageCommand::Unshare { image, account, g }) } => {
            cli::share(&g, &image, &account, true)
        }
        Command::Images { g: _, command: Some(ImageCommand::Deregister { image, g }) } => cli::deregister(&g, &image),
        Command::Images { g: _, command: Some(ImageCommand::Import { file, account, region, architecture, dir }) } => {
            import_file(&dir.resolve()?, &file, &account, &region, &architecture)
        }
        Command::Marketplace { command: MarketplaceCommand::Publish { image_id, product_code, region, dir } } => {
            let cloud = open(&dir.resolve()?, &default_regions())?;
            let image = cloud.publish_marketplace(&region, &image_id, &product_code)?;
            println!("{} is listed in the Marketplace with product code(s) {}", image.id, image.product_codes);
            Ok(())
        }
        Command::Ssh { instance, identity, user, client, command } => {
            ssh::ssh(&client, &instance, identity, user, &command)
        }
        Command::Keys { g: _, command: Some(KeysCommand::Create { name, key_type, client }) } => {
            keys::create_key(&client, &name, &key_type)
        }
        Command::Keys { command: None, g } => cli::keys(&g),
        Command::Keys { g: _, command: Some(KeysCommand::List { g }) } => cli::keys(&g),
        Command::Keys { g: _, command: Some(KeysCommand::Rm { name, g }) } => cli::delete_key(&g, &name),
        Command::Run { run, g } => cli::run(&g, &run),
        Command::Ls { all, g } => cli::ls(&g, all),
        Command::Show { instance, field, g } => cli::show_instance(&g, &instance, field.as_deref()),
        Command::Stop { instances, force, g } => cli::lifecycle(&g, "StopInstances", &instances, force),
        Command::Start { instances, g } => cli::lifecycle(&g, "StartInstances", &instances, false),
        Command::Reboot { instances, g } => cli::lifecycle(&g, "RebootInstances", &instances, false),
        Command::Rm { instances, g } => cli::lifecycle(&g, "TerminateInstances", &instances, false),
        Command::Console { instance, follow, g } => cli::console(&g, &instance, follow),
        Command::Sg { command: None, g } => cli::groups(&g),
        Command::Sg { g: _, command: Some(SgCommand::List { g }) } => cli::groups(&g),
        Command::Sg { g: _, command: Some(SgCommand::Create { name, description, vpc, g }) } => {
            cli::create_group(&g, &name, &description, vpc.as_deref())
        }
        Command::Sg { g: _, command: Some(SgCommand::Allow { rule, g }) } => cli::rule(&g, &rule, false),
        Command::Sg { g: _, command: Some(SgCommand::Revoke { rule, g }) } => cli::rule(&g, &rule, true),
        Command::Sg { g: _, command: Some(SgCommand::Rm { group, g }) } => cli::delete_group(&g, &group),
        Command::Vpc { command: None, g } | Command::Vpc { command: Some(VpcCommand::List { g }), .. } => {
            network_cli::vpcs(&g)
        }
        Command::Vpc { command: Some(VpcCommand::Create { cidr, name, g }), .. } => {
            network_cli::create_vpc(&g, &cidr, name.as_deref())
        }
        Command::Vpc { command: Some(VpcCommand::Rm { vpc, g }), .. } => network_cli::delete_vpc(&g, &vpc),
        Command::Eip { command: None, g } | Command::Eip { command: Some(EipCommand::List { g }), .. } => {
            network_cli::addresses(&g)
        }
        Command::Eip { command: Some(EipCommand::Allocate { instance, g }), .. } => {
            network_cli::allocate(&g, instance.as_deref())
        }
        Command::Eip { command: Some(EipCommand::Associate { address, instance, g }), .. } => {
            network_cli::associate(&g, &address, &instance)
        }
        Command::Eip { command: Some(EipCommand::Rm { address, g }), .. } => network_cli::release(&g, &address),
        Command::Volumes { command: None, g } | Command::Volumes { command: Some(VolumesCommand::List { g }), .. } => {
            volumes_cli::volumes(&g)
        }
        Command::Volumes {
            command: Some(VolumesCommand::Create { size, volume_type, zone, snapshot, name, g }),
            ..
        } => volumes_cli::create_volume(
            &g,
            &volumes_cli::NewVolume {
                size,
                volume_type: &volume_type,
                zone: zone.as_deref(),
                snapshot: snapshot.as_deref(),
                name: name.as_deref(),
            },
        ),
        Command::Volumes { command: Some(VolumesCommand::Attach { volume, instance, device, g }), .. } => {
            volumes_cli::attach(&g, &volume, &instance, device.as_deref())
        }
        Command::Volumes { command: Some(VolumesCommand::Detach { volume, force, g }), .. } => {
            volumes_cli::detach(&g, &volume, force)
        }
        Command::Volumes { command: Some(VolumesCommand::Grow { volume, size, g }), .. } => {
            volumes_cli::grow(&g, &volume, size)
        }
        Command::Volumes { command: Some(VolumesCommand::Rm { volume, g }), .. } => {
            volumes_cli::delete_volume(&g, &volume)
        }
        Command::Snapshots { command: None, g }
        | Command::Snapshots { command: Some(SnapshotsCommand::List { g }), .. } => volumes_cli::snapshots(&g),
        Command::Snapshots { command: Some(SnapshotsCommand::Create { volume, description, g }), .. } => {
            volumes_cli::create_snapshot(&g, &volume, description.as_deref())
        }
        Command::Snapshots { command: Some(SnapshotsCommand::Rm { snapshot, g }), .. } => {
            volumes_cli::delete_snapshot(&g, &snapshot)
        }
        Command::CreateImage { instance, name, description, no_reboot, no_wait, g } => {
            cli::create_image(&g, &instance, &name, description.as_deref(), no_reboot, !no_wait)
        }
        Command::Types { arch, g } => cli::types(&g, arch.as_deref()),
        Command::Regions { g } => cli::regions(&g),
        Command::Actions => {
            cli::emit(cli::actions_table().trim_end());
            Ok(())
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "kiln", &mut script);
            cli::emit(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
    }
}

/// A new password: asked twice without echo on a terminal, else the first line of
/// standard input (for scripts).
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New console password (8 to 128 characters): ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ; nothing was changed");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
