//! Service ClusterIP (10.43.0.0/16, as k3s) and NodePort (30000-32767)
//! allocation. Each allocated value has a reservation key in the store,
//! written in the same transaction as the Service, so two API servers can
//! never hand out the same address.

use std::net::Ipv4Addr;

use rand::Rng as _;
use serde_json::{Value, json};

use super::error::{ApiError, StatusCause};
use super::objects::SideEffects;
use crate::store::{Compare, Store, TxnOp};

/// The service CIDR's network address (10.43.0.0/16).
const SERVICE_NET: [u8; 2] = [10, 43];
/// The ClusterIP of the `kubernetes` Service.
pub const KUBERNETES_SERVICE_IP: &str = "10.43.0.1";
/// The ClusterIP reserved for cluster DNS.
pub const DNS_SERVICE_IP: &str = "10.43.0.10";
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn ip_key(ip: &str) -> String {
    format!("/registry/core/serviceips/{ip}")
}

fn port_key(port: i64) -> String {
    format!("/registry/core/servicenodeports/{port}")
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: name.into(),
        causes: vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"{value}\": {detail}"),
            field: field.into(),
        }],
    }
}

fn in_range(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>().is_ok_and(|a| {
        a.octets()[..2] == SERVICE_NET && a.octets()[2..] != [0, 0] && a.octets()[2..] != [255, 255]
    })
}

async fn taken(store: &Store, key: &str) -> Result<bool, ApiError> {
    Ok(store.get(key).await?.is_some())
}

fn reserve(side: &mut SideEffects, key: String, owner: &str) {
    side.compares.push(Compare::ModRevision {
        key: key.clone(),
        equals: 0,
    });
    side.ops.push(TxnOp::Put {
        key,
        value: owner.as_bytes().to_vec(),
    });
}

fn kind_of(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(kind_of(svc), "NodePort" | "LoadBalancer")
}

async fn allocate_ip(
    store: &Store,
    svc: &mut Value,
    name: &str,
    owner: &str,
    side: &mut SideEffects,
) -> Result<(), ApiError> {
    if kind_of(svc) == "ExternalName" {
        return Ok(());
    }
    let requested = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if requested == "None" {
        svc["spec"]["clusterIPs"] = json!(["None"]);
        return Ok(());
    }
    let ip = if requested.is_empty() {
        let mut found = None;
        for _ in 0..64 {
            let n: u16 = rand::thread_rng().gen_range(2..0xfffe);
            let ip =
                Ipv4Addr::new(SERVICE_NET[0], SERVICE_NET[1], (n >> 8) as u8, n as u8).to_string();
            if ip != DNS_SERVICE_IP && !taken(store, &ip_key(&ip)).await? {
                found = Some(ip);
                break;
            }
        }
        found.ok_or_else(|| {
            ApiError::Internal("failed to allocate a service IP: range is full".into())
        })?
    } else {
        if !in_range(&requested) {
            return Err(invalid(
                name,
                "spec.clusterIPs",
                &requested,
                "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16",
            ));
        }
        if taken(store, &ip_key(&requested)).await? {
            return Err(invalid(
                name,
                "spec.clusterIPs",
                &requested,
                "failed to allocate IP: provided IP is already allocated",
            ));
        }
        requested
    };
    reserve(side, ip_key(&ip), owner);
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
    Ok(())
}

async fn allocate_node_ports(
    store: &Store,
    svc: &mut Value,
    name: &str,
    owner: &str,
    keep: &[i64],
    side: &mut SideEffects,
) -> Result<(), ApiError> {
    if !wants_node_ports(svc) {
        return Ok(());
    }
    let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let mut used: Vec<i64> = ports
        .iter()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter(|n| *n != 0)
        .collect();
    for (i, p) in ports.iter_mut().enumerate() {
        match p["nodePort"].as_i64().filter(|n| *n != 0) {
            Some(n) if keep.contains(&n) => {}
            Some(n) => {
                if taken(store, &port_key(n)).await? {
                    return Err(invalid(
                        name,
                        &format!("spec.ports[{i}].nodePort"),
                        &n.to_string(),
                        "provided port is already allocated",
                    ));
                }
                reserve(side, port_key(n), owner);
            }
            None => {
                let mut found = None;
                for _ in 0..64 {
                    let n = rand::thread_rng().gen_range(NODE_PORTS);
                    if !used.contains(&n) && !taken(store, &port_key(n)).await? {
                        found = Some(n);
                        break;
                    }
                }
                let n = found.ok_or_else(|| {
                    ApiError::Internal("failed to allocate a node port: range is full".into())
                })?;
                used.push(n);
                reserve(side, port_key(n), owner);
                p["nodePort"] = json!(n);
            }
        }
    }
    Ok(())
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter(|n| *n != 0)
        .collect()
}

