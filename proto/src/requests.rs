//! Request bookkeeping as plain data (in the style of lsp-server's
//! `req_queue`): each role has one table of the requests it received
//! ([`Incoming`]) and one of the requests it sent ([`Outgoing`]). Every
//! request leaves its table exactly once: removed by its answer, expired, or
//! drained at the end.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use hashbrown::HashTable;
use hashbrown::hash_table::{Entry, OccupiedEntry};

use crate::error::{Error, Outcome};
use crate::fx::FxBuild;
use crate::ids::{RandomSource, fresh, mint_id};

/// How a table keeps its ids: as the `String` minted for a sent request,
/// or inline for a received one (no allocation per request).
pub(crate) trait Id {
    fn new(id: &str) -> Self;
    fn as_str(&self) -> &str;
    fn into_string(self) -> String;
    fn is(&self, id: &str) -> bool {
        self.as_str() == id
    }
}

impl Id for String {
    fn new(id: &str) -> Self {
        id.to_owned()
    }
    fn as_str(&self) -> &str {
        self
    }
    fn into_string(self) -> String {
        self
    }
}

/// A string kept inline when it is short (ids and response ids on the wire
/// are: a UUID is 36 bytes), on the heap otherwise.
#[derive(Clone, Debug)]
pub(crate) enum SmallStr {
    Inline {
        len: u8,
        bytes: [u8; SmallStr::INLINE],
    },
    Heap(Box<str>),
}

impl SmallStr {
    const INLINE: usize = 46;
}

impl Id for SmallStr {
    fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                if let Some(inline) = bytes.get_mut(..s.len()) {
                    inline.copy_from_slice(s.as_bytes());
                }
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole: always UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(bytes.get(..usize::from(*len)).unwrap_or_default())
                    .unwrap_or_default()
            }
            Self::Heap(s) => s,
        }
    }

    fn into_string(self) -> String {
        self.as_str().to_owned()
    }

    /// Compared as bytes: no UTF-8 check.
    fn is(&self, s: &str) -> bool {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)) == Some(s.as_bytes()),
            Self::Heap(h) => **h == *s,
        }
    }
}

#[derive(Debug)]
struct Slot<V, I> {
    /// The id's hash, kept so that growing the table does not hash every
    /// id again.
    hash: u64,
    id: I,
    seq: u64,
    deadline: Option<Instant>,
    value: V,
}

/// Requests in flight, keyed by id, hashed with `S`: std's randomly keyed
/// SipHash where the peer picks the ids (it stays fast under adversarial
/// keys), [`FxBuild`] where this side minted them (see [`crate::fx`]).
/// Each id is hashed once as it goes in and once as it comes out.
#[derive(Debug)]
pub(crate) struct Pending<V, I = String, S = RandomState> {
    slots: HashTable<Slot<V, I>>,
    hasher: S,
    /// `(deadline, seq)` of every request that has one: the earliest first.
    deadlines: BTreeSet<(Instant, u64)>,
    next_seq: u64,
}

