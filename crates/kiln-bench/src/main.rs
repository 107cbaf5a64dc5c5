//! `kiln-bench`: Kiln's benchmarks, a dev-only tool kept out of the shipped `kiln`
//! binary. Each starts its own `kiln serve` (the `kiln` binary beside this one, or
//! `KILN_BIN`) and prints medians and ratios against a baseline measured in the same run.
//!
//! - `api`: the API path under load. Starts a fresh `kiln serve` and a baseline EC2
//!   emulator (moto_server) side by side, fills both with the same resources, then
//!   times the same signed requests against each and prints requests per second,
//!   median and p99 latency, and the ratios.
//! - `volumes`: the cost of making a root volume from a small and a large image as a
//!   copy-on-write overlay (what Kiln does), beside a full copy of the same images.
//! - `instances`: RunInstances to running and to status ok, beside a bare QEMU boot.
//! - `create-image`: CreateImage of a running instance with a 1 GiB and a 20 GiB root
//!   volume (NoReboot and the default reboot): time and bytes written, beside a full
//!   copy of the same volume with `qemu-img convert`.
//! - `ebs`: CreateVolume from small and large snapshots, incremental CreateSnapshot,
//!   and AttachVolume until the guest sees the disk (`ebs.rs`).
//! - `load`: point and list lookups with 1,000 instances in the store, at 1, 8 and 64
//!   clients, beside an earlier kiln and moto_server, and again while a guest floods
//!   its DNS and metadata service (`load.rs`).

mod density;
mod ebs;
mod hosts;
mod load;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;

