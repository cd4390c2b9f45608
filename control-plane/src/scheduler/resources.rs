//! Resource arithmetic for scheduling: Kubernetes quantity parsing, the
//! `Resources` vector (cpu in millicores, memory and ephemeral storage in
//! bytes, pod count, extended resources) and a pod's effective request with
//! the init-container and sidecar rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Parses a Kubernetes quantity ("100m", "1.5", "128Mi", "1e3") into base
/// units as f64; `None` when malformed.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(num * mult)
}

/// A quantity in milli-units (cpu → millicores), rounded up.
pub fn quantity_milli(q: &Quantity) -> i64 {
    parse_quantity(&q.0).map_or(0, |v| ceil_exact(v * 1000.0))
}

/// Rounds up, but treats float noise (`9m` parses to 0.009, ×1000 gives
/// 9.000000000000002) as the exact value it stands for.
fn ceil_exact(v: f64) -> i64 {
    let nearest = v.round();
    if (v - nearest).abs() < 1e-6 {
        nearest as i64
    } else {
        v.ceil() as i64
    }
}

/// A quantity in whole units (bytes, counts), rounded up.
pub fn quantity_value(q: &Quantity) -> i64 {
    parse_quantity(&q.0).map_or(0, |v| v.ceil() as i64)
}

/// A resource vector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended resources (e.g. `example.com/gpu`), in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `resources.requests`/`allocatable`-style map.
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (k, v) in map {
            r.set(k, v);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = quantity_milli(q),
            "memory" => self.memory = quantity_value(q),
            "ephemeral-storage" => self.ephemeral_storage = quantity_value(q),
            "pods" => self.pods = quantity_value(q),
            n if is_extended(n) => {
                self.scalar.insert(n.to_string(), quantity_value(q));
            }
            _ => {}
        }
    }

    /// Adds `o` component-wise.
    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `o` component-wise.
    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Component-wise maximum.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Extended resources are domain-prefixed names outside kubernetes.io, plus hugepages.
fn is_extended(name: &str) -> bool {
    (name.contains('/') && !name.starts_with("kubernetes.io/")) || name.starts_with("hugepages-")
}

/// Default request assumed for scoring when a container requests no cpu (100m).
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Default request assumed for scoring when a container requests no memory (200Mi).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A container's requests; limits stand in for missing requests as API defaulting does.
fn container_requests(res: Option<&ResourceRequirements>) -> (Resources, i64, i64) {
    let mut r = Resources::default();
    if let Some(res) = res {
        if let Some(l) = &res.limits {
            r = Resources::from_map(l);
        }
        if let Some(q) = &res.requests {
            for (k, v) in q {
                r.set(k, v);
            }
        }
    }
    let nz_cpu = if r.milli_cpu == 0 {
        DEFAULT_MILLI_CPU
    } else {
        r.milli_cpu
    };
    let nz_mem = if r.memory == 0 {
        DEFAULT_MEMORY
    } else {
        r.memory
    };
    (r, nz_cpu, nz_mem)
}

/// The effective request of a pod: max(sum of app containers + sidecars,
/// each init container + the sidecars started before it) + overhead.
/// Returns (requests, non-zero cpu, non-zero memory) where the non-zero
/// values substitute defaults for unset requests (used only for scoring).
pub fn pod_requests(spec: &PodSpec) -> (Resources, i64, i64) {
    let mut sum = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0, 0);
    let mut add = |c: &Container, sum: &mut Resources| {
        let (r, c_cpu, c_mem) = container_requests(c.resources.as_ref());
        sum.add(&r);
        nz_cpu += c_cpu;
        nz_mem += c_mem;
    };
    for c in &spec.containers {
        add(c, &mut sum);
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    let (mut init_nz_cpu, mut init_nz_mem) = (0, 0);
    for c in spec.init_containers.iter().flatten() {
        let (r, c_cpu, c_mem) = container_requests(c.resources.as_ref());
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            add(c, &mut sum);
        } else {
            let mut at = sidecars.clone();
            at.add(&r);
            init_max.max_with(&at);
            init_nz_cpu = init_nz_cpu.max(c_cpu);
            init_nz_mem = init_nz_mem.max(c_mem);
        }
    }
    sum.max_with(&init_max);
    nz_cpu = nz_cpu.max(init_nz_cpu);
    nz_mem = nz_mem.max(init_nz_mem);
    if let Some(o) = &spec.overhead {
        let o = Resources::from_map(o);
        sum.add(&o);
        nz_cpu += o.milli_cpu;
        nz_mem += o.memory;
    }
    (sum, nz_cpu, nz_mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_cpu_is_exact_for_every_milli_value() {
        for m in 1..4000 {
            let q = Quantity(format!("{m}m"));
            assert_eq!(quantity_milli(&q), m, "{m}m");
        }
        assert_eq!(quantity_milli(&Quantity("0.5".into())), 500);
        assert_eq!(
            quantity_milli(&Quantity("1500u".into())),
            2,
            "fractions of a milli round up"
        );
    }

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn parses_quantities() {
        assert_eq!(quantity_milli(&q("100m")), 100);
        assert_eq!(quantity_milli(&q("1.5")), 1500);
        assert_eq!(quantity_value(&q("128Mi")), 128 * 1024 * 1024);
        assert_eq!(quantity_value(&q("1G")), 1_000_000_000);
        assert_eq!(quantity_value(&q("1e3")), 1000);
        assert_eq!(quantity_value(&q("bogus")), 0);
    }

    fn container(cpu: &str, mem: &str, sidecar: bool) -> Container {
        Container {
            name: "c".into(),
            restart_policy: sidecar.then(|| "Always".into()),
            resources: Some(ResourceRequirements {
                requests: Some(
                    [("cpu".to_string(), q(cpu)), ("memory".to_string(), q(mem))].into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn init_containers_take_the_max_and_sidecars_add_up() {
        let spec = PodSpec {
            containers: vec![
                container("100m", "100Mi", false),
                container("200m", "50Mi", false),
            ],
            init_containers: Some(vec![
                container("500m", "10Mi", false),
                container("50m", "20Mi", true),
                container("100m", "400Mi", false),
            ]),
            ..Default::default()
        };
        let (r, _, _) = pod_requests(&spec);
        // app + sidecar = 350m / 170Mi; init 1 = 500m; init 3 + sidecar = 150m / 420Mi.
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.memory, 420 * 1024 * 1024);
    }

    #[test]
    fn nonzero_defaults_apply_to_unset_requests() {
        let spec = PodSpec {
            containers: vec![Container::default()],
            ..Default::default()
        };
        let (r, cpu, mem) = pod_requests(&spec);
        assert_eq!(r.milli_cpu, 0);
        assert_eq!((cpu, mem), (DEFAULT_MILLI_CPU, DEFAULT_MEMORY));
    }
}
