//! `kiln-bench load`: the API under load with many resources in the store. Each server
//! (this kiln, optionally an earlier kiln binary, and moto_server) gets the same 1,000
//! security groups through the API and 1,000 instances (written straight into kiln's
//! store as stopped instances, so that no VM runs; launched with RunInstances on moto),
//! then wrk replays one signed request per case at 1, 8 and 64 connections. It prints
//! requests per second, p50 and p99 and errors, and the ratios. With `--flood` each kiln
//! also runs one kiln-tiny guest that floods its VPC's DNS and its metadata service
//! from several loops, and the cases are measured again beside the quiet figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{call, fill, kiln_exe, ok, start_kiln_from, start_moto, tiny_ami, until, xml_first, Server, REGION};

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Instances in each server's store.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Security groups (and key pairs) made on each server.
    #[arg(long, default_value_t = 1000)]
    groups: usize,
    /// Concurrent connections to measure with.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 64])]
    clients: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// An earlier kiln binary to measure beside this one (e.g. built from the commit
    /// before a change).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The baseline emulator's command (moto's `moto_server`, from PyPI `moto[server]`).
    #[arg(long, default_value = "moto_server")]
    moto: String,
    /// Also measure while a guest floods its DNS and metadata service (needs root for
    /// VPC networking; builds the kiln-tiny image on first use).
    #[arg(long)]
    flood: bool,
    /// Where downloaded Debian packages are kept (shared with other data dirs).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Also measure kiln on PostgreSQL, with one API server and with two sharing the
    /// database (half the connections each): the URL of a cluster's `postgres` database
    /// as a user that may create databases.
    #[arg(long)]
    postgres: Option<String>,
}

/// Where a measured kiln keeps its state, and how many API servers share it.
#[derive(Debug, Clone)]
enum Backing {
    Sqlite,
    Postgres { admin: String, servers: usize },
}

