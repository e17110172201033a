//! The process-wide session registry (PROTOCOL.md §4), as plain data.
//!
//! A server request is addressed by a session id, not a connection: an HTTP
//! route looks the id up and forwards the request over whichever connection
//! owns it. The registry holds the connections (each with a value of the
//! caller's, e.g. a channel to its driver) and the ids they own. Because the
//! ids live inside their connection's entry, detaching a connection removes
//! them: an adapter cannot leak an entry by forgetting to clean up.
//!
//! Every operation is O(1) except [`Registry::detach`], which is O(ids
//! owned); adapters share one registry behind one lock.

use std::fmt;
use std::hash::RandomState;

use hashbrown::hash_map::EntryRef;
use hashbrown::{HashMap, HashSet};

use crate::ids::RandomSource;

/// A connection attached to a [`Registry`]. Never reused: an id from a
/// detached connection stays dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    /// Unique for the registry's life (attach order).
    serial: u64,
    /// Where the connection lives in the slab.
    slot: u32,
}

impl ConnectionId {
    /// A number unique among the registry's connections, for logs.
    pub fn get(self) -> u64 {
        self.serial
    }
}

/// Limits of a [`Registry`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryLimits {
    /// Connections attached at once (default 65 536).
    pub max_connections: usize,
    /// Session ids one connection may own (default 1024: one per agent of a
    /// swarm).
    pub max_ids_per_connection: usize,
    /// Session ids in the whole registry (default 1 048 576).
    pub max_ids: usize,
    /// Longest session id accepted, in bytes (default 128). Ids a client
    /// resumes are chosen by the peer.
    pub max_id_len: usize,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self {
            max_connections: 1 << 16,
            max_ids_per_connection: 1024,
            max_ids: 1 << 20,
            max_id_len: 128,
        }
    }
}

/// Why a registry operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// The connection was never attached, or has been detached: a
    /// registration after a connection's end is refused.
    UnknownConnection,
    /// [`RegistryLimits::max_connections`] is reached.
    TooManyConnections,
    /// The connection owns [`RegistryLimits::max_ids_per_connection`] ids.
    ConnectionFull,
    /// The registry holds [`RegistryLimits::max_ids`] ids.
    RegistryFull,
    /// The id is empty or longer than [`RegistryLimits::max_id_len`].
    InvalidId,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownConnection => "the connection is not attached",
            Self::TooManyConnections => "too many connections attached",
            Self::ConnectionFull => "the connection owns too many session ids",
            Self::RegistryFull => "the registry holds too many session ids",
            Self::InvalidId => "the session id is empty or too long",
        })
    }
}

impl std::error::Error for RegistryError {}

/// What a successful [`Registry::register`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// The id was free; it is now the connection's.
    New,
    /// The connection already owned it.
    AlreadyOwned,
    /// Another live connection owned it; the newer one took it over.
    TookOver(ConnectionId),
}

#[derive(Debug)]
struct Connection<T> {
    value: T,
    owned: HashSet<Box<str>, RandomState>,
}

/// A place in the slab: the serial of the connection living there, if any.
#[derive(Debug)]
struct Slot<T> {
    serial: u64,
    connection: Option<Connection<T>>,
}

/// Connections and the session ids they own. `T` is the caller's per
/// connection value (typically how to reach the connection's driver).
///
/// Connections live in a slab (their ids are ours, so no hashing is needed
/// to find them); session ids, which peers may choose, are keyed with std's
/// randomly keyed SipHash.
#[derive(Debug)]
pub struct Registry<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
    owners: HashMap<String, ConnectionId, RandomState>,
    hasher: RandomState,
    next_serial: u64,
    limits: RegistryLimits,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new(RegistryLimits::default())
    }
}

/// The live connection `id` names in `slots`.
fn connection<T>(slots: &[Slot<T>], id: ConnectionId) -> Option<&Connection<T>> {
    let slot = slots.get(usize::try_from(id.slot).ok()?)?;
    slot.connection
        .as_ref()
        .filter(|_| slot.serial == id.serial)
}

fn connection_mut<T>(slots: &mut [Slot<T>], id: ConnectionId) -> Option<&mut Connection<T>> {
    let slot = slots.get_mut(usize::try_from(id.slot).ok()?)?;
    slot.connection
        .as_mut()
        .filter(|_| slot.serial == id.serial)
}

impl<T> Registry<T> {
    /// An empty registry.
    pub fn new(limits: RegistryLimits) -> Self {
        let hasher = RandomState::new();
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            owners: HashMap::with_hasher(hasher.clone()),
            hasher,
            next_serial: 0,
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RegistryLimits {
        &self.limits
    }

    /// Session ids registered.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether no session id is registered and no connection attached.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty() && self.live == 0
    }

