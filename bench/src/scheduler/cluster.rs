//! The synthetic cluster of the scheduler benchmarks, as Kubernetes JSON:
//! nodes of mixed sizes across zones (some tainted, some OCI-capable, a few
//! cached images) and pods grouped in apps of 100 replicas whose scheduling
//! constraints follow a fixed mix (`Kind`). Deterministic for a given seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Zones the nodes are spread over (three regions).
pub const ZONES: usize = 12;
/// Pods per app (a Deployment's replicas).
pub const REPLICAS: usize = 100;
/// Namespaces the apps live in.
const NAMESPACES: usize = 20;
/// Images the apps use; nodes cache a few of them.
const IMAGES: usize = 40;

/// The scheduling constraints of one app, by share of the apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Requests only (45%).
    Plain,
    /// nodeSelector on zone or instance type (15%).
    NodeSelector,
    /// Required node affinity (zones In [...]) plus a preferred term (10%).
    NodeAffinity,
    /// Tolerates the `dedicated=batch` taint and selects those nodes (5%).
    Tolerations,
    /// Topology spread over zones, ScheduleAnyway (10%).
    SpreadSoft,
    /// Topology spread over zones and hosts, DoNotSchedule (5%).
    SpreadHard,
    /// Required pod anti-affinity with its own app per host (5%).
    AntiAffinity,
    /// Preferred pod anti-affinity with its own app per zone (5%).
    PreferredAntiAffinity,
}

impl Kind {
    /// The kind of the `app`-th app (a fixed cycle of 20).
    pub fn of_app(app: usize) -> Kind {
        match app % 20 {
            0..9 => Kind::Plain,
            9..12 => Kind::NodeSelector,
            12 | 13 => Kind::NodeAffinity,
            14 => Kind::Tolerations,
            15 | 16 => Kind::SpreadSoft,
            17 => Kind::SpreadHard,
            18 => Kind::AntiAffinity,
            _ => Kind::PreferredAntiAffinity,
        }
    }

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Plain => "requests only",
            Kind::NodeSelector => "nodeSelector",
            Kind::NodeAffinity => "node affinity (required + preferred)",
            Kind::Tolerations => "tolerations + nodeSelector",
            Kind::SpreadSoft => "topology spread, ScheduleAnyway",
            Kind::SpreadHard => "topology spread, DoNotSchedule",
            Kind::AntiAffinity => "required pod anti-affinity (host)",
            Kind::PreferredAntiAffinity => "preferred pod anti-affinity (zone)",
        }
    }
}

fn zone(i: usize) -> String {
    format!("zone-{}", i % ZONES)
}

fn region(i: usize) -> String {
    format!("region-{}", (i % ZONES) / 4)
}

fn image(i: usize, wasm: bool) -> String {
    if wasm {
        format!("registry.example/apps/app-{}.wasm", i % IMAGES)
    } else {
        format!("registry.example/apps/app-{}:1.0", i % IMAGES)
    }
}

/// A node as the API would hold it: Ready, labelled like a skiff node agent
/// (hostname, os/arch, zone/region, instance type, runtimes), with
/// `cpu` cores, `memory_gi` GiB and room for `pods` pods.
pub fn node(name: &str, index: usize, cpu: u32, memory_gi: u32, pods: u32) -> Value {
    let resources = json!({
        "cpu": cpu.to_string(),
        "memory": format!("{memory_gi}Gi"),
        "pods": pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": zone(index),
            "topology.kubernetes.io/region": region(index),
            "node.kubernetes.io/instance-type": format!("c{cpu}-m{memory_gi}"),
            "skiff.dev/runtime-wasm": "true",
        }},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }],
        },
    })
}

/// `count` nodes: 8–64 cores at 4 or 8 GiB per core, 110 pods each, half
/// of them OCI-capable, 5% tainted `dedicated=batch:NoSchedule`, 5%
/// `spot:PreferNoSchedule`, each caching three of the apps' images.
pub fn nodes(count: usize, seed: u64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let cpu = [8, 16, 32, 48, 64][rng.gen_range(0..5)];
            let memory = cpu * if rng.gen_bool(0.3) { 8 } else { 4 };
            let mut n = node(&format!("node-{i:05}"), i, cpu, memory, 110);
            let labels = &mut n["metadata"]["labels"];
            if rng.gen_bool(0.5) {
                labels["skiff.dev/runtime-oci"] = json!("true");
            }
            let mut taints = Vec::new();
            match rng.gen_range(0..20) {
                0 => {
                    labels["dedicated"] = json!("batch");
                    taints.push(json!({"key": "dedicated", "value": "batch", "effect": "NoSchedule"}));
                }
                1 => taints.push(json!({"key": "spot", "value": "true", "effect": "PreferNoSchedule"})),
                _ => {}
            }
            n["spec"]["taints"] = json!(taints);
            let images: Vec<Value> = (0..3)
                .map(|_| {
                    let k = rng.gen_range(0..IMAGES);
                    json!({ "names": [image(k, true), image(k, false)], "sizeBytes": rng.gen_range(20..400) << 20 })
                })
                .collect();
            n["status"]["images"] = json!(images);
            n
        })
        .collect()
}

