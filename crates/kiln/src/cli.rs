//! The everyday `kiln` commands (run, ls, show, stop, start, reboot, rm, console,
//! images, keys, sg, create-image, types, regions): each is one or a few EC2 calls
//! through `client.rs`, shown as a table for people or as JSON (`--output json`) for
//! scripts. Errors say what to do next.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use roxmltree::{Document, Node};
use serde_json::{json, Value};

use crate::client::{child, Client, ClientArgs};

/// Where to talk and how to show the answer.
#[derive(clap::Args, Clone, Debug)]
pub struct Global {
    #[command(flatten)]
    pub client: ClientArgs,
    /// table (for people), json, or text (tab-separated, no header: for `cut`).
    #[arg(long, default_value = "table", value_parser = ["table", "json", "text"])]
    pub output: String,
}

impl Global {
    fn json(&self) -> bool {
        self.output == "json"
    }
}

/// Prints rows as a table (columns in the order given) or as a JSON array of objects.
pub(crate) fn show(g: &Global, columns: &[&str], rows: Vec<Vec<String>>) {
    if g.json() {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, Value> =
                    columns.iter().zip(r).map(|(c, v)| (c.to_lowercase().replace(' ', "_"), json!(v))).collect();
                Value::Object(obj)
            })
            .collect();
        emit(&serde_json::to_string_pretty(&Value::Array(list)).unwrap_or_default());
        return;
    }
    if g.output == "text" {
        for r in rows {
            emit(&r.join("\t"));
        }
        return;
    }
    if rows.is_empty() {
        emit("(none)");
        return;
    }
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(columns.iter().map(|c| c.to_uppercase()));
    for r in rows {
        t.add_row(r);
    }
    emit(&t.to_string().lines().map(str::trim_end).collect::<Vec<_>>().join("\n"));
}

/// Writes a line to standard output; a reader that went away (`| head`) ends the
/// program quietly instead of a panic.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

pub(crate) fn items<'a, 'i>(node: Node<'a, 'i>, set: &str) -> Vec<Node<'a, 'i>> {
    node.children()
        .find(|n| n.has_tag_name(set))
        .map(|s| s.children().filter(|n| n.has_tag_name("item")).collect())
        .unwrap_or_default()
}

pub(crate) fn text(node: Node<'_, '_>, path: &[&str]) -> String {
    let mut n = node;
    for p in &path[..path.len() - 1] {
        match n.children().find(|c| c.has_tag_name(*p)) {
            Some(c) => n = c,
            None => return String::new(),
        }
    }
    child(n, path[path.len() - 1]).unwrap_or_default()
}

pub(crate) fn tag(node: Node<'_, '_>, key: &str) -> String {
    items(node, "tagSet")
        .into_iter()
        .find(|t| child(*t, "key").as_deref() == Some(key))
        .and_then(|t| child(t, "value"))
        .unwrap_or_default()
}

/// Numbered parameters: `Prefix.1=a&Prefix.2=b`.
pub(crate) fn numbered(prefix: &str, values: &[String]) -> Vec<(String, String)> {
    values.iter().enumerate().map(|(n, v)| (format!("{prefix}.{}", n + 1), v.clone())).collect()
}

pub(crate) fn call(client: &Client, action: &str, params: &[(String, String)]) -> Result<String> {
    let p: Vec<(&str, String)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    client.call(action, &p)
}

// --- instances ------------------------------------------------------------------------

/// One instance as the commands show it.
#[derive(Debug, Clone)]
pub(crate) struct Inst {
    pub id: String,
    pub name: String,
    pub state: String,
    pub kind: String,
    pub image: String,
    pub private_ip: String,
    pub public_ip: String,
    pub key: String,
    pub zone: String,
    pub launched: String,
    pub groups: Vec<String>,
}

pub(crate) fn instances(client: &Client, ids: &[String]) -> Result<Vec<Inst>> {
    let xml = call(client, "DescribeInstances", &numbered("InstanceId", ids))?;
    let doc = Document::parse(&xml)?;
    let mut out = Vec::new();
    for r in items(doc.root_element(), "reservationSet") {
        for i in items(r, "instancesSet") {
            out.push(Inst {
                id: text(i, &["instanceId"]),
                name: tag(i, "Name"),
                state: text(i, &["instanceState", "name"]),
                kind: text(i, &["instanceType"]),
                image: text(i, &["imageId"]),
                private_ip: text(i, &["privateIpAddress"]),
                public_ip: text(i, &["ipAddress"]),
                key: text(i, &["keyName"]),
                zone: text(i, &["placement", "availabilityZone"]),
                launched: text(i, &["launchTime"]),
                groups: items(i, "groupSet").into_iter().map(|g| text(g, &["groupId"])).collect(),
            });
        }
    }
    Ok(out)
}

