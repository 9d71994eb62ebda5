//! Fuzzes the fleet machine (the shared cache's decisions) with any interleaving of three
//! replicas' fetches, out-of-order answers, store behaviours (healthy, down, stale, tampered),
//! token endpoint answers (a token of any lifetime, a refusal, slower than the lease) and time
//! steps, under any lease,
//! wait and poll interval, and checks the laws of `tests/protocol/fleet_sim.rs` (the model the
//! property tests use) at every step: a token served is one the store gave (an entry that
//! opened, fresh) or the run's own fetch, never expired nor the replica's last token; a holder
//! renews its lease before it expires while it fetches, then writes and releases; a waiter
//! never sleeps past its bound nor gives up before it; a store failure falls back to a fetch;
//! a run fetches at most once and ends.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/protocol/fleet_sim.rs"]
mod fleet_sim;

use fleet_sim::{Behaviour, Endpoint, Op};

/// Enough steps to reach every state many times over, few enough to keep runs fast.
const MAX_OPS: usize = 512;

#[derive(Debug, Arbitrary)]
struct Input {
    lease_ms: u16,
    wait_ms: u16,
    poll_ms: u16,
    ops: Vec<FuzzOp>,
}

#[derive(Debug, Arbitrary)]
enum FuzzOp {
    Act(u8),
    Misplaced(u8, u8),
    Healthy,
    Down,
    Stale,
    Tampered,
    Issue(u8),
    Refuse,
    Slow,
    Fast,
    AdvanceMs(u16),
}

impl FuzzOp {
    fn op(&self) -> Op {
        match *self {
            Self::Act(n) => Op::Act(n.into()),
            Self::Misplaced(n, kind) => Op::Misplaced(n.into(), kind),
            Self::Healthy => Op::Store(Behaviour::Healthy),
            Self::Down => Op::Store(Behaviour::Down),
            Self::Stale => Op::Store(Behaviour::Stale),
            Self::Tampered => Op::Store(Behaviour::Tampered),
            // Lifetimes from 1 s: the endpoint never issues a token without one here.
            Self::Issue(secs) => Op::Endpoint(Endpoint::Issue(u64::from(secs) + 1)),
            Self::Refuse => Op::Endpoint(Endpoint::Refuse),
            Self::Slow => Op::Slow(true),
            Self::Fast => Op::Slow(false),
            Self::AdvanceMs(ms) => Op::Advance(Duration::from_millis(ms.into())),
        }
    }
}

fuzz_target!(|input: Input| {
    let config = fleet_sim::config(
        input.lease_ms.into(),
        input.wait_ms.into(),
        input.poll_ms.into(),
    );
    let ops: Vec<Op> = input.ops.iter().take(MAX_OPS).map(FuzzOp::op).collect();
    if let Err(law) = fleet_sim::simulate(&config, &ops) {
        panic!("{law}");
    }
});