fn app_selector(app: &str) -> Value {
    json!({ "matchLabels": { "app": app } })
}

/// The spec fields that carry the constraints of `kind` for `app`.
fn constraints(kind: Kind, app_index: usize, app: &str) -> Value {
    let zone_key = "topology.kubernetes.io/zone";
    match kind {
        Kind::Plain => json!({}),
        Kind::NodeSelector if app_index.is_multiple_of(2) => {
            json!({ "nodeSelector": { zone_key: zone(app_index / 20) } })
        }
        Kind::NodeSelector => {
            json!({ "nodeSelector": { "node.kubernetes.io/instance-type": "c32-m128" } })
        }
        Kind::NodeAffinity => json!({ "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{
                "matchExpressions": [{ "key": zone_key, "operator": "In",
                    "values": [zone(app_index), zone(app_index + 1), zone(app_index + 2)] }],
            }]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 50, "preference": {
                "matchExpressions": [{ "key": "node.kubernetes.io/instance-type", "operator": "In",
                    "values": ["c64-m256", "c64-m512", "c48-m192", "c48-m384"] }],
            }}],
        }}}),
        Kind::Tolerations => json!({
            "nodeSelector": { "dedicated": "batch" },
            "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule" }],
        }),
        Kind::SpreadSoft => json!({ "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": zone_key, "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": app_selector(app),
        }]}),
        Kind::SpreadHard => json!({ "topologySpreadConstraints": [
            { "maxSkew": 1, "topologyKey": zone_key, "whenUnsatisfiable": "DoNotSchedule",
              "labelSelector": app_selector(app) },
            { "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
              "labelSelector": app_selector(app) },
        ]}),
        Kind::AntiAffinity => json!({ "affinity": { "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname", "labelSelector": app_selector(app),
            }],
        }}}),
        Kind::PreferredAntiAffinity => json!({ "affinity": { "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 100, "podAffinityTerm": {
                "topologyKey": zone_key, "labelSelector": app_selector(app),
            }}],
        }}}),
    }
}

/// A pending pod of `app` (no nodeName) with `constraints` merged into its spec.
pub fn pod(namespace: &str, name: &str, app: &str, image: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace,
                      "labels": { "app": app, "tier": "backend" } },
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [{ "name": "main", "image": image,
                "resources": { "requests": { "cpu": cpu, "memory": memory } } }],
        },
    })
}

/// `count` pending pods in apps of `REPLICAS`, app after app (as
/// Deployments create them), with their kinds.
pub fn pods(count: usize, seed: u64) -> Vec<(Kind, Value)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9);
    let cpus = ["100m", "250m", "500m", "1", "2"];
    let memories = ["128Mi", "256Mi", "512Mi", "1Gi", "2Gi"];
    let mut out = Vec::with_capacity(count);
    let mut app_index = 0;
    while out.len() < count {
        let kind = Kind::of_app(app_index);
        let app = format!("app-{app_index}");
        let namespace = format!("ns-{}", app_index % NAMESPACES);
        // A third of the apps are OCI containers; the rest are wasm.
        let img = image(app_index, app_index % 3 != 0);
        let (cpu, memory) = (cpus[rng.gen_range(0..5)], memories[rng.gen_range(0..5)]);
        let extra = constraints(kind, app_index, &app);
        for r in 0..REPLICAS.min(count - out.len()) {
            let name = format!("{app}-{r}");
            let mut p = pod(&namespace, &name, &app, &img, cpu, memory);
            p["metadata"]["uid"] = json!(format!("uid-{namespace}-{name}"));
            if let Value::Object(fields) = &extra {
                for (k, v) in fields {
                    p["spec"][k] = v.clone();
                }
            }
            out.push((kind, p));
        }
        app_index += 1;
    }
    out
}