#[derive(clap::Parser)]
#[command(name = "kiln-bench", about = "Kiln's benchmarks: medians and ratios against a baseline from the same run")]
struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand)]
enum BenchWhat {
    /// DescribeSecurityGroups and DescribeKeyPairs with many entries, Kiln vs moto_server.
    Api {
        /// How many security groups and key pairs to create on each server.
        #[arg(long, default_value_t = 1000)]
        entries: usize,
        /// Timed requests per case and server.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Concurrent client threads.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The baseline server's command (moto's `moto_server`, from PyPI `moto[server]`).
        #[arg(long, default_value = "moto_server")]
        moto: String,
    },
    /// RunInstances to running and to status ok, beside a bare QEMU boot of the same
    /// image; and the API latency of RunInstances with MaxCount=20.
    Instances {
        /// Launches timed per case (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where downloaded Debian packages and built kernels are kept [default: the source tree's .kiln-test-cache].
        #[arg(long)]
        cache_dir: Option<std::path::PathBuf>,
        /// How many instances the batch launch asks for.
        #[arg(long, default_value_t = 20)]
        batch: usize,
    },
    /// CreateImage of running instances with small and large root volumes: time and
    /// bytes written, beside a full copy of the volume.
    CreateImage {
        /// Root volume sizes to measure, GiB.
        #[arg(long, value_delimiter = ',', default_values_t = [1u64, 20])]
        sizes: Vec<u64>,
        /// CreateImage calls timed per case (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where downloaded Debian packages and built kernels are kept [default: the source tree's .kiln-test-cache].
        #[arg(long)]
        cache_dir: Option<std::path::PathBuf>,
    },
    /// EBS volumes: CreateVolume from a 1 and a 50 GiB snapshot beside a full copy,
    /// CreateSnapshot after 10 and 500 MiB of writes (bytes stored), and AttachVolume
    /// until the guest sees the disk.
    Ebs {
        /// Timed repetitions per case (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where downloaded Debian packages and built kernels are kept [default: the source tree's .kiln-test-cache].
        #[arg(long)]
        cache_dir: Option<std::path::PathBuf>,
    },
    /// Memory per idle instance before and after Kiln's tuning, RunInstances to SSH and
    /// to status ok beside a bare boot, 20 at once, and (with --fill) how many fit.
    Density(density::DensityArgs),
    /// A launch on a joined host (first, fetching the image's layers, and cached)
    /// beside one on the control plane's own host.
    Hosts(hosts::HostsArgs),
    /// Lookups with many instances in the store, at several concurrencies, beside an
    /// earlier kiln and moto_server, and again under a guest's DNS and metadata flood.
    Load(load::LoadArgs),
    /// Root volume creation from a 1 GiB and a large image: overlay vs full copy.
    Volumes {
        /// Virtual size of the large image, GiB.
        #[arg(long, default_value_t = 50)]
        large_gib: u64,
        /// Data actually written into the large image, GiB.
        #[arg(long, default_value_t = 4)]
        large_data_gib: u64,
        /// Timed repetitions per case (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Scratch directory (needs room for twice the data) [default: the system temp dir].
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

const REGION: &str = "us-east-1";
/// A fixed ED25519 public key: both servers import it under many names.
const PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIPeRv2ECfF4Lys99Z25Cyvm8S5sbR+L5Ui7BVZtJo1V bench";

fn main() -> Result<()> {
    // reqwest is built with rustls for the kiln binary's agent; its clients need a
    // process-wide crypto provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = <BenchArgs as clap::Parser>::parse();
    match args.what {
        BenchWhat::Api { entries, requests, concurrency, moto } => api(entries, requests, concurrency.max(1), &moto),
        BenchWhat::Volumes { large_gib, large_data_gib, runs, dir } => {
            volumes(large_gib, large_data_gib, runs.max(1), dir)
        }
        BenchWhat::Instances { runs, cache_dir, batch } => instances(runs.max(1), cache_dir, batch.max(1)),
        BenchWhat::CreateImage { sizes, runs, cache_dir } => create_image(&sizes, runs.max(1), cache_dir),
        BenchWhat::Load(args) => load::run(args),
        BenchWhat::Ebs { runs, cache_dir } => ebs::run(runs.max(1), cache_dir),
        BenchWhat::Density(args) => density::run(args),
        BenchWhat::Hosts(args) => hosts::run(args),
    }
}

/// A child process that is killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    key: (String, String),
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(addr: SocketAddr, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before it answered on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not answer on {addr} within 60 s")
}

fn start_kiln(dir: &Path, extra: &[&str]) -> Result<Server> {
    start_kiln_from(&kiln_exe()?, dir, extra)
}

/// The `kiln` binary under test: `KILN_BIN`, or the one built beside this tool.
fn kiln_exe() -> Result<std::path::PathBuf> {
    let exe = match std::env::var_os("KILN_BIN") {
        Some(path) => path.into(),
        None => std::env::current_exe()?.with_file_name("kiln"),
    };
    if !exe.is_file() {
        bail!("no kiln binary at {}: build it (`cargo build --release -p kiln`) or set KILN_BIN", exe.display());
    }
    Ok(exe)
}

/// `kiln serve` of the binary `exe` on a free port with the data directory `dir`.
fn start_kiln_from(exe: &Path, dir: &Path, extra: &[&str]) -> Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut child = Command::new(exe)
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir)
        .args(extra)
        // KILN_BENCH_LOG (a RUST_LOG filter) shows the server's log, to see where time goes.
        .env("RUST_LOG", std::env::var("KILN_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting kiln serve")?;
    wait_for(addr, &mut child, "kiln serve")?;
    let creds = std::fs::read_to_string(dir.join("credentials"))?;
    let field = |name: &str| {
        creds
            .lines()
            .find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_owned()))
            .context("reading the bench server's credentials")
    };
    let key = (field("aws_access_key_id")?, field("aws_secret_access_key")?);
    Ok(Server { name: "kiln", child, addr, key })
}

fn start_moto(cmd: &str) -> Result<Server> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = Command::new(cmd)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("starting the baseline '{cmd}': install it with `pip install 'moto[server]'` or give --moto")
        })?;
    wait_for(addr, &mut child, "moto_server")?;
    Ok(Server {
        name: "moto",
        child,
        addr,
        key: ("AKIAIOSFODNN7EXAMPLE".into(), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
    })
}

/// Sends one signed EC2 request; returns the HTTP status and body.
fn call(client: &reqwest::blocking::Client, server: &Server, body: &str) -> Result<(u16, String)> {
    let host = server.addr.to_string();
    let headers =
        kiln_ec2::sigv4::sign_headers(&server.key.0, &server.key.1, REGION, &host, body.as_bytes(), chrono::Utc::now());
    let mut req = client.post(format!("http://{host}/")).body(body.to_owned());
    for (k, v) in headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = req.send()?;
    let status = resp.status().as_u16();
    Ok((status, resp.text()?))
}

