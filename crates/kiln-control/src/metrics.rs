//! The process's metrics in Prometheus's text format (served at `/metrics`): API
//! requests by action and outcome with their latency, workflow steps by kind and
//! outcome, reconciler pass times, and the database pool, through the `prometheus-client`
//! crate (the Prometheus project's own).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Cloud;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    action: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    kind: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    state: &'static str,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ActionLabel, Histogram>,
    steps: Family<StepLabels, Counter>,
    passes: Histogram,
    pool: Family<PoolLabel, Gauge>,
    leads: Gauge,
}

/// Request and pass latencies: 1 ms to about 33 s.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("kiln");
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register(
        "requests",
        "API requests by action and outcome (ok, client_error, server_error)",
        requests.clone(),
    );
    let latency = Family::<ActionLabel, Histogram>::new_with_constructor(|| Histogram::new(buckets()));
    registry.register("request_duration_seconds", "API request latency by action", latency.clone());
    let steps = Family::<StepLabels, Counter>::default();
    registry.register("workflow_steps", "Workflow steps run by kind and outcome (ok, retry, failed)", steps.clone());
    let passes = Histogram::new(buckets());
    registry.register("reconcile_pass_duration_seconds", "Reconciler pass time", passes.clone());
    let pool = Family::<PoolLabel, Gauge>::default();
    registry.register("db_connections", "Database connections by state (open, idle)", pool.clone());
    let leads = Gauge::default();
    registry.register("host_work_leader", "1 while this server holds the host-work lease", leads.clone());
    Metrics { registry, requests, latency, steps, passes, pool, leads }
});

/// Counts one API request; `action` must be a known action's name (or `other`), so
/// that a caller cannot grow the label set.
pub fn request(action: &str, status: u16, took: Duration) {
    let outcome = match status {
        200..=399 => "ok",
        400..=499 => "client_error",
        _ => "server_error",
    };
    let m = &*METRICS;
    m.requests.get_or_create(&RequestLabels { action: action.to_owned(), outcome }).inc();
    m.latency.get_or_create(&ActionLabel { action: action.to_owned() }).observe(took.as_secs_f64());
}

/// Counts one workflow step.
pub fn workflow_step(kind: &str, outcome: &'static str) {
    METRICS.steps.get_or_create(&StepLabels { kind: kind.to_owned(), outcome }).inc();
}

/// Records one reconciler pass.
pub fn reconcile_pass(took: Duration) {
    METRICS.passes.observe(took.as_secs_f64());
}

/// Records whether this server holds the host-work lease.
pub fn leading(yes: bool) {
    METRICS.leads.set(i64::from(yes));
}

/// Everything, in Prometheus's text exposition format, the pool read now.
pub fn render(cloud: &Cloud) -> String {
    let m = &*METRICS;
    let (open, idle) = cloud.store.pool_state();
    m.pool.get_or_create(&PoolLabel { state: "open" }).set(i64::from(open));
    m.pool.get_or_create(&PoolLabel { state: "idle" }).set(i64::from(idle));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    out
}
