//! The CLI's EC2 client: it talks to a Kiln server through the API with signed
//! requests, exactly as any SDK would (no back door into the store). Credentials,
//! region and endpoint are found the way the AWS CLI finds them, with the local data
//! directory's files as the last resort so `kiln` works next to `kiln serve`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where to reach the API and as whom, as the AWS CLI spells it.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientArgs {
    /// The API's URL [default: $AWS_ENDPOINT_URL_EC2, $AWS_ENDPOINT_URL, or http://127.0.0.1:8787].
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The profile in the shared credentials file [default: $AWS_PROFILE or default].
    #[arg(long)]
    pub profile: Option<String>,
    /// The region [default: $AWS_REGION, the profile's region, or us-east-1].
    #[arg(long)]
    pub region: Option<String>,
}

/// A signed connection to one endpoint, region and key.
pub struct Client {
    endpoint: String,
    pub region: String,
    key: (String, String),
    http: reqwest::blocking::Client,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// A file named by an environment variable, else `~/.aws/NAME`, else the data
/// directory's own.
fn aws_file(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = env(var) {
        return Some(PathBuf::from(p));
    }
    let user = home().map(|h| h.join(".aws").join(name)).filter(|p| p.exists());
    user.or_else(|| crate::data_dir::resolve(None).ok().map(|d| d.join(name)).filter(|p| p.exists()))
}

fn ini_value(path: &Path, section: &str, key: &str) -> Option<String> {
    let ini = ini::Ini::load_from_file(path).ok()?;
    ini.section(Some(section)).and_then(|s| s.get(key)).map(str::to_owned)
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Self> {
        let profile = args.profile.clone().or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
        let key = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) if args.profile.is_none() => (id, secret),
            _ => {
                let file = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials").context(
                    "no credentials: set AWS_SHARED_CREDENTIALS_FILE (kiln serve writes DATA_DIR/credentials) \
                     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                )?;
                let id = ini_value(&file, &profile, "aws_access_key_id");
                let secret = ini_value(&file, &profile, "aws_secret_access_key");
                match (id, secret) {
                    (Some(id), Some(secret)) => (id, secret),
                    _ => bail!("the profile [{profile}] in {} has no access key", file.display()),
                }
            }
        };
        let config_section = if profile == "default" { "default".to_owned() } else { format!("profile {profile}") };
        let region = args
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| aws_file("AWS_CONFIG_FILE", "config").and_then(|f| ini_value(&f, &config_section, "region")))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = args
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_EC2"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| "http://127.0.0.1:8787".into());
        let http = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
        Ok(Self { endpoint: endpoint.trim_end_matches('/').to_owned(), region, key, http })
    }

    /// Calls one action; returns the response's XML, or the EC2 error as a message
    /// that says what to do.
    pub fn call(&self, action: &str, params: &[(&str, String)]) -> Result<String> {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("Action", action).append_pair("Version", "2016-11-15");
        for (k, v) in params {
            body.append_pair(k, v);
        }
        let body = body.finish();
        let url = reqwest::Url::parse(&self.endpoint).with_context(|| format!("bad endpoint {}", self.endpoint))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => bail!("the endpoint {} has no host", self.endpoint),
        };
        let headers = kiln_ec2::sigv4::sign_headers(
            &self.key.0,
            &self.key.1,
            &self.region,
            &host,
            body.as_bytes(),
            chrono::Utc::now(),
        );
        let mut req = self.http.post(url).body(body);
        for (k, v) in headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req.send().with_context(|| {
            format!("cannot reach Kiln at {}: is `kiln serve` running? (or give --endpoint)", self.endpoint)
        })?;
        let status = resp.status();
        let text = resp.text()?;
        if !status.is_success() {
            let doc = roxmltree::Document::parse(&text).ok();
            let field = |name: &str| doc.as_ref().and_then(|d| first(d, name)).unwrap_or_default();
            bail!("{action} failed: {} ({})", field("Message"), field("Code"));
        }
        Ok(text)
    }
}

/// The text of the first element called `name`.
pub fn first(doc: &roxmltree::Document<'_>, name: &str) -> Option<String> {
    doc.descendants().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::to_owned)
}

/// The text of the first child element called `name` of `node`.
pub fn child(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::to_owned)
}