    /// Connections attached.
    pub fn connections(&self) -> usize {
        self.live
    }

    /// Attaches a connection.
    pub fn attach(&mut self, value: T) -> Result<ConnectionId, RegistryError> {
        if self.live >= self.limits.max_connections {
            return Err(RegistryError::TooManyConnections);
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let connection = Some(Connection {
            value,
            owned: HashSet::with_hasher(self.hasher.clone()),
        });
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let Ok(slot) = u32::try_from(self.slots.len()) else {
                    return Err(RegistryError::TooManyConnections);
                };
                self.slots.push(Slot {
                    serial,
                    connection: None,
                });
                slot
            }
        };
        let id = ConnectionId { serial, slot };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Slot { serial, connection };
        }
        self.live += 1;
        Ok(id)
    }

    /// Detaches a connection that ended: removes the ids it still owns (not
    /// those a newer connection took over) and returns its value.
    pub fn detach(&mut self, conn: ConnectionId) -> Option<T> {
        connection(&self.slots, conn)?;
        let slot = self.slots.get_mut(conn.slot as usize)?;
        let connection = slot.connection.take()?;
        self.free.push(conn.slot);
        self.live -= 1;
        for id in connection.owned {
            self.owners.remove(&*id);
        }
        Some(connection.value)
    }

    /// Registers `id` (e.g. one a client resumes) as owned by `conn`. A
    /// newer connection takes an id over from an older one.
    pub fn register(&mut self, conn: ConnectionId, id: &str) -> Result<Registered, RegistryError> {
        if id.is_empty() || id.len() > self.limits.max_id_len {
            return Err(RegistryError::InvalidId);
        }
        let owned = match connection(&self.slots, conn) {
            Some(c) => c.owned.len(),
            None => return Err(RegistryError::UnknownConnection),
        };
        let full = owned >= self.limits.max_ids_per_connection;
        let registry_full = self.owners.len() >= self.limits.max_ids;
        let registered = match self.owners.entry_ref(id) {
            EntryRef::Occupied(e) if *e.get() == conn => return Ok(Registered::AlreadyOwned),
            _ if full => return Err(RegistryError::ConnectionFull),
            EntryRef::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), conn);
                if let Some(c) = connection_mut(&mut self.slots, old) {
                    c.owned.remove(id);
                }
                Registered::TookOver(old)
            }
            EntryRef::Vacant(_) if registry_full => return Err(RegistryError::RegistryFull),
            EntryRef::Vacant(e) => {
                e.insert(conn);
                Registered::New
            }
        };
        if let Some(c) = connection_mut(&mut self.slots, conn) {
            c.owned.insert(id.into());
        }
        Ok(registered)
    }

    /// Mints a fresh session id for `conn`: 128 random bits from `rng`, as
    /// 32 lowercase hex digits.
    pub fn mint(
        &mut self,
        conn: ConnectionId,
        rng: &mut dyn RandomSource,
    ) -> Result<String, RegistryError> {
        loop {
            let id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            // A repeat of 128 random bits means a degenerate source; draw again
            // rather than take an id over.
            if !self.owners.contains_key(id.as_str()) {
                self.register(conn, &id)?;
                return Ok(id);
            }
        }
    }

    /// Removes `id` if `conn` owns it; `false` otherwise (a newer connection
    /// may have taken it over).
    pub fn unregister(&mut self, conn: ConnectionId, id: &str) -> bool {
        if self.owners.get(id) != Some(&conn) {
            return false;
        }
        self.owners.remove(id);
        if let Some(c) = connection_mut(&mut self.slots, conn) {
            c.owned.remove(id);
        }
        true
    }

    /// The connection that owns `id`, and its value.
    pub fn lookup(&self, id: &str) -> Option<(ConnectionId, &T)> {
        let conn = *self.owners.get(id)?;
        connection(&self.slots, conn).map(|c| (conn, &c.value))
    }

    /// A connection's value.
    pub fn get(&self, conn: ConnectionId) -> Option<&T> {
        connection(&self.slots, conn).map(|c| &c.value)
    }

    /// A connection's value, mutably.
    pub fn get_mut(&mut self, conn: ConnectionId) -> Option<&mut T> {
        connection_mut(&mut self.slots, conn).map(|c| &mut c.value)
    }

    /// The session ids `conn` owns, in no particular order.
    pub fn ids_of(&self, conn: ConnectionId) -> impl Iterator<Item = &str> {
        connection(&self.slots, conn)
            .into_iter()
            .flat_map(|c| c.owned.iter().map(|s| &**s))
    }
}