impl<V, I: Id, S: BuildHasher + Default> Pending<V, I, S> {
    pub(crate) fn new() -> Self {
        Self {
            slots: HashTable::new(),
            hasher: S::default(),
            deadlines: BTreeSet::new(),
            next_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    fn find(&self, id: &str) -> Option<&Slot<V, I>> {
        self.slots
            .find(self.hasher.hash_one(id), |slot| slot.id.is(id))
    }

    /// A fresh id (see [`mint_id`]) that is not in flight.
    pub(crate) fn fresh_id(&self, rng: &mut dyn RandomSource) -> String {
        fresh(rng, mint_id, |id| self.contains(id))
    }

    /// Adds a request; `false` (and nothing changes) if `id` is in flight.
    pub(crate) fn insert(&mut self, id: &str, deadline: Option<Instant>, value: V) -> bool {
        matches!(
            self.try_insert(id, deadline, |_| Ok::<V, ()>(value)),
            Ok(true)
        )
    }

    /// Adds a request whose value `admit` builds (or refuses) from the number
    /// in flight, hashing `id` once: `Ok(false)` when `id` is in flight.
    pub(crate) fn try_insert<E>(
        &mut self,
        id: &str,
        deadline: Option<Instant>,
        admit: impl FnOnce(usize) -> Result<V, E>,
    ) -> Result<bool, E> {
        let len = self.slots.len();
        let hash = self.hasher.hash_one(id);
        let Entry::Vacant(entry) =
            self.slots
                .entry(hash, |slot| slot.id.is(id), |slot: &Slot<V, I>| slot.hash)
        else {
            return Ok(false);
        };
        let value = admit(len)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(d) = deadline {
            self.deadlines.insert((d, seq));
        }
        entry.insert(Slot {
            hash,
            id: I::new(id),
            seq,
            deadline,
            value,
        });
        Ok(true)
    }

    /// Ends the request `id` if `answer` makes its answer from its value,
    /// hashing `id` once: `None` if no such request is pending; the
    /// request stays pending if `answer` fails.
    pub(crate) fn remove_with<R, E>(
        &mut self,
        id: &str,
        answer: impl FnOnce(&V) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        let hash = self.hasher.hash_one(id);
        let entry = self.slots.find_entry(hash, |slot| slot.id.is(id)).ok()?;
        let answered = answer(&entry.get().value);
        if answered.is_ok() {
            take(entry, &mut self.deadlines);
        }
        Some(answered)
    }

    /// Ends a request by its answer, handing back its owned id.
    pub(crate) fn remove_entry(&mut self, id: &str) -> Option<(String, V)> {
        let hash = self.hasher.hash_one(id);
        let entry = self.slots.find_entry(hash, |slot| slot.id.is(id)).ok()?;
        let slot = take(entry, &mut self.deadlines);
        Some((slot.id.into_string(), slot.value))
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// Ends every request whose deadline is at or before `now`, earliest
    /// first. Scans the map, but only when a deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(String, V)> {
        if self.next_deadline().is_none_or(|d| d > now) {
            return Vec::new();
        }
        let mut due: Vec<_> = self
            .slots
            .extract_if(|slot| slot.deadline.is_some_and(|d| d <= now))
            .collect();
        due.sort_unstable_by_key(|slot| (slot.deadline, slot.seq));
        for slot in &due {
            unschedule(&mut self.deadlines, slot);
        }
        due.into_iter()
            .map(|slot| (slot.id.into_string(), slot.value))
            .collect()
    }

    /// Ends every request, in arrival order.
    pub(crate) fn drain(&mut self) -> Vec<(String, V)> {
        self.deadlines.clear();
        let mut all: Vec<_> = self.slots.drain().collect();
        all.sort_unstable_by_key(|slot| slot.seq);
        all.into_iter()
            .map(|slot| (slot.id.into_string(), slot.value))
            .collect()
    }
}

/// Takes the slot of `entry` out of its table, and its deadline out of
/// `deadlines`.
fn take<V, I>(
    entry: OccupiedEntry<'_, Slot<V, I>>,
    deadlines: &mut BTreeSet<(Instant, u64)>,
) -> Slot<V, I> {
    let (slot, _) = entry.remove();
    unschedule(deadlines, &slot);
    slot
}

/// Takes `slot`'s deadline, if it has one, out of `deadlines`.
fn unschedule<V, I>(deadlines: &mut BTreeSet<(Instant, u64)>, slot: &Slot<V, I>) {
    if let Some(d) = slot.deadline {
        deadlines.remove(&(d, slot.seq));
    }
}

/// The requests a role received and has not answered yet, each with the
/// role's value (the server keeps a notify's `response_id`). The peer picks
/// the ids: a repeat is refused, and the cap is checked as it arrives.
#[derive(Debug)]
pub(crate) struct Incoming<V> {
    pending: Pending<V, SmallStr>,
    cap: usize,
}

/// Why [`Incoming::admit`] refused a request.
pub(crate) enum Admission<E> {
    /// The id is already in flight.
    Duplicate,
    /// The table is at its cap.
    Full,
    /// The role's own check refused it.
    Refused(E),
}

impl<V> Incoming<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            pending: Pending::new(),
            cap,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes a request in, hashing `id` once: refused if `id` is in flight,
    /// if `check` refuses it, or (checked last) past the cap.
    pub(crate) fn admit<E>(
        &mut self,
        id: &str,
        check: impl FnOnce() -> Result<V, E>,
    ) -> Result<(), Admission<E>> {
        let cap = self.cap;
        match self.pending.try_insert(id, None, |in_flight| {
            let value = check().map_err(Admission::Refused)?;
            if in_flight >= cap {
                Err(Admission::Full)
            } else {
                Ok(value)
            }
        }) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Admission::Duplicate),
            Err(e) => Err(e),
        }
    }

    /// Ends the request `id` with the answer `answer` makes from its value
    /// (see [`Pending::remove_with`]): `None` if it is not waiting for one.
    pub(crate) fn answer_with<R, E>(
        &mut self,
        id: &str,
        answer: impl FnOnce(&V) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        self.pending.remove_with(id, answer)
    }

    /// Ends every request, in arrival order.
    pub(crate) fn drain(&mut self) -> Vec<(String, V)> {
        self.pending.drain()
    }
}