fn cluster_ip(svc: &Value) -> Option<&str> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// Allocates a new Service's ClusterIP and NodePorts (writing them into `svc`).
pub async fn on_create(
    store: &Store,
    svc: &mut Value,
    owner_key: &str,
) -> Result<SideEffects, ApiError> {
    let name = super::meta::name(svc).unwrap_or("").to_string();
    let mut side = SideEffects::default();
    allocate_ip(store, svc, &name, owner_key, &mut side).await?;
    allocate_node_ports(store, svc, &name, owner_key, &[], &mut side).await?;
    Ok(side)
}

/// Carries allocations over an update (clients may omit them), allocates
/// what the new spec needs and releases what it no longer uses.
pub async fn on_update(
    store: &Store,
    old: &Value,
    new: &mut Value,
    owner_key: &str,
) -> Result<SideEffects, ApiError> {
    let name = super::meta::name(new).unwrap_or("").to_string();
    let mut side = SideEffects::default();
    let new_external = kind_of(new) == "ExternalName";
    if !new_external
        && new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        && let Some(ip) = old.pointer("/spec/clusterIP").cloned()
    {
        new["spec"]["clusterIP"] = ip;
        if let Some(ips) = old.pointer("/spec/clusterIPs").cloned() {
            new["spec"]["clusterIPs"] = ips;
        }
    }
    if cluster_ip(new).is_none() || cluster_ip(old) != cluster_ip(new) {
        if let Some(ip) = cluster_ip(old) {
            side.ops.push(TxnOp::Delete { key: ip_key(ip) });
        }
        if !new_external
            && cluster_ip(new) != cluster_ip(old)
            && new.pointer("/spec/clusterIP") != Some(&json!("None"))
        {
            if cluster_ip(new).is_some() && cluster_ip(old).is_some() {
                // Validation rejects a changed clusterIP; nothing to allocate.
            } else {
                allocate_ip(store, new, &name, owner_key, &mut side).await?;
            }
        }
    }
    // Keep node ports of unchanged ports when the client omitted them.
    if wants_node_ports(new) {
        let old_ports = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports
                .iter_mut()
                .filter(|p| p["nodePort"].as_i64().is_none_or(|n| n == 0))
            {
                let same = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"]);
                if let Some(n) = same.and_then(|o| o["nodePort"].as_i64()) {
                    p["nodePort"] = json!(n);
                }
            }
        }
    }
    let old_ports = node_ports(old);
    allocate_node_ports(store, new, &name, owner_key, &old_ports, &mut side).await?;
    let new_ports = node_ports(new);
    for p in old_ports
        .into_iter()
        .filter(|p| !new_ports.contains(p) || !wants_node_ports(new))
    {
        side.ops.push(TxnOp::Delete { key: port_key(p) });
    }
    Ok(side)
}

/// Releases a deleted Service's allocations.
pub fn on_delete(svc: &Value) -> SideEffects {
    let mut side = SideEffects::default();
    if let Some(ip) = cluster_ip(svc) {
        side.ops.push(TxnOp::Delete { key: ip_key(ip) });
    }
    for p in node_ports(svc) {
        side.ops.push(TxnOp::Delete { key: port_key(p) });
    }
    side
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks() {
        assert!(in_range("10.43.0.1"));
        assert!(in_range("10.43.200.7"));
        assert!(!in_range("10.44.0.1"));
        assert!(!in_range("10.43.0.0"));
        assert!(!in_range("nope"));
    }

    #[test]
    fn delete_releases_everything() {
        let svc =
            json!({"spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 80, "nodePort": 30080}]}});
        let side = on_delete(&svc);
        assert_eq!(side.ops.len(), 2);
        let headless = json!({"spec": {"clusterIP": "None"}});
        assert!(on_delete(&headless).ops.is_empty());
    }
}