fn fill(client: &reqwest::blocking::Client, server: &Server, entries: usize) -> Result<()> {
    let material = base64::engine::general_purpose::STANDARD.encode(PUBLIC_KEY);
    let encoded: String = form_urlencoded::byte_serialize(material.as_bytes()).collect();
    let started = Instant::now();
    for i in 0..entries {
        let sg = format!(
            "Action=CreateSecurityGroup&Version=2016-11-15&GroupName=bench-{i}&GroupDescription=bench+group+{i}"
        );
        let kp = format!("Action=ImportKeyPair&Version=2016-11-15&KeyName=bench-{i}&PublicKeyMaterial={encoded}");
        for body in [sg, kp] {
            let (status, text) = call(client, server, &body)?;
            if status != 200 {
                bail!(
                    "{} refused a set-up request ({status}): {}",
                    server.name,
                    text.chars().take(300).collect::<String>()
                );
            }
        }
        if (i + 1) % 100 == 0 {
            eprint!("\r  {}: {} of {entries} groups and key pairs created", server.name, i + 1);
            let _ = std::io::stderr().flush();
        }
    }
    eprintln!(
        "\r  {}: {entries} groups and key pairs created in {:.1} s          ",
        server.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes: usize,
}

fn measure(server: &Server, body: &str, requests: usize, concurrency: usize, expect: &str) -> Result<Figures> {
    let client = reqwest::blocking::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    // Warm up, and check the answer really holds the entries.
    let (status, text) = call(&client, server, body)?;
    if status != 200 || text.matches(expect).count() == 0 {
        bail!("{} answered {status} without '{expect}'", server.name);
    }
    let bytes = text.len();
    let per_thread = requests.div_ceil(concurrency);
    let started = Instant::now();
    let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let client = client.clone();
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(per_thread);
                    for _ in 0..per_thread {
                        let t = Instant::now();
                        let (status, _) = call(&client, server, body)?;
                        if status != 200 {
                            bail!("{} answered {status}", server.name);
                        }
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked"))))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut lat: Vec<Duration> = Vec::new();
    for r in results {
        lat.extend(r?);
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1].as_secs_f64() * 1000.0;
    Ok(Figures { rps: lat.len() as f64 / elapsed.as_secs_f64(), p50_ms: pct(0.50), p99_ms: pct(0.99), bytes })
}

fn api(entries: usize, requests: usize, concurrency: usize, moto: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    println!("kiln-bench api: {entries} security groups and {entries} key pairs per server, {requests} timed requests per case, {concurrency} client threads");
    let kiln = start_kiln(&dir, &["--no-quickstart"])?;
    let moto = start_moto(moto)?;
    let client = reqwest::blocking::Client::new();
    fill(&client, &kiln, entries)?;
    fill(&client, &moto, entries)?;

    let cases = [
        ("DescribeSecurityGroups", "Action=DescribeSecurityGroups&Version=2016-11-15", "bench-"),
        ("DescribeKeyPairs", "Action=DescribeKeyPairs&Version=2016-11-15", "bench-"),
    ];
    println!();
    println!("{:<24} {:<6} {:>9} {:>9} {:>9} {:>10}", "case", "server", "req/s", "p50 ms", "p99 ms", "body KiB");
    let mut ratios = Vec::new();
    for (name, body, expect) in cases {
        let k = measure(&kiln, body, requests, concurrency, expect)?;
        let m = measure(&moto, body, requests, concurrency, expect)?;
        for (server, f) in [("kiln", &k), ("moto", &m)] {
            println!(
                "{name:<24} {server:<6} {:>9.1} {:>9.2} {:>9.2} {:>10.0}",
                f.rps,
                f.p50_ms,
                f.p99_ms,
                f.bytes as f64 / 1024.0
            );
        }
        ratios.push((name, k.rps / m.rps, m.p50_ms / k.p50_ms, m.p99_ms / k.p99_ms));
    }
    println!();
    for (name, rps, p50, p99) in ratios {
        println!("{name}: kiln/moto throughput {rps:.1}x; moto/kiln median latency {p50:.1}x, p99 latency {p99:.1}x");
    }
    drop(kiln);
    drop(moto);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn qemu_img(args: &[&str]) -> Result<()> {
    let out = Command::new("qemu-img").args(args).output().context("running qemu-img (install qemu-utils)")?;
    if !out.status.success() {
        bail!("qemu-img {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Bytes a file really takes on disk.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Makes a qcow2 image of `size_gib` with `data_gib` of non-zero data written.
fn make_image(path: &Path, size_gib: u64, data_gib: u64) -> Result<()> {
    qemu_img(&["create", "-q", "-f", "qcow2", &path.to_string_lossy(), &format!("{size_gib}G")])?;
    // qemu-io takes requests up to 2 GiB: write the data a GiB at a time.
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for g in 0..data_gib {
        cmd.args(["-c", &format!("write -P 0x5a {g}G 1G")]);
    }
    let out = cmd.arg(path).output().context("running qemu-io (install qemu-utils)")?;
    if !out.status.success() {
        bail!("qemu-io: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn volumes(large_gib: u64, large_data_gib: u64, runs: usize, dir: Option<std::path::PathBuf>) -> Result<()> {
    let base = dir.unwrap_or_else(std::env::temp_dir).join(format!("kiln-bench-volumes-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let result = (|| -> Result<()> {
        println!("kiln-bench volumes: root volume from an image, copy-on-write overlay (Kiln) vs full copy; median of {runs} runs");
        let images = [("1 GiB image (1 GiB data)", 1, 1), ("large image", large_gib, large_data_gib)];
        println!();
        println!(
            "{:<34} {:>14} {:>14} {:>14} {:>16} {:>9}",
            "image", "overlay ms", "overlay bytes", "full copy ms", "full copy bytes", "speed-up"
        );
        for (label, size, data) in images {
            let label = if size == 1 { label.to_owned() } else { format!("{size} GiB image ({data} GiB data)") };
            let image = base.join(format!("image-{size}.qcow2"));
            eprint!("  preparing {label}...");
            make_image(&image, size, data)?;
            eprintln!(" done");
            let image_s = image.to_string_lossy().into_owned();
            let mut overlay_ms = Vec::new();
            let mut overlay_bytes = 0;
            for i in 0..runs {
                let ov = base.join(format!("overlay-{size}-{i}.qcow2"));
                let t = Instant::now();
                qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "qcow2",
                    "-b",
                    &image_s,
                    &ov.to_string_lossy(),
                    &format!("{size}G"),
                ])?;
                overlay_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                overlay_bytes = allocated(&ov);
                let _ = std::fs::remove_file(&ov);
            }
            let mut copy_ms = Vec::new();
            let mut copy_bytes = 0;
            for i in 0..runs.min(3) {
                let cp = base.join(format!("copy-{size}-{i}.qcow2"));
                let t = Instant::now();
                qemu_img(&["convert", "-q", "-f", "qcow2", "-O", "qcow2", &image_s, &cp.to_string_lossy()])?;
                copy_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                copy_bytes = allocated(&cp);
                let _ = std::fs::remove_file(&cp);
            }
            let (o, c) = (median(overlay_ms), median(copy_ms));
            println!("{label:<34} {o:>14.1} {overlay_bytes:>14} {c:>14.1} {copy_bytes:>16} {:>8.0}x", c / o);
            let _ = std::fs::remove_file(&image);
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&base);
    result
}

/// The text of the first `<tag>` in `xml`.
fn xml_first<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn all_ids(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(v) = xml_first(rest, "instanceId") {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
        let pos = rest.find("</instanceId>").map(|p| p + 13).unwrap_or(rest.len());
        rest = &rest[pos..];
    }
    out
}

fn ok(client: &reqwest::blocking::Client, server: &Server, body: &str) -> Result<String> {
    let (status, text) = call(client, server, body)?;
    if status != 200 {
        bail!("{} answered {status}: {}", server.name, text.chars().take(400).collect::<String>());
    }
    Ok(text)
}

/// Checks every 20 ms until `check` holds; returns the time since `t0`. Often enough
/// that the polling adds little to a 2 s boot, and the same for a launch and a bare boot.
fn until(t0: Instant, limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<Duration> {
    while t0.elapsed() < limit {
        if check()? {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {limit:?}")
}

fn instances(runs: usize, cache_dir: Option<std::path::PathBuf>, batch: usize) -> Result<()> {
    // Room for the batch: it measures the API, the guests are terminated at once.
    let (dir, kiln) =
        start_tiny_kiln("instances", cache_dir, "100.64.200.0/24", &["--cpu-overcommit", "64", "--vcpu-quota", "256"])?;
    let client = reqwest::blocking::Client::new();
    let result = (|| -> Result<()> {
        let ami = tiny_ami(&client, &kiln)?;
        println!("kiln-bench instances: kiln-tiny x86_64 ({ami}) on t3.micro; median of {runs} launches");
        let (mut to_running, mut to_ok, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let t0 = Instant::now();
            let xml = ok(
                &client,
                &kiln,
                &format!(
                    "Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t3.micro&MinCount=1&MaxCount=1"
                ),
            )?;
            let id = xml_first(&xml, "instanceId").context("RunInstances returned no instance")?.to_owned();
            let describe = format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={id}");
            to_running.push(
                until(t0, Duration::from_secs(300), || {
                    Ok(ok(&client, &kiln, &describe)?.contains("<name>running</name>"))
                })?
                .as_secs_f64(),
            );
            let status = format!("Action=DescribeInstanceStatus&Version=2016-11-15&InstanceId.1={id}");
            to_ok.push(
                until(t0, Duration::from_secs(300), || {
                    let x = ok(&client, &kiln, &status)?;
                    Ok(x.contains("<instanceStatus><status>ok</status>"))
                })?
                .as_secs_f64(),
            );
            let boot = boot_options(&dir, &id).context("reading the instance's QEMU options")?;
            ok(&client, &kiln, &format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={id}"))?;
            bare.push(bare_boot(&dir, &boot)?.as_secs_f64());
        }
        println!();
        println!("{:<44} {:>10}", "case", "median s");
        println!("{:<44} {:>10.2}", "RunInstances -> running", median(to_running.clone()));
        println!("{:<44} {:>10.2}", "RunInstances -> status ok (guest ready)", median(to_ok.clone()));
        println!("{:<44} {:>10.2}", "bare QEMU boot of the same image -> ready", median(bare.clone()));
        println!(
            "overhead of Kiln to status ok over a bare boot: {:.2} s ({:.2}x)",
            median(to_ok.clone()) - median(bare.clone()),
            median(to_ok) / median(bare)
        );

        let t0 = Instant::now();
        let xml = ok(&client, &kiln, &format!("Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t3.nano&MinCount={batch}&MaxCount={batch}"))?;
        let latency = t0.elapsed().as_secs_f64() * 1000.0;
        let ids = all_ids(&xml);
        println!(
            "RunInstances MaxCount={batch}: {} instances accepted in {latency:.1} ms ({:.2} ms per instance)",
            ids.len(),
            latency / ids.len().max(1) as f64
        );
        let mut body = String::from("Action=TerminateInstances&Version=2016-11-15");
        for (n, id) in ids.iter().enumerate() {
            body.push_str(&format!("&InstanceId.{}={id}", n + 1));
        }
        ok(&client, &kiln, &body)?;
        eprintln!("  waiting for the batch to terminate...");
        let mut describe = String::from("Action=DescribeInstances&Version=2016-11-15");
        for (n, id) in ids.iter().enumerate() {
            describe.push_str(&format!("&InstanceId.{}={id}", n + 1));
        }
        until(Instant::now(), Duration::from_secs(300), || {
            let x = ok(&client, &kiln, &describe)?;
            Ok(x.matches("<name>terminated</name>").count() >= ids.len())
        })?;
        settle_networks(&dir);
        Ok(())
    })();
    drop(kiln);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `cache_dir`, or the cache the integration tests keep in the source tree (git-ignored):
/// every bench server shares its packages and kiln-tiny's kernel, built once.
fn cache_or_shared(cache_dir: Option<std::path::PathBuf>) -> std::path::PathBuf {
    cache_dir.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.kiln-test-cache"))
}

/// A fresh `kiln serve` in a scratch directory that builds only kiln-tiny x86_64, with
/// a public pool of its own and nothing forwarded off the host.
fn start_tiny_kiln(
    name: &str,
    cache_dir: Option<std::path::PathBuf>,
    pool: &str,
    extra: &[&str],
) -> Result<(std::path::PathBuf, Server)> {
    let dir = std::env::temp_dir().join(format!("kiln-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = cache_or_shared(cache_dir);
    let cache_s = cache.to_string_lossy().into_owned();
    let mut args =
        vec!["--cache-dir", &cache_s, "--quickstart", "kiln-tiny-x86_64", "--public-ip-pool", pool, "--no-egress-nat"];
    args.extend_from_slice(extra);
    let kiln = start_kiln(&dir, &args)?;
    Ok((dir, kiln))
}

/// Waits for the Quick Start kiln-tiny x86_64 image; returns its id.
fn tiny_ami(client: &reqwest::blocking::Client, kiln: &Server) -> Result<String> {
    eprintln!("  waiting for the Quick Start image (built on first start)...");
    let mut ami = String::new();
    until(Instant::now(), Duration::from_secs(900), || {
        let xml = ok(client, kiln, "Action=DescribeImages&Version=2016-11-15&Owner.1=amazon&Filter.1.Name=architecture&Filter.1.Value.1=x86_64&Filter.2.Name=state&Filter.2.Value.1=available")?;
        if let Some(id) = xml_first(&xml, "imageId") {
            ami = id.to_owned();
            return Ok(true);
        }
        Ok(false)
    })?;
    Ok(ami)
}

/// Waits (up to 2 min) until the bench server has removed its VPC namespaces, which
/// it does one pass after the last instance is terminated, so that stopping it leaves
/// nothing on the host.
fn settle_networks(dir: &Path) {
    let tag = kiln_agent::net::net_tag(dir);
    let _ = until(Instant::now(), Duration::from_secs(120), || {
        Ok(!Path::new("/run/netns").read_dir().is_ok_and(|d| {
            d.filter_map(std::result::Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&format!("kiln-{tag}-")))
        }))
    });
}

/// Bytes the files under `dir` take on disk.
fn allocated_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(std::result::Result::ok).map(|e| allocated(&e.path())).sum())
        .unwrap_or(0)
}

fn create_image(sizes: &[u64], runs: usize, cache_dir: Option<std::path::PathBuf>) -> Result<()> {
    let (dir, kiln) = start_tiny_kiln("create-image", cache_dir, "100.64.201.0/24", &[])?;
    // CreateImage with a reboot answers once the guest is back: give it time.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let mut instances_made: Vec<String> = Vec::new();
    let mut images_made: Vec<String> = Vec::new();
    let result = (|| -> Result<()> {
        let ami = tiny_ami(&client, &kiln)?;
        println!("kiln-bench create-image: kiln-tiny x86_64 ({ami}) on t3.micro, running; median of {runs}");
        println!();
        println!("{:<34} {:>12} {:>14}", "case", "median s", "bytes written");
        let written = || allocated_under(&dir.join("volumes")) + allocated_under(&dir.join("snapshots"));
        for &size in sizes {
            let xml = ok(
                &client,
                &kiln,
                &format!(
                    "Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t3.micro&MinCount=1&MaxCount=1\
                 &BlockDeviceMapping.1.DeviceName=/dev/xvda&BlockDeviceMapping.1.Ebs.VolumeSize={size}"
                ),
            )?;
            let id = xml_first(&xml, "instanceId").context("RunInstances returned no instance")?.to_owned();
            instances_made.push(id.clone());
            let status = format!("Action=DescribeInstanceStatus&Version=2016-11-15&InstanceId.1={id}");
            until(Instant::now(), Duration::from_secs(300), || {
                Ok(ok(&client, &kiln, &status)?.contains("<instanceStatus><status>ok</status>"))
            })?;
            for (label, no_reboot) in [("NoReboot=true", true), ("default (reboot)", false)] {
                let (mut times, mut bytes) = (Vec::new(), Vec::new());
                for n in 0..runs {
                    let before = written();
                    let t0 = Instant::now();
                    let xml = ok(&client, &kiln, &format!(
                        "Action=CreateImage&Version=2016-11-15&InstanceId={id}&Name=bench-{size}-{no_reboot}-{n}&NoReboot={no_reboot}"
                    ))?;
                    let image = xml_first(&xml, "imageId").context("CreateImage returned no image")?.to_owned();
                    images_made.push(image.clone());
                    let describe = format!("Action=DescribeImages&Version=2016-11-15&ImageId.1={image}");
                    until(t0, Duration::from_secs(300), || {
                        Ok(ok(&client, &kiln, &describe)?.contains("<imageState>available</imageState>"))
                    })?;
                    times.push(t0.elapsed().as_secs_f64());
                    bytes.push(written().saturating_sub(before) as f64);
                    if !no_reboot {
                        until(Instant::now(), Duration::from_secs(300), || {
                            Ok(ok(&client, &kiln, &status)?.contains("<instanceStatus><status>ok</status>"))
                        })?;
                    }
                }
                println!(
                    "{:<34} {:>12.2} {:>14}",
                    format!("{size} GiB root, {label}"),
                    median(times),
                    format!("{:.0} KiB", median(bytes) / 1024.0)
                );
            }
            // The baseline: a full copy of the volume as it is now (sparse-aware).
            let vol = xml_first(
                &ok(&client, &kiln, &format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={id}"))?,
                "volumeId",
            )
            .context("no volume")?
            .to_owned();
            let current = std::fs::read_dir(dir.join("volumes"))?
                .filter_map(std::result::Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&vol))
                .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
                .context("no volume file")?
                .path();
            let copy = dir.join("copy.qcow2");
            let t0 = Instant::now();
            // -U: the VM holds the image; a copy of it as it is now costs the same.
            qemu_img(&["convert", "-U", "-O", "qcow2", &current.to_string_lossy(), &copy.to_string_lossy()])?;
            let took = t0.elapsed().as_secs_f64();
            println!(
                "{:<34} {:>12.2} {:>14}",
                format!("{size} GiB root, full copy"),
                took,
                format!("{:.0} KiB", allocated(&copy) as f64 / 1024.0)
            );
            let _ = std::fs::remove_file(&copy);
        }
        Ok(())
    })();
    let mut body = String::from("Action=TerminateInstances&Version=2016-11-15");
    for (n, id) in instances_made.iter().enumerate() {
        body.push_str(&format!("&InstanceId.{}={id}", n + 1));
    }
    if !instances_made.is_empty() {
        let _ = ok(&client, &kiln, &body);
        settle_networks(&dir);
    }
    drop(kiln);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Boots the built kiln-tiny x86_64 image with QEMU alone (same machine, memory,
/// accelerator options, kernel command line, drive options, RNG and balloon as the
/// instance, user-mode network, no Kiln) and times it to the guest's ready line.
fn bare_boot(dir: &Path, boot: &BootOptions) -> Result<Duration> {
    Ok(bare_boot_as(dir, "t3.micro", 1024, boot)?.ready)
}

/// How long a bare boot took until its SSH server listened (its console line), until
/// it answered with its banner through QEMU's forwarded port, and until its ready line.
struct BareBoot {
    ssh: Duration,
    reachable: Duration,
    ready: Duration,
}

/// The bare boots' metadata service: an HTTP 404 for every request (QEMU runs it with
/// the connection as its standard input and output).
const NO_METADATA: &str = r"printf 'HTTP/1.0 404 Not Found\r\n\r\n'";

/// What dropbear prints on the console once its listening socket is open (its own test
/// suite waits for the same line).
pub(crate) const DROPBEAR_LISTENING: &[u8] = b"Not backgrounding";

/// Whether an SSH server answers at `addr` with its banner within `connect` (and two
/// seconds more for the banner). Reading the banner is what makes a probe through
/// QEMU's user network mean something: QEMU accepts the connection before the guest
/// can, and closes it if the guest refuses.
pub(crate) fn ssh_banner(addr: SocketAddr, connect: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, connect) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    std::io::Read::read_exact(&mut s, &mut buf).is_ok() && &buf == b"SSH-"
}

/// When an SSH server first answers at `addr` with its banner, from `t0`. A probe
/// starts every 20 ms whether or not the ones before it have finished, so a probe
/// whose SYN or forwarded connection went nowhere (the guest's network not up yet)
/// delays nothing: the same prober times Kiln's instances and the bare boots.
pub(crate) fn ssh_reachable(t0: Instant, addr: SocketAddr, limit: Duration) -> Result<Duration> {
    use std::sync::{Arc, Mutex, PoisonError};
    let first: Arc<Mutex<Option<Duration>>> = Arc::default();
    while t0.elapsed() < limit {
        if let Some(at) = *first.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(at);
        }
        let first = Arc::clone(&first);
        std::thread::spawn(move || {
            if ssh_banner(addr, Duration::from_secs(1)) {
                let at = t0.elapsed();
                let mut f = first.lock().unwrap_or_else(PoisonError::into_inner);
                if f.is_none_or(|seen| at < seen) {
                    *f = Some(at);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no SSH banner from {addr} within {limit:?}")
}

/// Whether the console file at `path` shows `line`.
pub(crate) fn console_shows(path: &Path, line: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|b| b.windows(line.len()).any(|w| w == line))
}

/// What a bare boot copies from an instance's QEMU to boot the same way: the
/// accelerator option (with the image's translation cache) and the kernel command line.
pub(crate) struct BootOptions {
    accel: String,
    append: String,
}

/// The options instance `id`'s QEMU was started with.
fn boot_options(dir: &Path, id: &str) -> Option<BootOptions> {
    let pid = std::fs::read_to_string(dir.join("instances").join(id).join("qemu.pid")).ok()?;
    let argv = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok()?;
    let args: Vec<&[u8]> = argv.split(|b| *b == 0).collect();
    let after = |flag: &[u8]| {
        let at = args.iter().position(|a| *a == flag)?;
        Some(String::from_utf8_lossy(args.get(at + 1)?).into_owned())
    };
    Some(BootOptions { accel: after(b"-accel")?, append: after(b"-append")? })
}

fn bare_boot_as(dir: &Path, label: &str, memory_mib: u64, boot: &BootOptions) -> Result<BareBoot> {
    let build = std::fs::read_dir(dir.join("builds"))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p.join("recipe")).is_ok_and(|r| r.trim() == "kiln-tiny-x86_64"))
        .context("no kiln-tiny-x86_64 build")?;
    let scratch = dir.join("bare");
    std::fs::create_dir_all(&scratch)?;
    let overlay = scratch.join("root.qcow2");
    let serial = scratch.join("serial.log");
    let _ = std::fs::remove_file(&overlay);
    let _ = std::fs::remove_file(&serial);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        &build.join("root.qcow2").to_string_lossy(),
        &overlay.to_string_lossy(),
    ])?;
    // kiln-tiny's own kernel mounts its root volume without one.
    let initrd: Vec<std::ffi::OsString> = match build.join("initrd.img") {
        i if i.exists() => vec!["-initrd".into(), i.into()],
        _ => Vec::new(),
    };
    let forwarded = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let t0 = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", &boot.accel])
        .args(["-cpu", "qemu64", "-smp", "2", "-m", &format!("{memory_mib}M"), "-nodefaults", "-display", "none"])
        .args(["-device", kiln_agent::qemu::BALLOON_DEVICE])
        .arg("-kernel")
        .arg(build.join("vmlinuz"))
        .args(initrd)
        .args(["-append", &boot.append])
        .arg("-drive")
        .arg(kiln_agent::qemu::file_drive_options(&overlay, "d0"))
        .args(["-device", "virtio-blk-pci,drive=d0", "-device", "virtio-rng-pci"])
        // A metadata address that answers 404 at once, so the guest does not wait on it
        // (kiln-tiny asks again while nothing answers), and the guest's SSH port
        // forwarded to `forwarded`.
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,net=169.254.0.0/16,host=169.254.0.1,dhcpstart=169.254.0.15,\
             guestfwd=tcp:169.254.169.254:80-cmd:{NO_METADATA},hostfwd=tcp:{forwarded}-:22"
        ))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running qemu-system-x86_64")?;
    let (mut ssh, mut ready) = (None, None);
    let (took, reachable) = std::thread::scope(|s| {
        let reachable = s.spawn(|| ssh_reachable(t0, forwarded, Duration::from_secs(300)));
        let took = until(t0, Duration::from_secs(300), || {
            if ssh.is_none() && console_shows(&serial, DROPBEAR_LISTENING) {
                ssh = Some(t0.elapsed());
            }
            if ready.is_none() && console_shows(&serial, b"kiln-tiny: ready") {
                ready = Some(t0.elapsed());
            }
            Ok(ssh.is_some() && ready.is_some())
        });
        // The guest keeps running until its SSH answered (or the prober gave up).
        let reachable = reachable.join().unwrap_or_else(|_| bail!("the SSH prober panicked"));
        (took, reachable)
    });
    let _ = child.kill();
    let _ = child.wait();
    took.with_context(|| format!("a bare boot of {label}"))?;
    let reachable = reachable.with_context(|| format!("a bare boot of {label}: SSH through QEMU's forwarded port"))?;
    Ok(BareBoot { ssh: ssh.unwrap_or_default(), reachable, ready: ready.unwrap_or_default() })
}