/// The requests a role sent and that have not ended, each with the
/// application's token: the table mints their ids, holds the cap and the
/// deadlines, and ends each exactly once as an event carrying the token.
#[derive(Debug)]
pub(crate) struct Outgoing<K> {
    /// Keys this side minted: the peer only looks them up.
    pending: Pending<K, String, FxBuild>,
    cap: usize,
}

impl<K> Outgoing<K> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            pending: Pending::new(),
            cap,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn has_room(&self) -> Result<(), Error> {
        if self.pending.len() >= self.cap {
            Err(Error::TooManyRequests)
        } else {
            Ok(())
        }
    }

    pub(crate) fn fresh_id(&self, rng: &mut dyn RandomSource) -> String {
        self.pending.fresh_id(rng)
    }

    pub(crate) fn insert(&mut self, id: &str, deadline: Option<Instant>, token: K) {
        self.pending.insert(id, deadline, token);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    /// Ends the request `id` (its answer arrived): its owned id and token,
    /// or `None` if no such request is pending (the answer is then the
    /// caller's to count and drop).
    pub(crate) fn take(&mut self, id: &str) -> Option<(String, K)> {
        self.pending.remove_entry(id)
    }

    /// Ends every request whose deadline has come, earliest first.
    pub(crate) fn expire<E, R>(
        &mut self,
        now: Instant,
        events: &mut VecDeque<E>,
        ended: impl Fn(String, K, Outcome<R>) -> E,
    ) {
        for (id, token) in self.pending.expire(now) {
            events.push_back(ended(id, token, Outcome::TimedOut));
        }
    }

    /// Ends every request with the session, in the order they were sent.
    pub(crate) fn end_all<E, R>(
        &mut self,
        events: &mut VecDeque<E>,
        ended: impl Fn(String, K, Outcome<R>) -> E,
    ) {
        for (id, token) in self.pending.drain() {
            events.push_back(ended(id, token, Outcome::SessionEnded));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Id, Pending, SmallStr};
    use std::time::{Duration, Instant};

    #[test]
    fn pending_requests_end_exactly_once() {
        let t0 = Instant::now();
        let mut p: Pending<_> = Pending::new();
        assert!(p.insert("a", Some(t0 + Duration::from_secs(2)), 1));
        assert!(p.insert("b", Some(t0 + Duration::from_secs(1)), 2));
        assert!(p.insert("c", None, 3));
        assert!(!p.insert("a", None, 9), "duplicate ids are refused");
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let expired = p.expire(t0 + Duration::from_secs(1));
        assert_eq!(expired, vec![("b".into(), 2)]);
        assert_eq!(p.remove_with("b", |&v| Ok::<_, ()>(v)), None);
        assert_eq!(
            p.remove_with("a", |_| Err::<(), _>("kept")),
            Some(Err("kept"))
        );
        assert_eq!(p.remove_with("a", |&v| Ok::<_, ()>(v)), Some(Ok(1)));
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.drain(), vec![("c".into(), 3)]);
        assert!(p.is_empty());
    }

    #[test]
    fn expiry_orders_by_deadline_then_arrival() {
        let t0 = Instant::now();
        let mut p: Pending<_> = Pending::new();
        let late = t0 + Duration::from_secs(2);
        p.insert("x", Some(late), ());
        p.insert("y", Some(t0 + Duration::from_secs(1)), ());
        p.insert("z", Some(late), ());
        let ids: Vec<_> = p.expire(late).into_iter().map(|(id, ())| id).collect();
        assert_eq!(ids, ["y", "x", "z"]);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn received_ids_are_inline_up_to_46_bytes_and_compare_as_themselves() {
        for id in [
            "",
            "c-1",
            "é",
            &"x".repeat(46),
            &"y".repeat(47),
            &"z".repeat(300),
        ] {
            let small = SmallStr::new(id);
            assert_eq!(
                matches!(small, SmallStr::Inline { .. }),
                id.len() <= 46,
                "{id}"
            );
            assert!(small.is(id) && small.as_str() == id);
            assert!(!small.is(&format!("{id}!")));
            assert_eq!(small.into_string(), id);
        }
        let mut p: Pending<u8, SmallStr> = Pending::new();
        assert!(p.insert("c-1", None, 1));
        assert!(!p.insert("c-1", None, 2), "duplicate ids are refused");
        assert_eq!(p.remove_entry("c-1"), Some(("c-1".to_owned(), 1)));
    }
}