/// A new database in the cluster of `admin`; its URL.
fn new_database(admin: &str) -> Result<String> {
    let name = format!("kiln_bench_{}_{}", std::process::id(), rand::random::<u32>());
    let mut c = postgres::Client::connect(admin, postgres::NoTls).context("connecting to --postgres")?;
    c.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let mut url = url::Url::parse(admin)?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// What wrk measured.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// A guest that asks its VPC's DNS and its metadata service as fast as it can, from
/// four loops of each.
const FLOOD: &str = r#"#!/bin/sh
cat > /etc/rc.local <<'EOF'
#!/bin/sh
for k in 1 2 3 4; do
  ( while true; do nslookup ip-10-0-0-1.ec2.internal 172.31.0.2 >/dev/null 2>&1; done ) &
  ( while true; do printf 'GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n' | nc -w 1 169.254.169.254 80 >/dev/null 2>&1; done ) &
done
echo "flood started" > /dev/console
EOF
chmod +x /etc/rc.local
"#;

pub fn run(args: LoadArgs) -> Result<()> {
    for tool in ["wrk", &args.moto] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| !o.status.success())? {
            bail!("'{tool}' is not installed: `apt-get install wrk`, `pip install 'moto[server]'` (scripts/bench.sh does both)");
        }
    }
    println!(
        "kiln-bench load: {} instances and {} security groups per server; wrk for {} s per case at {:?} connections",
        args.instances, args.groups, args.seconds, args.clients
    );
    let mut kilns = vec![("kiln", kiln_exe()?, Backing::Sqlite)];
    if let Some(b) = &args.baseline {
        kilns.push(("kiln-base", b.clone(), Backing::Sqlite));
    }
    if let Some(admin) = &args.postgres {
        kilns.push(("kiln-pg", kiln_exe()?, Backing::Postgres { admin: admin.clone(), servers: 1 }));
        kilns.push(("kiln-pg-x2", kiln_exe()?, Backing::Postgres { admin: admin.clone(), servers: 2 }));
    }
    println!();
    println!(
        "{:<34} {:<10} {:<8} {:>7} {:>10} {:>9} {:>9} {:>7}",
        "case", "server", "guest", "conns", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let mut table: Vec<(String, String, String, usize, Run)> = Vec::new();
    for (label, exe, backing) in &kilns {
        for (case, clients, phase, r) in measure_kiln(&args, label, exe, backing)? {
            table.push((case, label.to_string(), phase, clients, r));
        }
    }
    for (case, clients, r) in measure_moto(&args)? {
        table.push((case, "moto".into(), "quiet".into(), clients, r));
    }
    println!();
    let find = |case: &str, server: &str, phase: &str, clients: usize| {
        table.iter().find(|t| t.0 == case && t.1 == server && t.2 == phase && t.3 == clients).map(|t| t.4)
    };
    let mut cases: Vec<String> = Vec::new();
    for t in &table {
        if !cases.contains(&t.0) {
            cases.push(t.0.clone());
        }
    }
    for case in &cases {
        for &n in &args.clients {
            let Some(k) = find(case, "kiln", "quiet", n) else { continue };
            let mut line = format!("{case} at {n}:");
            match find(case, "moto", "quiet", n) {
                Some(m) if m.rps > 0.0 => line += &format!(" kiln/moto {:.1}x req/s", k.rps / m.rps),
                Some(_) => line += " moto answered none in time",
                None => {}
            }
            if let Some(b) = find(case, "kiln-base", "quiet", n) {
                line += &format!(", kiln/kiln-base {:.1}x req/s", k.rps / b.rps);
            }
            if let Some(pg) = find(case, "kiln-pg", "quiet", n) {
                line += &format!(", kiln-pg/kiln {:.2}x req/s", pg.rps / k.rps);
                if let Some(two) = find(case, "kiln-pg-x2", "quiet", n) {
                    line += &format!(", kiln-pg-x2/kiln-pg {:.2}x", two.rps / pg.rps);
                }
            }
            if let Some(f) = find(case, "kiln", "flooded", n) {
                line += &format!(", flood p99 {:.2}x of quiet", f.p99_ms / k.p99_ms);
            }
            if let Some(bf) = find(case, "kiln-base", "flooded", n) {
                if let Some(b) = find(case, "kiln-base", "quiet", n) {
                    line += &format!(" (kiln-base {:.2}x)", bf.p99_ms / b.p99_ms);
                }
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// The cases: (name, query body, text the answer must hold). The page comes last: a
/// slow server still working through a backlog of pages would delay the next case.
fn cases(instance: &str, group: &str) -> Vec<(String, String, String)> {
    vec![
        (
            "DescribeInstances (one id)".into(),
            format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={instance}"),
            instance.to_owned(),
        ),
        (
            "DescribeSecurityGroups (one id)".into(),
            format!("Action=DescribeSecurityGroups&Version=2016-11-15&GroupId.1={group}"),
            group.to_owned(),
        ),
        (
            "CreateTags (a write)".into(),
            format!("Action=CreateTags&Version=2016-11-15&ResourceId.1={group}&Tag.1.Key=bench&Tag.1.Value=load"),
            "CreateTagsResponse".into(),
        ),
        (
            "DescribeInstances (page of 100)".into(),
            "Action=DescribeInstances&Version=2016-11-15&MaxResults=100".into(),
            "<instanceId>".into(),
        ),
    ]
}

fn measure_kiln(
    args: &LoadArgs,
    label: &'static str,
    exe: &Path,
    backing: &Backing,
) -> Result<Vec<(String, usize, String, Run)>> {
    let dir = std::env::temp_dir().join(format!("kiln-bench-load-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = args.cache_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("kiln-bench-cache"));
    let cache_s = cache.to_string_lossy().into_owned();
    let pool = match label {
        "kiln" => "100.64.211.0/24",
        "kiln-base" => "100.64.212.0/24",
        "kiln-pg" => "100.64.213.0/24",
        _ => "100.64.214.0/24",
    };
    let mut extra: Vec<String> =
        ["--public-ip-pool", pool, "--no-egress-nat", "--vcpu-quota", "512"].map(String::from).to_vec();
    let servers = match backing {
        Backing::Sqlite => 1,
        Backing::Postgres { admin, servers } => {
            extra.extend(["--database".to_owned(), new_database(admin)?]);
            *servers
        }
    };
    let quick: Vec<String> = if args.flood {
        ["--cache-dir", &cache_s, "--quickstart", "kiln-tiny-x86_64"].map(String::from).to_vec()
    } else {
        vec!["--no-quickstart".to_owned()]
    };
    let first_args: Vec<&str> = extra.iter().chain(&quick).map(String::as_str).collect();
    let mut kiln = start_kiln_from(exe, &dir, &first_args)?;
    kiln.name = label;
    // More servers on the same database and data directory (the database is recorded
    // there), API only: the first keeps the host's work.
    let mut more = Vec::new();
    for _ in 1..servers {
        let shared = ["--public-ip-pool", pool, "--no-egress-nat", "--no-quickstart"];
        let mut s = start_kiln_from(exe, &dir, &shared)?;
        s.name = label;
        more.push(s);
    }
    let client = reqwest::blocking::Client::new();
    let result = (|| {
        fill(&client, &kiln, args.groups)?;
        let (instance, group) = seed(&dir, args.instances)?;
        eprintln!("  {label}: {} stopped instances written to its store", args.instances);
        let list = cases(&instance, &group);
        // The image is built before anything is measured: the build would share the CPU.
        let ami = if args.flood { Some(tiny_ami(&client, &kiln)?) } else { None };
        let all: Vec<&Server> = std::iter::once(&kiln).chain(more.iter()).collect();
        let mut out = Vec::new();
        for (case, body, expect) in &list {
            for &n in &args.clients {
                out.push((
                    case.clone(),
                    n,
                    "quiet".to_owned(),
                    measured(&all, label, "quiet", case, body, expect, n, args.seconds),
                ));
            }
        }
        if let Some(ami) = ami {
            let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, FLOOD);
            let data: String = form_urlencoded::byte_serialize(data.as_bytes()).collect();
            let xml = ok(&client, &kiln, &format!(
                "Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t3.micro&MinCount=1&MaxCount=1&UserData={data}"
            ))?;
            let id = xml_first(&xml, "instanceId").context("RunInstances returned no instance")?.to_owned();
            let console = format!("Action=GetConsoleOutput&Version=2016-11-15&InstanceId={id}");
            until(Instant::now(), Duration::from_secs(300), || {
                let xml = ok(&client, &kiln, &console)?;
                let text = xml_first(&xml, "output")
                    .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
                    .unwrap_or_default();
                Ok(String::from_utf8_lossy(&text).contains("flood started"))
            })?;
            eprintln!("  {label}: guest {id} is flooding its DNS and metadata service");
            std::thread::sleep(Duration::from_secs(3));
            for (case, body, expect) in &list {
                for &n in &args.clients {
                    out.push((
                        case.clone(),
                        n,
                        "flooded".to_owned(),
                        measured(&[&kiln], label, "flooded", case, body, expect, n, args.seconds),
                    ));
                }
            }
            let _ = ok(&client, &kiln, &format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={id}"));
            super::settle_networks(&dir);
        }
        Ok(out)
    })();
    drop(more);
    drop(kiln);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_moto(args: &LoadArgs) -> Result<Vec<(String, usize, Run)>> {
    let moto = start_moto(&args.moto)?;
    let client = reqwest::blocking::Client::new();
    fill(&client, &moto, args.groups)?;
    let images = ok(&client, &moto, "Action=DescribeImages&Version=2016-11-15&Owner.1=amazon")?;
    let ami = xml_first(&images, "imageId").context("moto lists no image")?.to_owned();
    let mut first = String::new();
    let mut left = args.instances;
    while left > 0 {
        let n = left.min(100);
        let xml = ok(
            &client,
            &moto,
            &format!(
                "Action=RunInstances&Version=2016-11-15&ImageId={ami}&InstanceType=t3.micro&MinCount={n}&MaxCount={n}"
            ),
        )?;
        if first.is_empty() {
            first = xml_first(&xml, "instanceId").context("moto launched nothing")?.to_owned();
        }
        left -= n;
    }
    let groups = ok(&client, &moto, "Action=DescribeSecurityGroups&Version=2016-11-15&GroupName.1=bench-7")?;
    let group = xml_first(&groups, "groupId").context("moto has no bench group")?.to_owned();
    eprintln!("  moto: {} instances launched", args.instances);
    let mut out = Vec::new();
    for (case, body, expect) in cases(&first, &group) {
        for &n in &args.clients {
            out.push((case.clone(), n, measured(&[&moto], "moto", "quiet", &case, &body, &expect, n, args.seconds)));
        }
    }
    Ok(out)
}

/// Writes `n` stopped instances into a kiln store (columns every schema since
/// instances began has), in the operator's default subnet and group; returns one
/// instance id and one security group id (`bench-7`).
fn seed(dir: &Path, n: usize) -> Result<(String, String)> {
    // The database the server recorded in its data directory, else its SQLite file.
    let at = match std::fs::read_to_string(dir.join("database")) {
        Ok(url) if !url.trim().is_empty() => kiln_store::Location::parse(url.trim()),
        _ => kiln_store::Location::Sqlite(dir.join("kiln.db")),
    };
    let store = kiln_store::Store::open_at(&at)?;
    let ids = store.write(|tx| -> Result<(String, String)> {
        let account: String = tx.query_row("SELECT id FROM accounts WHERE name = 'operator'", (), |r| r.get(0))?;
        let (subnet, vpc, cidr, zone): (String, String, String, String) = tx.query_row(
            "SELECT id, vpc_id, cidr, availability_zone FROM subnets WHERE account_id = ?1 AND region = ?2 AND default_for_az = 1
             ORDER BY availability_zone LIMIT 1",
            [account.as_str(), REGION],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let group: String =
            tx.query_row("SELECT id FROM security_groups WHERE vpc_id = ?1 AND name = 'default'", [&vpc], |r| r.get(0))?;
        let bench_group: String =
            tx.query_row("SELECT id FROM security_groups WHERE name = 'bench-7'", (), |r| r.get(0))?;
        let base: ipnet::Ipv4Net = cidr.parse()?;
        let base = u32::from(base.network());
        let mut first = String::new();
        for k in 0..n {
            let id = kiln_types::ResourceKind::Instance.generate();
            let ip = std::net::Ipv4Addr::from(base + 1000 + k as u32).to_string();
            tx.execute(
                "INSERT INTO instances (id, account_id, region, reservation_id, image_id, instance_type, architecture,
                   vcpus, memory_mib, state, transition_reason, subnet_id, vpc_id, availability_zone, private_ip,
                   launch_index, http_tokens, http_endpoint, hop_limit, disable_api_termination, shutdown_behavior,
                   root_device_name, launch_time)
                 VALUES (?1, ?2, ?3, ?4, 'ami-0123456789abcdef0', 't3.micro', 'x86_64', 2, 1024, 'stopped', '', ?5, ?6,
                   ?7, ?8, 0, 'optional', 'enabled', 1, 0, 'stop', '/dev/xvda', ?9)",
                kiln_store::params_from_iter([
                    id.clone(),
                    account.clone(),
                    REGION.to_owned(),
                    kiln_types::ResourceKind::Reservation.generate(),
                    subnet.clone(),
                    vpc.clone(),
                    zone.clone(),
                    ip,
                    kiln_store::now(),
                ]),
            )?;
            tx.execute("INSERT INTO instance_groups (instance_id, group_id, position) VALUES (?1, ?2, 0)", [&id, &group])?;
            if first.is_empty() {
                first = id;
            }
        }
        Ok((first, bench_group))
    })?;
    Ok(ids)
}

/// Measures one case and prints its row at once (a later failure keeps what was
/// measured); a case that cannot be measured counts as one error at 0 req/s. With
/// several servers the connections are shared out among them (requests per second
/// added up, the worst p99, the mean p50).
#[allow(clippy::too_many_arguments)]
fn measured(
    servers: &[&Server],
    name: &str,
    phase: &str,
    case: &str,
    body: &str,
    expect: &str,
    clients: usize,
    seconds: u64,
) -> Run {
    let used = if clients < servers.len() { &servers[..1] } else { servers };
    let each = clients / used.len();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = used
            .iter()
            .map(|srv| {
                s.spawn(move || {
                    wrk(srv, body, expect, each, seconds).unwrap_or_else(|e| {
                        eprintln!("  {name}: {case} at {each} on {}: {e:#}", srv.addr);
                        Run { errors: 1, ..Run::default() }
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Run { errors: 1, ..Run::default() })).collect()
    });
    let r = Run {
        rps: runs.iter().map(|r| r.rps).sum(),
        p50_ms: runs.iter().map(|r| r.p50_ms).sum::<f64>() / runs.len() as f64,
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        errors: runs.iter().map(|r| r.errors).sum(),
    };
    println!(
        "{case:<34} {name:<10} {phase:<8} {clients:>7} {:>10.0} {:>9.2} {:>9.2} {:>7}",
        r.rps, r.p50_ms, r.p99_ms, r.errors
    );
    r
}

/// Runs wrk for `seconds` with `clients` connections, replaying one request signed
/// now (the signature stays valid for five minutes).
fn wrk(server: &Server, body: &str, expect: &str, clients: usize, seconds: u64) -> Result<Run> {
    // Generous: a slow server may still be answering the last run's requests.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let (status, text) = call(&client, server, body)?;
    if status != 200 || !text.contains(expect) {
        bail!("{} answered {status} without '{expect}': {}", server.name, text.chars().take(300).collect::<String>());
    }
    let host = server.addr.to_string();
    let headers =
        kiln_ec2::sigv4::sign_headers(&server.key.0, &server.key.1, REGION, &host, body.as_bytes(), chrono::Utc::now());
    let mut lua = format!("wrk.method = \"POST\"\nwrk.body = {body:?}\n");
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        lua += &format!("wrk.headers[{k:?}] = {v:?}\n");
    }
    let script =
        std::env::temp_dir().join(format!("kiln-bench-load-{}-{}.lua", std::process::id(), server.addr.port()));
    std::fs::write(&script, lua)?;
    let out = Command::new("wrk")
        .args([
            "-t",
            &clients.min(2).to_string(),
            "-c",
            &clients.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://{host}/"))
        .output()
        .context("running wrk")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))
}

fn millis(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> Option<Run> {
    let mut r = Run::default();
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_ms = millis(v)?,
            ["99%", v] => r.p99_ms = millis(v)?,
            ["Requests/sec:", v] => {
                r.rps = v.parse().ok()?;
                seen = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                r.errors += rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>()
            }
            _ => {}
        }
    }
    seen.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 8 connections\n  Latency Distribution\n     50%  612.00us\n     75%    1.01ms\n     90%    1.50ms\n     99%    3.20ms\n  40000 requests in 5.00s, 30.00MB read\n  Non-2xx or 3xx responses: 3\n  Socket errors: connect 0, read 1, write 0, timeout 2\nRequests/sec:   8000.50\n";
        let r = parse_wrk(text).expect("parsed");
        assert!((r.p50_ms - 0.612).abs() < 1e-9 && (r.p99_ms - 3.2).abs() < 1e-9);
        assert_eq!(r.errors, 6);
        assert!((r.rps - 8000.5).abs() < 1e-9);
        assert!(parse_wrk("nothing").is_none());
    }
}
