//! The session registry (PROTOCOL.md §4): takeover, cleanup, refusal after
//! detach, limits.

use wirestream_proto::{Registered, Registry, RegistryError, RegistryLimits, SeededRandom};

#[test]
fn lookup_finds_the_owner_and_its_value() {
    let mut r = Registry::default();
    let a = r.attach("conn-a").unwrap();
    assert_eq!(r.register(a, "s-1"), Ok(Registered::New));
    assert_eq!(r.register(a, "s-1"), Ok(Registered::AlreadyOwned));
    assert_eq!(r.lookup("s-1"), Some((a, &"conn-a")));
    assert_eq!(r.lookup("s-2"), None);
}

#[test]
fn newer_connection_takes_an_id_over_and_the_older_end_leaves_it() {
    let mut r = Registry::default();
    let old = r.attach(1).unwrap();
    let new = r.attach(2).unwrap();
    r.register(old, "s-1").unwrap();
    r.register(old, "s-2").unwrap();
    assert_eq!(r.register(new, "s-1"), Ok(Registered::TookOver(old)));
    assert_eq!(r.lookup("s-1").map(|(c, _)| c), Some(new));
    assert!(!r.unregister(old, "s-1"), "the older one no longer owns it");
    assert_eq!(r.detach(old), Some(1));
    assert_eq!(
        r.lookup("s-1").map(|(c, _)| c),
        Some(new),
        "kept by its new owner"
    );
    assert_eq!(r.lookup("s-2"), None, "removed with its owner");
    assert_eq!(r.len(), 1);
}

#[test]
fn registration_after_detach_is_refused() {
    let mut r = Registry::default();
    let a = r.attach(()).unwrap();
    r.register(a, "s-1").unwrap();
    r.detach(a);
    assert_eq!(r.register(a, "s-1"), Err(RegistryError::UnknownConnection));
    assert_eq!(r.register(a, "s-2"), Err(RegistryError::UnknownConnection));
    let mut rng = SeededRandom::new(1);
    assert_eq!(r.mint(a, &mut rng), Err(RegistryError::UnknownConnection));
    assert_eq!(r.detach(a), None);
    assert!(r.is_empty());
}

#[test]
fn registry_is_empty_once_every_connection_has_ended() {
    let mut r = Registry::default();
    let mut rng = SeededRandom::new(3);
    let conns: Vec<_> = (0..10).map(|i| r.attach(i).unwrap()).collect();
    for (i, &c) in conns.iter().enumerate() {
        r.mint(c, &mut rng).unwrap();
        r.register(c, &format!("shared-{}", i % 3)).unwrap();
    }
    assert!(r.len() > 10);
    for c in conns.into_iter().rev() {
        r.detach(c);
    }
    assert!(r.is_empty());
    assert_eq!((r.len(), r.connections()), (0, 0));
}

#[test]
fn minted_ids_carry_128_bits_and_are_deterministic_under_a_seed() {
    let mut r = Registry::<()>::default();
    let c = r.attach(()).unwrap();
    let a = r.mint(c, &mut SeededRandom::new(42)).unwrap();
    let b = r.mint(c, &mut SeededRandom::new(43)).unwrap();
    assert_eq!(a.len(), 32);
    assert!(
        a.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_ne!(a, b);
    let mut again = Registry::<()>::default();
    let c2 = again.attach(()).unwrap();
    assert_eq!(again.mint(c2, &mut SeededRandom::new(42)).unwrap(), a);
}

#[test]
fn a_repeating_random_source_still_mints_distinct_ids() {
    let mut r = Registry::<()>::default();
    let c = r.attach(()).unwrap();
    let mut calls = 0u64;
    let mut rng = move || {
        calls += 1;
        calls / 4
    };
    let a = r.mint(c, &mut rng).unwrap();
    let b = r.mint(c, &mut rng).unwrap();
    assert_ne!(a, b);
}

#[test]
fn per_connection_limit_is_reached_then_refused_one_past_it() {
    let mut limits = RegistryLimits::default();
    limits.max_ids_per_connection = 2;
    let mut r = Registry::new(limits);
    let a = r.attach(()).unwrap();
    let b = r.attach(()).unwrap();
    r.register(a, "1").unwrap();
    r.register(a, "2").unwrap();
    assert_eq!(r.register(a, "3"), Err(RegistryError::ConnectionFull));
    assert_eq!(r.register(a, "1"), Ok(Registered::AlreadyOwned));
    r.register(b, "3").unwrap();
    r.register(b, "4").unwrap();
    assert_eq!(
        r.register(b, "1"),
        Err(RegistryError::ConnectionFull),
        "no takeover past the cap"
    );
    assert_eq!(r.lookup("1").map(|(c, _)| c), Some(a));
}

#[test]
fn total_limit_is_reached_then_refused_but_takeover_still_works() {
    let mut limits = RegistryLimits::default();
    limits.max_ids = 2;
    let mut r = Registry::new(limits);
    let a = r.attach(()).unwrap();
    let b = r.attach(()).unwrap();
    r.register(a, "1").unwrap();
    r.register(a, "2").unwrap();
    assert_eq!(r.register(b, "3"), Err(RegistryError::RegistryFull));
    assert_eq!(r.register(b, "1"), Ok(Registered::TookOver(a)));
    assert_eq!(r.len(), 2);
}

#[test]
fn connection_limit_is_reached_then_refused() {
    let mut limits = RegistryLimits::default();
    limits.max_connections = 1;
    let mut r = Registry::new(limits);
    let a = r.attach(()).unwrap();
    assert_eq!(r.attach(()), Err(RegistryError::TooManyConnections));
    r.detach(a);
    r.attach(()).unwrap();
}

#[test]
fn empty_and_overlong_ids_are_refused() {
    let mut r = Registry::default();
    let a = r.attach(()).unwrap();
    assert_eq!(r.register(a, ""), Err(RegistryError::InvalidId));
    assert_eq!(
        r.register(a, &"x".repeat(129)),
        Err(RegistryError::InvalidId)
    );
    assert_eq!(r.register(a, &"x".repeat(128)), Ok(Registered::New));
}

#[test]
fn ids_of_lists_what_a_connection_owns() {
    let mut r = Registry::default();
    let a = r.attach(()).unwrap();
    r.register(a, "x").unwrap();
    r.register(a, "y").unwrap();
    let mut ids: Vec<_> = r.ids_of(a).collect();
    ids.sort();
    assert_eq!(ids, ["x", "y"]);
    assert!(r.unregister(a, "x"));
    assert_eq!(r.ids_of(a).count(), 1);
}

#[test]
fn stale_connection_id_stays_dead_after_its_slot_is_reused() {
    let mut r = Registry::default();
    let old = r.attach("old").unwrap();
    r.register(old, "s-1").unwrap();
    r.detach(old);
    let new = r.attach("new").unwrap();
    assert_ne!(old, new);
    assert_ne!(old.get(), new.get());
    assert_eq!(r.get(old), None);
    assert_eq!(
        r.register(old, "s-2"),
        Err(RegistryError::UnknownConnection)
    );
    assert_eq!(r.detach(old), None, "detaching twice is a no-op");
    assert_eq!(r.get(new), Some(&"new"));
    assert_eq!(r.connections(), 1);
}

#[test]
fn a_constant_random_source_cannot_make_mint_loop_forever() {
    let mut r = Registry::<()>::default();
    let c = r.attach(()).unwrap();
    let mut zero = || 0u64;
    let ids: Vec<String> = (0..4).map(|_| r.mint(c, &mut zero).unwrap()).collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");
    assert_eq!(ids[0], "0".repeat(32));
}
