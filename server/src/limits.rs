//! Connection caps: how many connections one listener holds at once, in
//! all and from one source address.
//!
//! Each listener (enrollment, command channel, tunnel) has a [`Gate`]; a
//! source is an IPv4 address or an IPv6 /64. A connection is admitted with
//! a [`Permit`] that it holds for its whole life; dropping the permit frees its place. Over a cap the connection is
//! refused at once (a TCP stream is dropped before its TLS handshake, a
//! QUIC connection attempt is refused), and the refusal is counted in the
//! event log (`conn.refused`, with the listener, the source, which cap and
//! the listener's running total of refusals).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use proto::env::Env;
use proto::fields;

use crate::lock;

/// Caps of one listener; `None`: no cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections the listener holds at once, from every source together.
    pub per_listener: Option<u32>,
    /// Connections the listener holds at once from one source address.
    pub per_source: Option<u32>,
}

impl ConnLimits {
    /// No caps (the library's default, so a simulated site of thousands of
    /// agents behind one address keeps its meaning; `fleet-server` sets them).
    pub const OFF: ConnLimits = ConnLimits {
        per_listener: None,
        per_source: None,
    };
}

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `per_listener` connections.
    Listener,
    /// The source holds `per_source` connections.
    Source,
}

impl Refused {
    /// The name the event log gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Listener => "per_listener",
            Refused::Source => "per_source",
        }
    }
}

/// The key a source is counted under: an IPv4 address (an IPv4-mapped
/// IPv6 address is one), or an IPv6 address's /64 (one site's prefix: a
/// peer that owns a /64 could otherwise take a new address for each
/// connection).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_source: BTreeMap<IpAddr, u32>,
    refused: u64,
}

/// The connection counter of one listener.
#[derive(Debug)]
pub struct Gate {
    listener: &'static str,
    limits: ConnLimits,
    counts: Mutex<Counts>,
}

/// A connection's place in its listener's counts; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    // The source's key (see `source_key`).
    source: IpAddr,
}

impl Gate {
    /// The gate of the listener named `listener` (`enroll`, `channel`, ...).
    pub fn new(listener: &'static str, limits: ConnLimits) -> Arc<Gate> {
        Arc::new(Gate {
            listener,
            limits,
            counts: Mutex::default(),
        })
    }

    /// Admits a connection from `source`, or says which cap refuses it.
    pub fn try_admit(self: &Arc<Self>, source: IpAddr) -> Result<Permit, Refused> {
        let source = source_key(source);
        let mut c = lock(&self.counts);
        let from_source = c.by_source.get(&source).copied().unwrap_or(0);
        let refused = if self.limits.per_listener.is_some_and(|m| c.total >= m) {
            Some(Refused::Listener)
        } else if self.limits.per_source.is_some_and(|m| from_source >= m) {
            Some(Refused::Source)
        } else {
            None
        };
        if let Some(r) = refused {
            c.refused += 1;
            return Err(r);
        }
        c.total += 1;
        *c.by_source.entry(source).or_default() += 1;
        Ok(Permit {
            gate: self.clone(),
            source,
        })
    }

    /// [`Gate::try_admit`], with a refusal written to the event log.
    pub fn admit(self: &Arc<Self>, env: &Env, source: IpAddr) -> Option<Permit> {
        match self.try_admit(source) {
            Ok(p) => Some(p),
            Err(r) => {
                let refused = self.refused();
                env.event(
                    "conn.refused",
                    fields! {
                        "listener" => self.listener,
                        "source" => source.to_string(),
                        "cap" => r.as_str(),
                        "refused" => refused,
                    },
                );
                tracing::debug!(listener = self.listener, %source, cap = r.as_str(), refused, "connection refused");
                None
            }
        }
    }

    /// Connections held now: in all, and from `source`.
    pub fn held(&self, source: IpAddr) -> (u32, u32) {
        let c = lock(&self.counts);
        let from = c.by_source.get(&source_key(source)).copied();
        (c.total, from.unwrap_or(0))
    }

    /// Connections refused since the server started.
    pub fn refused(&self) -> u64 {
        lock(&self.counts).refused
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = lock(&self.gate.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_source_gets_its_cap_and_no_more_and_a_freed_place_is_reused() {
        let g = Gate::new(
            "t",
            ConnLimits {
                per_listener: Some(5),
                per_source: Some(2),
            },
        );
        let a1 = g.try_admit(ip(1)).unwrap();
        let _a2 = g.try_admit(ip(1)).unwrap();
        assert_eq!(g.try_admit(ip(1)).unwrap_err(), Refused::Source);
        let _b1 = g.try_admit(ip(2)).unwrap();
        assert_eq!(g.held(ip(1)), (3, 2));
        drop(a1);
        assert_eq!(g.held(ip(1)), (2, 1));
        let _a3 = g.try_admit(ip(1)).unwrap();
        let _b2 = g.try_admit(ip(2)).unwrap();
        let _c1 = g.try_admit(ip(3)).unwrap();
        // Five held: the listener's cap refuses any source.
        assert_eq!(g.try_admit(ip(4)).unwrap_err(), Refused::Listener);
        assert_eq!(g.refused(), 2);
    }

    #[test]
    fn an_ipv6_site_counts_as_one_source_and_mapped_ipv4_as_its_address() {
        let g = Gate::new(
            "t",
            ConnLimits {
                per_listener: None,
                per_source: Some(2),
            },
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _p = (g.try_admit(a).unwrap(), g.try_admit(b).unwrap());
        assert_eq!(g.try_admit(a).unwrap_err(), Refused::Source);
        assert!(g.try_admit(other).is_ok());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let _q = (g.try_admit(ip(1)).unwrap(), g.try_admit(mapped).unwrap());
        assert_eq!(g.try_admit(ip(1)).unwrap_err(), Refused::Source);
    }

    #[test]
    fn off_admits_everything_and_counts_nothing_refused() {
        let g = Gate::new("t", ConnLimits::OFF);
        let held: Vec<_> = (0..1000).map(|_| g.try_admit(ip(1)).unwrap()).collect();
        assert_eq!(g.held(ip(1)), (1000, 1000));
        drop(held);
        assert_eq!(g.held(ip(1)), (0, 0));
        assert_eq!(g.refused(), 0);
    }
}
