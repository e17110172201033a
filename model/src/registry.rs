//! The session registry against a map-based model.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use wirestream_proto::{
    ConnectionId, Registered, Registry, RegistryError, RegistryLimits, SeededRandom,
};

use crate::ops::{Ids, Pick};

/// A registry run: limits (each mapped onto a small range) and the steps.
#[derive(Clone, Debug, Arbitrary)]
pub struct RegistryScenario {
    /// Connections at once: 1..=4.
    pub max_connections: u8,
    /// Ids per connection: 0..=3.
    pub max_ids_per_connection: u8,
    /// Ids in all: 0..=7.
    pub max_ids: u8,
    /// Longest id: 1..=40 bytes (minted ids have 32).
    pub max_id_len: u8,
    /// The steps.
    pub ops: Vec<RegistryOp>,
}

/// One step of a registry run. Connections are picked among every one ever
/// attached (live or detached) and one that never was.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum RegistryOp {
    /// `attach`.
    Attach,
    /// `detach` (the connection ended).
    Detach(u8),
    /// `register` an id (known, a stranger's, empty, too long, fresh).
    Register(u8, Pick),
    /// `mint` a fresh id.
    Mint(u8),
    /// `unregister`.
    Unregister(u8, Pick),
    /// `lookup`.
    Lookup(Pick),
}

/// Runs a scenario against a registry, comparing every result with the
/// model and checking the limits after every step; then ends every
/// connection and checks that nothing is left.
///
/// # Panics
/// When the registry departs from the model.
pub fn run_registry(scenario: &RegistryScenario) -> usize {
    let mut limits = RegistryLimits::default();
    limits.max_connections = 1 + usize::from(scenario.max_connections % 4);
    limits.max_ids_per_connection = usize::from(scenario.max_ids_per_connection % 4);
    limits.max_ids = usize::from(scenario.max_ids % 8);
    limits.max_id_len = 1 + usize::from(scenario.max_id_len % 40);
    let mut r: Registry<u64> = Registry::new(limits.clone());
    // A connection that is not live: attached and detached before the run
    // (ids are never reused, so it stays dead).
    let never = r
        .attach(u64::MAX)
        .expect("an empty registry takes a connection");
    assert_eq!(r.detach(never), Some(u64::MAX));
    let mut rng = SeededRandom::new(u64::from(scenario.max_id_len));
    // Every connection ever attached; the last one of `conns()` never is.
    let mut attached: Vec<ConnectionId> = Vec::new();
    let mut live: BTreeSet<ConnectionId> = BTreeSet::new();
    let mut owners: BTreeMap<String, ConnectionId> = BTreeMap::new();
    let mut ids = Ids::default();
    let conn = |attached: &[ConnectionId], n: u8| {
        attached
            .get(usize::from(n) % (attached.len() + 1))
            .copied()
            .unwrap_or(never)
    };
    let owned = |owners: &BTreeMap<String, ConnectionId>, c: ConnectionId| {
        owners.values().filter(|&&o| o == c).count()
    };
    for op in &scenario.ops {
        match *op {
            RegistryOp::Attach => {
                let value = attached.len() as u64;
                let got = r.attach(value);
                if live.len() >= limits.max_connections {
                    assert_eq!(got, Err(RegistryError::TooManyConnections));
                } else {
                    let c = got.expect("attach with room");
                    assert!(!attached.contains(&c), "connection id {c:?} reused");
                    assert_eq!(r.get(c), Some(&value));
                    attached.push(c);
                    live.insert(c);
                }
            }
            RegistryOp::Detach(n) => {
                let c = conn(&attached, n);
                let got = r.detach(c);
                if live.remove(&c) {
                    let value = attached.iter().position(|&a| a == c).map(|i| i as u64);
                    assert_eq!(got, value, "detach hands the value back");
                    owners.retain(|_, o| *o != c);
                } else {
                    assert_eq!(got, None, "detach of a connection not attached");
                }
            }
            RegistryOp::Register(n, p) => {
                let c = conn(&attached, n);
                let id = ids.pick(p, "session");
                let expected = predict(&limits, &live, &owners, owned(&owners, c), c, &id);
                assert_eq!(r.register(c, &id), expected, "register {c:?} {id:?}");
                if expected.is_ok() {
                    owners.insert(id, c);
                }
            }
            RegistryOp::Mint(n) => {
                let c = conn(&attached, n);
                let got = r.mint(c, &mut rng);
                let probe = "0".repeat(32);
                let expected = predict(&limits, &live, &owners, owned(&owners, c), c, &probe);
                match (got, expected) {
                    (Ok(id), Ok(_)) => {
                        assert!(
                            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                            "minted {id:?}"
                        );
                        assert!(!owners.contains_key(&id), "minted a taken id");
                        ids.learn(&id);
                        owners.insert(id, c);
                    }
                    (got, expected) => assert_eq!(got.map(|_| ()), expected.map(|_| ())),
                }
            }
            RegistryOp::Unregister(n, p) => {
                let c = conn(&attached, n);
                let id = ids.pick(p, "session");
                let expected = owners.get(&id) == Some(&c);
                assert_eq!(r.unregister(c, &id), expected, "unregister {c:?} {id:?}");
                if expected {
                    owners.remove(&id);
                }
            }
            RegistryOp::Lookup(p) => {
                let id = ids.pick(p, "session");
                let expected = owners.get(&id).copied();
                assert_eq!(r.lookup(&id).map(|(c, _)| c), expected, "lookup {id:?}");
            }
        }
        // The registry holds exactly the model, within every limit.
        assert_eq!(r.len(), owners.len());
        assert!(owners.len() <= limits.max_ids);
        assert_eq!(r.connections(), live.len());
        assert!(live.len() <= limits.max_connections);
        assert_eq!(r.is_empty(), owners.is_empty() && live.is_empty());
        for &c in &live {
            let mut got: Vec<&str> = r.ids_of(c).collect();
            got.sort_unstable();
            let want: Vec<&str> = owners
                .iter()
                .filter(|(_, o)| **o == c)
                .map(|(id, _)| id.as_str())
                .collect();
            assert!(want.len() <= limits.max_ids_per_connection);
            assert_eq!(got, want, "ids of {c:?}");
        }
        for (id, c) in &owners {
            assert_eq!(r.lookup(id).map(|(o, _)| o), Some(*c));
        }
    }
    let steps = scenario.ops.len();
    for c in std::mem::take(&mut live) {
        assert!(r.detach(c).is_some());
    }
    assert!(
        r.is_empty(),
        "the registry is empty once every connection has ended"
    );
    assert_eq!((r.len(), r.connections()), (0, 0));
    for id in owners.keys() {
        assert_eq!(r.lookup(id), None);
    }
    steps
}

fn predict(
    limits: &RegistryLimits,
    live: &BTreeSet<ConnectionId>,
    owners: &BTreeMap<String, ConnectionId>,
    owned: usize,
    c: ConnectionId,
    id: &str,
) -> Result<Registered, RegistryError> {
    if id.is_empty() || id.len() > limits.max_id_len {
        return Err(RegistryError::InvalidId);
    }
    let previous = owners.get(id).copied();
    if previous == Some(c) {
        return Ok(Registered::AlreadyOwned);
    }
    if !live.contains(&c) {
        return Err(RegistryError::UnknownConnection);
    }
    if owned >= limits.max_ids_per_connection {
        return Err(RegistryError::ConnectionFull);
    }
    if previous.is_none() && owners.len() >= limits.max_ids {
        return Err(RegistryError::RegistryFull);
    }
    Ok(previous.map_or(Registered::New, Registered::TookOver))
}