fn instance_rows(list: &[Inst]) -> Vec<Vec<String>> {
    list.iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.name.clone(),
                i.state.clone(),
                i.kind.clone(),
                i.image.clone(),
                i.private_ip.clone(),
                i.public_ip.clone(),
                i.zone.clone(),
            ]
        })
        .collect()
}

const INSTANCE_COLUMNS: &[&str] = &["id", "name", "state", "type", "image", "private ip", "public ip", "zone"];

pub fn ls(g: &Global, all: bool) -> Result<()> {
    let client = Client::new(&g.client)?;
    let list: Vec<Inst> = instances(&client, &[])?.into_iter().filter(|i| all || i.state != "terminated").collect();
    show(g, INSTANCE_COLUMNS, instance_rows(&list));
    Ok(())
}

pub fn show_instance(g: &Global, id: &str, field: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let i = instances(&client, &[id.to_owned()])?.into_iter().next().with_context(|| format!("no instance {id}"))?;
    let fields = [
        ("id", i.id.clone()),
        ("name", i.name.clone()),
        ("state", i.state.clone()),
        ("type", i.kind.clone()),
        ("image", i.image.clone()),
        ("key", i.key.clone()),
        ("zone", i.zone.clone()),
        ("private ip", i.private_ip.clone()),
        ("public ip", i.public_ip.clone()),
        ("security groups", i.groups.join(", ")),
        ("launched", i.launched.clone()),
    ];
    if let Some(f) = field {
        let value = fields.iter().find(|(k, _)| k.replace(' ', "_") == f).map(|(_, v)| v.clone());
        let names: Vec<String> = fields.iter().map(|(k, _)| k.replace(' ', "_")).collect();
        emit(&value.with_context(|| format!("no field '{f}': one of {}", names.join(", ")))?);
        return Ok(());
    }
    if g.json() {
        let obj: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| (k.replace(' ', "_"), json!(v))).collect();
        emit(&serde_json::to_string_pretty(&Value::Object(obj)).unwrap_or_default());
    } else if g.output == "text" {
        for (k, v) in fields {
            emit(&format!("{}\t{v}", k.replace(' ', "_")));
        }
    } else {
        for (k, v) in fields {
            emit(&format!("{:<16} {v}", format!("{k}:")));
        }
    }
    Ok(())
}

