//! Laws of the fleet machine (the shared cache's decisions) over random interleavings of three
//! replicas' fetches, a simulated store and a simulated token endpoint, with simulated time:
//! no runtime, no sleeps. The world and its laws are in `fleet_sim.rs`, which the fuzz target
//! `fleet_state` shares.

use std::time::Duration;

use proptest::prelude::*;

use crate::fleet_sim::{Behaviour, Endpoint, Op, REPLICAS, World, config, run_to_end, simulate};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..REPLICAS).prop_map(Op::Act),
        1 => (0..REPLICAS, 0..6_u8).prop_map(|(n, k)| Op::Misplaced(n, k)),
        2 => prop_oneof![
            4 => Just(Behaviour::Healthy),
            1 => Just(Behaviour::Down),
            1 => Just(Behaviour::Stale),
            1 => Just(Behaviour::Tampered),
        ]
        .prop_map(Op::Store),
        1 => prop_oneof![
            3 => (1..120_u64).prop_map(Endpoint::Issue),
            1 => Just(Endpoint::Refuse),
        ]
        .prop_map(Op::Endpoint),
        1 => any::<bool>().prop_map(Op::Slow),
        3 => (0..3_000_u64).prop_map(|ms| Op::Advance(Duration::from_millis(ms))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_fleet_machine_keeps_its_laws_whatever_the_store_and_the_endpoint_do(
        lease_ms in 1..10_000_u64,
        wait_ms in 0..10_000_u64,
        poll_ms in 1..2_000_u64,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        simulate(&config(lease_ms, wait_ms, poll_ms), &ops).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn a_fresh_entry_is_a_hit_from_the_store_and_the_last_token_is_no_answer() {
    let config = config(5_000, 8_000, 50);
    let mut world = World::new();
    let (mut first, mut second) = (None, None);
    let (token, seen) = run_to_end(&mut world, &config, &mut first, "first").unwrap();
    assert_eq!(
        seen.fetches, 1,
        "the empty store made the first replica fetch"
    );
    assert!(seen.holder && seen.wrote && seen.released);
    assert_eq!(world.issued.len(), 1);
    // Another replica reads it: no fetch.
    let (read, seen) = run_to_end(&mut world, &config, &mut second, "second").unwrap();
    assert_eq!(read, token);
    assert_eq!(seen.fetches, 0, "a store hit is not a fetch");
    // The first replica wants its token replaced (its API refused it): the entry holding it
    // is no answer, and the replacement reaches the fleet.
    let (replaced, seen) = run_to_end(&mut world, &config, &mut first, "first-again").unwrap();
    assert_ne!(replaced, token);
    assert_eq!(seen.fetches, 1);
    let (read, _) = run_to_end(&mut world, &config, &mut second, "second-again").unwrap();
    assert_eq!(read, replaced, "the replacement was shared");
    assert_eq!(world.issued.len(), 2);
}
