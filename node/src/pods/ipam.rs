//! Pod IP allocation from the node's pod CIDR (IPv4). The network address,
//! the first host address (the node's gateway) and the broadcast address are
//! never handed out.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::error::NodeError;

/// A parsed IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl PodCidr {
    /// Parses `a.b.c.d/n` (n between 8 and 30).
    pub fn parse(s: &str) -> Result<PodCidr, NodeError> {
        let bad = || {
            NodeError::Config(format!(
                "pod CIDR {s:?} is not an IPv4 CIDR like 10.42.0.0/24"
            ))
        };
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(PodCidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// Host addresses usable for pods.
    pub fn pod_range(&self) -> (u32, u32) {
        let base = u32::from(self.base);
        let size = 1u32 << (32 - self.prefix);
        (base + 2, base + size - 2)
    }

    /// Whether `ip` is inside the CIDR.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }
}

/// Hands out pod IPs by pod uid; thread-safe.
#[derive(Debug)]
pub struct Ipam {
    cidr: PodCidr,
    inner: Mutex<IpamState>,
}

#[derive(Debug, Default)]
struct IpamState {
    by_uid: HashMap<String, Ipv4Addr>,
    used: BTreeSet<u32>,
    next: u32,
}

impl Ipam {
    pub fn new(cidr: PodCidr) -> Ipam {
        let (first, _) = cidr.pod_range();
        Ipam {
            cidr,
            inner: Mutex::new(IpamState {
                next: first,
                ..Default::default()
            }),
        }
    }

    /// The pod's IP: its existing one, `preferred` when free and inside the CIDR, else the next free one.
    pub fn allocate(&self, uid: &str, preferred: Option<Ipv4Addr>) -> Result<Ipv4Addr, NodeError> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = s.by_uid.get(uid) {
            return Ok(*ip);
        }
        let (first, last) = self.cidr.pod_range();
        let pick = match preferred.map(u32::from) {
            Some(p) if (first..=last).contains(&p) && !s.used.contains(&p) => Some(p),
            _ => {
                let span = last - first + 1;
                (0..span)
                    .map(|i| first + (s.next - first + i) % span)
                    .find(|c| !s.used.contains(c))
            }
        };
        let ip = pick.ok_or_else(|| {
            NodeError::Invalid(format!(
                "pod CIDR {}/{} is exhausted",
                self.cidr.base, self.cidr.prefix
            ))
        })?;
        s.used.insert(ip);
        s.next = if ip >= last { first } else { ip + 1 };
        let ip = Ipv4Addr::from(ip);
        s.by_uid.insert(uid.to_string(), ip);
        Ok(ip)
    }

    /// Returns the pod's IP to the pool.
    pub fn release(&self, uid: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = s.by_uid.remove(uid) {
            s.used.remove(&u32::from(ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let c = PodCidr::parse("10.42.0.7/24").unwrap();
        assert_eq!(c.base, Ipv4Addr::new(10, 42, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 42, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 1, 1)));
        assert!(PodCidr::parse("10.42.0.0").is_err());
        assert!(PodCidr::parse("10.42.0.0/31").is_err());
    }

    #[test]
    fn allocates_stably_skips_reserved_and_reuses_released() {
        let ipam = Ipam::new(PodCidr::parse("10.0.0.0/29").unwrap());
        let a = ipam.allocate("a", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(ipam.allocate("a", None).unwrap(), a);
        let ips: Vec<_> = ["b", "c", "d", "e"]
            .iter()
            .map(|u| ipam.allocate(u, None).unwrap())
            .collect();
        assert_eq!(ips.last(), Some(&Ipv4Addr::new(10, 0, 0, 6)));
        assert!(ipam.allocate("f", None).is_err());
        ipam.release("c");
        assert_eq!(
            ipam.allocate("f", None).unwrap(),
            Ipv4Addr::new(10, 0, 0, 4)
        );
    }

    #[test]
    fn honours_a_preferred_free_address() {
        let ipam = Ipam::new(PodCidr::parse("10.0.0.0/24").unwrap());
        let want = Ipv4Addr::new(10, 0, 0, 77);
        assert_eq!(ipam.allocate("a", Some(want)).unwrap(), want);
        assert_ne!(ipam.allocate("b", Some(want)).unwrap(), want);
    }
}