/// Start, stop, reboot or terminate: prints each instance's state change.
pub fn lifecycle(g: &Global, action: &str, ids: &[String], force: bool) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut params = numbered("InstanceId", ids);
    if force {
        params.push(("Force".into(), "true".into()));
    }
    let xml = call(&client, action, &params)?;
    if action == "RebootInstances" {
        show(g, &["id", "state"], ids.iter().map(|i| vec![i.clone(), "rebooting".into()]).collect());
        return Ok(());
    }
    let doc = Document::parse(&xml)?;
    let set = doc.root_element().children().find(|n| n.has_tag_name("instancesSet"));
    let rows = set
        .map(|s| {
            s.children()
                .filter(|n| n.has_tag_name("item"))
                .map(|i| {
                    vec![
                        text(i, &["instanceId"]),
                        text(i, &["previousState", "name"]),
                        text(i, &["currentState", "name"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    show(g, &["id", "previous", "current"], rows);
    Ok(())
}

/// The serial console; with `follow`, new output as it comes until Ctrl-C.
pub fn console(g: &Global, id: &str, follow: bool) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut shown = 0usize;
    loop {
        let xml = call(&client, "GetConsoleOutput", &[("InstanceId".into(), id.to_owned())])?;
        let doc = Document::parse(&xml)?;
        let raw = crate::client::first(&doc, "output").unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw.trim()).unwrap_or_default();
        // The console keeps its last part: print only what is new.
        let new = if bytes.len() >= shown { &bytes[shown..] } else { &bytes[..] };
        let mut out = std::io::stdout().lock();
        if out.write_all(new).and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
        shown = bytes.len();
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// RunInstances options as a person gives them.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// An AMI id, or an image name (wildcards allowed; the newest match wins). With
    /// --template it overrides the template's image.
    #[arg(required_unless_present = "template")]
    pub image: Option<String>,
    /// A launch template, by name or id, with an optional version:
    /// `NAME`, `NAME:3`, `NAME:$Latest` (the template's default version otherwise).
    /// Options given here override the template's.
    #[arg(long)]
    pub template: Option<String>,
    /// The instance type (t3.micro unless the template names one).
    #[arg(long = "type")]
    pub instance_type: Option<String>,
    /// The key pair (see `kiln keys`).
    #[arg(long)]
    pub key: Option<String>,
    /// Security groups by id or name; repeat for more.
    #[arg(long = "sg")]
    pub groups: Vec<String>,
    /// How many instances.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// A file with user data (a script starting with #! or cloud-config).
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// The subnet (default: the default subnet of a zone).
    #[arg(long)]
    pub subnet: Option<String>,
    /// A Name tag.
    #[arg(long)]
    pub name: Option<String>,
    /// Wait, showing progress, until the instances run, pass their status checks and
    /// answer on SSH.
    #[arg(long)]
    pub wait: bool,
}

/// An image id from an id or a name (the newest image of that name the caller may launch).
fn resolve_image(client: &Client, image: &str) -> Result<String> {
    if image.starts_with("ami-") {
        return Ok(image.to_owned());
    }
    let xml = call(
        client,
        "DescribeImages",
        &[
            ("Filter.1.Name".into(), "name".into()),
            ("Filter.1.Value.1".into(), image.to_owned()),
            ("Filter.2.Name".into(), "state".into()),
            ("Filter.2.Value.1".into(), "available".into()),
        ],
    )?;
    let doc = Document::parse(&xml)?;
    let mut found: Vec<(String, String)> = items(doc.root_element(), "imagesSet")
        .into_iter()
        .map(|i| (text(i, &["creationDate"]), text(i, &["imageId"])))
        .collect();
    if found.is_empty() && !image.contains(['*', '?']) {
        // A family name (`kiln-tiny`): its newest image for this host's architecture.
        let arch = match std::env::consts::ARCH {
            "aarch64" => "arm64",
            other => other,
        };
        let pattern = format!("{image}-{arch}*");
        return resolve_image(client, &pattern).with_context(|| format!("no available image named '{image}'"));
    }
    found.sort();
    found.pop().map(|(_, id)| id).with_context(|| {
        format!("no available image named '{image}': see `kiln images`, or give an ami- id (wildcards such as 'kiln-tiny-x86_64-*' work)")
    })
}

/// RunInstances' `LaunchTemplate` from `NAME`, `lt-ID`, either with `:VERSION`.
fn template_params(spec: &str) -> Vec<(String, String)> {
    let (template, version) = match spec.rsplit_once(':') {
        Some((t, v)) => (t, Some(v)),
        None => (spec, None),
    };
    let by_id = template.starts_with("lt-") && template.parse::<kiln_types::LaunchTemplateId>().is_ok();
    let key = if by_id { "LaunchTemplate.LaunchTemplateId" } else { "LaunchTemplate.LaunchTemplateName" };
    let mut p = vec![(key.to_owned(), template.to_owned())];
    if let Some(v) = version {
        p.push(("LaunchTemplate.Version".into(), v.to_owned()));
    }
    p
}

pub fn run(g: &Global, a: &RunArgs) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut p: Vec<(String, String)> =
        vec![("MinCount".into(), a.count.to_string()), ("MaxCount".into(), a.count.to_string())];
    if let Some(image) = &a.image {
        p.push(("ImageId".into(), resolve_image(&client, image)?));
    }
    match (&a.template, &a.instance_type) {
        (Some(t), _) => p.extend(template_params(t)),
        (None, None) => p.push(("InstanceType".into(), "t3.micro".into())),
        (None, Some(_)) => {}
    }
    if let Some(t) = &a.instance_type {
        p.push(("InstanceType".into(), t.clone()));
    }
    if let Some(k) = &a.key {
        p.push(("KeyName".into(), k.clone()));
    }
    let (ids, names): (Vec<String>, Vec<String>) = a.groups.iter().cloned().partition(|s| s.starts_with("sg-"));
    p.extend(numbered("SecurityGroupId", &ids));
    p.extend(numbered("SecurityGroup", &names));
    if let Some(s) = &a.subnet {
        p.push(("SubnetId".into(), s.clone()));
    }
    if let Some(f) = &a.user_data {
        let data = std::fs::read(f).with_context(|| format!("reading the user data {}", f.display()))?;
        p.push(("UserData".into(), base64::engine::general_purpose::STANDARD.encode(data)));
    }
    if let Some(n) = &a.name {
        p.push(("TagSpecification.1.ResourceType".into(), "instance".into()));
        p.push(("TagSpecification.1.Tag.1.Key".into(), "Name".into()));
        p.push(("TagSpecification.1.Tag.1.Value".into(), n.clone()));
    }
    let xml = call(&client, "RunInstances", &p)?;
    let doc = Document::parse(&xml)?;
    let ids: Vec<String> =
        items(doc.root_element(), "instancesSet").into_iter().map(|i| text(i, &["instanceId"])).collect();
    if a.wait {
        wait_ready(&client, &ids, g.json())?;
    }
    let list = instances(&client, &ids)?;
    show(g, INSTANCE_COLUMNS, instance_rows(&list));
    Ok(())
}

/// How long `--wait` waits for SSH once the guest is up.
const SSH_WAIT: Duration = Duration::from_secs(60);

/// Whether some ingress rule of `groups` admits TCP port 22 from an address range (a
/// rule naming another group never admits this host).
fn ssh_allowed(client: &Client, groups: &[String]) -> bool {
    let Ok(xml) = call(client, "DescribeSecurityGroups", &numbered("GroupId", groups)) else { return true };
    let Ok(doc) = Document::parse(&xml) else { return true };
    items(doc.root_element(), "securityGroupInfo").into_iter().any(|g| {
        items(g, "ipPermissions").into_iter().any(|p| {
            let proto = text(p, &["ipProtocol"]);
            let from = text(p, &["fromPort"]).parse::<i64>().unwrap_or(-1);
            let to = text(p, &["toPort"]).parse::<i64>().unwrap_or(-1);
            let port_ok = proto == "-1" || (proto == "tcp" && (from == -1 || (from <= 22 && 22 <= to)));
            port_ok && !items(p, "ipRanges").is_empty()
        })
    })
}

/// Polls until every instance is running, passes its status check and answers on
/// port 22 of its public address (when a rule lets SSH in, for at most `SSH_WAIT`);
/// progress goes to standard error.
fn wait_ready(client: &Client, ids: &[String], quiet: bool) -> Result<()> {
    let t0 = Instant::now();
    let say = |what: &str| {
        if !quiet {
            eprintln!("[{:>5.1} s] {what}", t0.elapsed().as_secs_f64());
        }
    };
    // Why the wait ended early is said even with JSON output (on standard error).
    let warn = |what: &str| eprintln!("[{:>5.1} s] {what}", t0.elapsed().as_secs_f64());
    let limit = Duration::from_secs(900);
    let mut stage = "";
    let mut ssh_since: Option<Instant> = None;
    loop {
        if t0.elapsed() > limit {
            bail!("the instances were not ready after {} s: see `kiln console ID`", limit.as_secs());
        }
        let list = instances(client, ids)?;
        if let Some(bad) = list.iter().find(|i| matches!(i.state.as_str(), "terminated" | "shutting-down" | "stopped"))
        {
            bail!("{} is {}: see `kiln console {}` for why", bad.id, bad.state, bad.id);
        }
        if list.iter().any(|i| i.state == "pending") {
            if stage != "pending" {
                say("pending: starting the VM");
                stage = "pending";
            }
        } else {
            if stage == "pending" || stage.is_empty() {
                say("running: the guest is booting");
                stage = "running";
            }
            let xml = call(client, "DescribeInstanceStatus", &numbered("InstanceId", ids))?;
            let ok = Document::parse(&xml)
                .map(|d| {
                    let statuses = items(d.root_element(), "instanceStatusSet");
                    statuses.len() == ids.len()
                        && statuses.iter().all(|s| text(*s, &["instanceStatus", "status"]) == "ok")
                })
                .unwrap_or(false);
            if ok {
                if stage == "running" {
                    say("status ok: the guest is up");
                    stage = "ok";
                }
                // SSH is waited for only where a group rule can let it in, and only
                // for a bounded time: the instances are up either way.
                if let Some(closed) = list.iter().find(|i| !i.public_ip.is_empty() && !ssh_allowed(client, &i.groups)) {
                    warn(&format!(
                        "not waiting for ssh: no rule of {}'s security groups ({}) lets port 22 in; \
                         run `kiln sg allow {} 22` to open it",
                        closed.id,
                        closed.groups.join(", "),
                        closed.groups.first().map(String::as_str).unwrap_or("GROUP"),
                    ));
                    return Ok(());
                }
                let ok_at = *ssh_since.get_or_insert_with(Instant::now);
                let reachable = list.iter().all(|i| {
                    i.public_ip.is_empty()
                        || i.public_ip
                            .parse::<std::net::IpAddr>()
                            .ok()
                            .map(|ip| std::net::SocketAddr::new(ip, 22))
                            .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
                });
                if reachable {
                    say("ssh reachable");
                    return Ok(());
                }
                if ok_at.elapsed() > SSH_WAIT {
                    warn(&format!(
                        "not waiting for ssh any longer: port 22 did not answer within {} s of status ok; \
                         see `kiln console ID` and the subnet's route to an internet gateway",
                        SSH_WAIT.as_secs()
                    ));
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn create_image(
    g: &Global,
    instance: &str,
    name: &str,
    description: Option<&str>,
    no_reboot: bool,
    wait: bool,
) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut p = vec![("InstanceId".to_owned(), instance.to_owned()), ("Name".into(), name.to_owned())];
    if let Some(d) = description {
        p.push(("Description".into(), d.to_owned()));
    }
    if no_reboot {
        p.push(("NoReboot".into(), "true".into()));
    }
    let xml = call(&client, "CreateImage", &p)?;
    let id = crate::client::first(&Document::parse(&xml)?, "imageId").context("CreateImage returned no image")?;
    let mut state = "pending".to_owned();
    if wait {
        // CreateImage answers at once; the image is made in the background.
        let t0 = Instant::now();
        if !g.json() {
            eprintln!(
                "[{:>5.1} s] pending: {}",
                t0.elapsed().as_secs_f64(),
                if no_reboot { "freezing the volumes" } else { "powering off, freezing, starting again" }
            );
        }
        loop {
            let xml = call(&client, "DescribeImages", &[("ImageId.1".into(), id.clone())])?;
            let doc = Document::parse(&xml)?;
            state = crate::client::first(&doc, "imageState").unwrap_or_default();
            if state != "pending" {
                break;
            }
            if t0.elapsed() > Duration::from_secs(900) {
                bail!("{id} is still pending after 15 min: see `kiln images` and the server's log");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if state != "available" {
            let why = crate::client::first(
                &Document::parse(&call(&client, "DescribeImages", &[("ImageId.1".into(), id.clone())])?)?,
                "message",
            );
            bail!("{id} is {state}: {}", why.unwrap_or_else(|| "no reason given".into()));
        }
        if !g.json() {
            eprintln!("[{:>5.1} s] available", t0.elapsed().as_secs_f64());
        }
    }
    show(g, &["image", "name", "state"], vec![vec![id, name.to_owned(), state]]);
    Ok(())
}

// --- images -----------------------------------------------------------------------------

/// The catalog's categories, as the console names them.
pub const CATEGORIES: &[&str] = &["quickstart", "mine", "shared", "marketplace"];

pub fn images(g: &Global, category: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let wanted: Vec<&str> = match category {
        Some(c) => vec![c],
        None => CATEGORIES.to_vec(),
    };
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in wanted {
        let params: Vec<(String, String)> = match c {
            "quickstart" => vec![("Owner.1".into(), "amazon".into())],
            "mine" => vec![("Owner.1".into(), "self".into())],
            "marketplace" => vec![("Owner.1".into(), "aws-marketplace".into())],
            _ => vec![("ExecutableBy.1".into(), "self".into())],
        };
        let xml = call(&client, "DescribeImages", &params)?;
        let doc = Document::parse(&xml)?;
        for i in items(doc.root_element(), "imagesSet") {
            let id = text(i, &["imageId"]);
            // Shared: launchable, but neither mine nor the catalog's.
            if !seen.insert(id.clone()) {
                continue;
            }
            rows.push(vec![
                c.to_owned(),
                id,
                text(i, &["name"]),
                text(i, &["architecture"]),
                text(i, &["imageState"]),
                Some(text(i, &["imageOwnerAlias"]))
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| text(i, &["imageOwnerId"])),
                text(i, &["creationDate"]),
            ]);
        }
    }
    show(g, &["category", "id", "name", "arch", "state", "owner", "created"], rows);
    Ok(())
}

pub fn share(g: &Global, image: &str, account: &str, remove: bool) -> Result<()> {
    let client = Client::new(&g.client)?;
    let op = if remove { "Remove" } else { "Add" };
    let p = [("ImageId".to_owned(), image.to_owned()), (format!("LaunchPermission.{op}.1.UserId"), account.to_owned())];
    call(&client, "ModifyImageAttribute", &p)?;
    let verb = if remove { "unshared from" } else { "shared with" };
    show(g, &["image", "account", "change"], vec![vec![image.to_owned(), account.to_owned(), verb.to_owned()]]);
    Ok(())
}

pub fn deregister(g: &Global, image: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    call(&client, "DeregisterImage", &[("ImageId".into(), image.to_owned())])?;
    show(g, &["image", "change"], vec![vec![image.to_owned(), "deregistered".into()]]);
    Ok(())
}

// --- keys and groups --------------------------------------------------------------------

pub fn keys(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml = call(&client, "DescribeKeyPairs", &[])?;
    let doc = Document::parse(&xml)?;
    let rows = items(doc.root_element(), "keySet")
        .into_iter()
        .map(|k| {
            let name = text(k, &["keyName"]);
            let saved = crate::keys::key_file(&name).map(|p| p.exists()).unwrap_or(false);
            vec![name, text(k, &["keyType"]), text(k, &["keyFingerprint"]), if saved { "yes" } else { "no" }.into()]
        })
        .collect();
    show(g, &["name", "type", "fingerprint", "private key saved"], rows);
    Ok(())
}

pub fn delete_key(g: &Global, name: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    call(&client, "DeleteKeyPair", &[("KeyName".into(), name.to_owned())])?;
    if let Ok(path) = crate::keys::key_file(name) {
        let _ = std::fs::remove_file(path);
    }
    show(g, &["key", "change"], vec![vec![name.to_owned(), "deleted".into()]]);
    Ok(())
}

/// A group by id or name, as the Query API wants it.
fn group_param(group: &str) -> (String, String) {
    if group.starts_with("sg-") {
        ("GroupId".into(), group.to_owned())
    } else {
        ("GroupName".into(), group.to_owned())
    }
}

pub fn groups(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml = call(&client, "DescribeSecurityGroups", &[])?;
    let doc = Document::parse(&xml)?;
    let rows = items(doc.root_element(), "securityGroupInfo")
        .into_iter()
        .map(|s| {
            let rules: Vec<String> = items(s, "ipPermissions").into_iter().map(describe_permission).collect();
            vec![text(s, &["groupId"]), text(s, &["groupName"]), text(s, &["vpcId"]), rules.join(", ")]
        })
        .collect();
    show(g, &["id", "name", "vpc", "ingress"], rows);
    Ok(())
}

fn describe_permission(p: Node<'_, '_>) -> String {
    let proto = text(p, &["ipProtocol"]);
    let (from, to) = (text(p, &["fromPort"]), text(p, &["toPort"]));
    let ports = match proto.as_str() {
        "-1" => "all".to_owned(),
        _ if from == to => format!("{from}/{proto}"),
        _ => format!("{from}-{to}/{proto}"),
    };
    let mut peers: Vec<String> = items(p, "ipRanges").into_iter().map(|r| text(r, &["cidrIp"])).collect();
    peers.extend(items(p, "groups").into_iter().map(|r| text(r, &["groupId"])));
    format!("{ports} from {}", peers.join(" "))
}

pub fn create_group(g: &Global, name: &str, description: &str, vpc: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut p = vec![("GroupName".to_owned(), name.to_owned()), ("GroupDescription".into(), description.to_owned())];
    if let Some(v) = vpc {
        p.push(("VpcId".into(), v.to_owned()));
    }
    let xml = call(&client, "CreateSecurityGroup", &p)?;
    let id = crate::client::first(&Document::parse(&xml)?, "groupId").unwrap_or_default();
    show(g, &["id", "name"], vec![vec![id, name.to_owned()]]);
    Ok(())
}

/// `22`, `80/tcp`, `8000-8080/udp`, `icmp`, `all`: a rule's protocol and ports.
pub fn parse_ports(spec: &str) -> Result<(String, Option<String>, Option<String>)> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "all" {
        return Ok(("-1".into(), None, None));
    }
    if s == "icmp" {
        return Ok(("icmp".into(), Some("-1".into()), Some("-1".into())));
    }
    let (ports, proto) = s.split_once('/').unwrap_or((s.as_str(), "tcp"));
    if !matches!(proto, "tcp" | "udp") {
        bail!("'{spec}': use PORT[/tcp|udp], FROM-TO[/tcp|udp], icmp or all");
    }
    let (from, to) = ports.split_once('-').unwrap_or((ports, ports));
    let valid = |p: &str| p.parse::<u16>().is_ok();
    if !valid(from) || !valid(to) {
        bail!("'{spec}': ports are numbers from 0 to 65535, as in 22, 80/tcp or 8000-8080/udp");
    }
    Ok((proto.to_owned(), Some(from.to_owned()), Some(to.to_owned())))
}

/// One ingress rule as `kiln sg allow|revoke` takes it.
#[derive(clap::Args, Clone, Debug)]
pub struct RuleArgs {
    pub group: String,
    pub ports: String,
    /// From this CIDR [default: 0.0.0.0/0].
    #[arg(long)]
    pub from: Option<String>,
    /// From the members of this group.
    #[arg(long, conflicts_with = "from")]
    pub from_group: Option<String>,
}

/// Authorize or revoke one ingress rule.
pub fn rule(g: &Global, r: &RuleArgs, revoke: bool) -> Result<()> {
    let (group, ports, from, from_group) =
        (r.group.as_str(), r.ports.as_str(), r.from.as_deref(), r.from_group.as_deref());
    let client = Client::new(&g.client)?;
    let (proto, lo, hi) = parse_ports(ports)?;
    let mut p = vec![group_param(group), ("IpPermissions.1.IpProtocol".into(), proto)];
    if let Some(lo) = lo {
        p.push(("IpPermissions.1.FromPort".into(), lo));
    }
    if let Some(hi) = hi {
        p.push(("IpPermissions.1.ToPort".into(), hi));
    }
    match (from, from_group) {
        (_, Some(src)) => p.push(("IpPermissions.1.Groups.1.GroupId".into(), src.to_owned())),
        (Some(cidr), None) => p.push(("IpPermissions.1.IpRanges.1.CidrIp".into(), cidr.to_owned())),
        (None, None) => p.push(("IpPermissions.1.IpRanges.1.CidrIp".into(), "0.0.0.0/0".into())),
    }
    let action = if revoke { "RevokeSecurityGroupIngress" } else { "AuthorizeSecurityGroupIngress" };
    let xml = call(&client, action, &p)?;
    let peer = from_group.or(from).unwrap_or("0.0.0.0/0");
    // EC2 answers a revoke that matches nothing with success and the unknown rules.
    let unknown = Document::parse(&xml).map(|d| !items(d.root_element(), "unknownIpPermissionSet").is_empty());
    if revoke && unknown.unwrap_or(false) {
        bail!("{group} has no rule {ports} from {peer}: see `kiln sg list`");
    }
    let change = if revoke { "revoked" } else { "allowed" };
    show(g, &["group", "rule", "change"], vec![vec![group.to_owned(), format!("{ports} from {peer}"), change.into()]]);
    Ok(())
}

pub fn delete_group(g: &Global, group: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    call(&client, "DeleteSecurityGroup", &[group_param(group)])?;
    show(g, &["group", "change"], vec![vec![group.to_owned(), "deleted".into()]]);
    Ok(())
}

// --- the catalog --------------------------------------------------------------------------

pub fn types(g: &Global, arch: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut params: Vec<(String, String)> = vec![("MaxResults".into(), "100".into())];
    if let Some(a) = arch {
        params.push(("Filter.1.Name".into(), "processor-info.supported-architecture".into()));
        params.push(("Filter.1.Value.1".into(), a.to_owned()));
    }
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        let xml = call(&client, "DescribeInstanceTypes", &params)?;
        let doc = Document::parse(&xml)?;
        for t in items(doc.root_element(), "instanceTypeSet") {
            let name = text(t, &["instanceType"]);
            let arches: Vec<String> = t
                .children()
                .find(|n| n.has_tag_name("processorInfo"))
                .map(|p| {
                    items(p, "supportedArchitectures").into_iter().filter_map(|a| a.text().map(str::to_owned)).collect()
                })
                .unwrap_or_default();
            let mem: f64 = text(t, &["memoryInfo", "sizeInMiB"]).parse().unwrap_or(0.0);
            rows.insert(
                name.clone(),
                vec![name, text(t, &["vCpuInfo", "defaultVCpus"]), format!("{:.1}", mem / 1024.0), arches.join(",")],
            );
        }
        match crate::client::first(&doc, "nextToken") {
            Some(tok) => {
                params.retain(|(k, _)| k != "NextToken");
                params.push(("NextToken".into(), tok));
            }
            None => break,
        }
    }
    show(g, &["type", "vcpus", "memory gib", "architectures"], rows.into_values().collect());
    Ok(())
}

pub fn regions(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml = call(&client, "DescribeRegions", &[])?;
    let doc = Document::parse(&xml)?;
    let mut rows = Vec::new();
    for r in items(doc.root_element(), "regionInfo") {
        let name = text(r, &["regionName"]);
        let zones_xml = Client::new(&ClientArgs { region: Some(name.clone()), ..g.client.clone() })?
            .call("DescribeAvailabilityZones", &[])?;
        let zdoc = Document::parse(&zones_xml)?;
        let zones: Vec<String> =
            items(zdoc.root_element(), "availabilityZoneInfo").into_iter().map(|z| text(z, &["zoneName"])).collect();
        rows.push(vec![name, text(r, &["regionEndpoint"]), zones.join(" ")]);
    }
    show(g, &["region", "endpoint", "zones"], rows);
    Ok(())
}

/// The supported actions as a Markdown table, by area, from the wire crate's own list
/// (the README carries this table; a test keeps the two the same).
pub fn actions_table() -> String {
    let areas = [
        ("account", "Regions"),
        ("instance_types", "Instance types"),
        ("key_pairs", "Key pairs"),
        ("vpcs", "VPCs"),
        ("routing", "Routing and addresses"),
        ("interfaces", "Network interfaces"),
        ("volumes", "Volumes"),
        ("security_groups", "Security groups"),
        ("tags", "Tags"),
        ("images", "Images"),
        ("instances", "Instances"),
        ("placement_groups", "Placement groups"),
        ("launch_templates", "Launch templates"),
    ];
    let mut out = String::from("| Area | Actions |\n|---|---|\n");
    for (module, title) in areas {
        let names: Vec<&str> = kiln_ec2::requests::ACTION_MODULES
            .iter()
            .filter(|(_, ty)| ty.split("::").next().map(str::trim) == Some(module))
            .map(|(name, _)| *name)
            .collect();
        out.push_str(&format!("| {title} | {} |\n", names.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_exactly_the_actions_kiln_serves() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("<!-- actions:begin -->\n").expect("the README marks its actions table");
        let end = readme.find("<!-- actions:end -->").expect("the README marks its actions table's end");
        let table = &readme[start + "<!-- actions:begin -->\n".len()..end];
        assert_eq!(table, actions_table(), "regenerate the README's table with `kiln actions`");
        // Each area's row lists its actions separated by ", ": one more name than commas.
        let listed = actions_table().matches(", ").count() + actions_table().lines().count() - 2;
        assert_eq!(listed, kiln_ec2::requests::ACTIONS.len(), "every action belongs to an area");
    }

    #[test]
    fn port_specs() {
        assert_eq!(parse_ports("22").expect("22"), ("tcp".into(), Some("22".into()), Some("22".into())));
        assert_eq!(
            parse_ports("8000-8080/udp").expect("range"),
            ("udp".into(), Some("8000".into()), Some("8080".into()))
        );
        assert_eq!(parse_ports("all").expect("all").0, "-1");
        assert!(parse_ports("99999").is_err());
        assert!(parse_ports("22/sctp").is_err());
    }
}
