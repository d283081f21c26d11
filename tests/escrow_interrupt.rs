//! An interrupt at any point of the key-transfer cases never leaves the meter
//! with a key nobody holds (issue 16 item 1).
//!
//! The in-process simulator calls back after every request that changed its
//! memory (a key installed, a counter advanced), before its response goes
//! out. The test interrupts the run at the N-th such change, for every N
//! across the key-transfer cases: the interrupt then lands while the
//! harness waits for that response, i.e. with a request in flight, and
//! sometimes while the request is a key transfer. After each run, every key
//! of the management client is the original one, or one that is in the escrow
//! and that the harness reported the meter may be left with; and the keys the
//! harness would use next are the ones the meter holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use idis_harness::client::CounterStore;
use idis_harness::keys::Escrow;
use idis_harness::runner::case::TargetState;
use idis_harness::runner::event::{Event, TargetInfo, Verdict};
use idis_harness::runner::{RunOptions, Selection, Target, run, simulator_test_profile};
use idis_harness::security::Key;
use idis_harness::sim::server::SimHandle;
use idis_harness::sim::{Meter, MeterConfig, Quirks};
use idis_harness::suite::{self, ValidationContext, VarOverrides};

struct Outcome {
    /// The interrupted case was in its key-transfer step.
    in_key_transfer: bool,
    /// Keys the run reported the meter is (or may be) left with, by escrow entry.
    reported_entries: Vec<String>,
}

/// Runs the key-transfer cases and interrupts at the `n`-th change of the meter's memory.
async fn interrupted_run(n: usize) -> Outcome {
    let root =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites/key-transfer.yaml");
    let (suites, errors) = suite::load_paths(&[root], &ValidationContext::default());
    assert!(errors.is_empty());
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let changes = Arc::new(AtomicUsize::new(0));
    let mut sim = SimHandle::new(Meter::new(MeterConfig::default(), Quirks::none()));
    let c = changes.clone();
    let cancel_tx = Arc::new(Mutex::new(Some(cancel_tx)));
    let tx = cancel_tx.clone();
    sim.meter = sim.meter.clone().with_on_change(move || {
        if c.fetch_add(1, Ordering::SeqCst) + 1 == n
            && let Some(t) = tx.lock().unwrap().as_ref()
        {
            let _ = t.send(true);
        }
    });
    let original = simulator_test_profile();
    let escrow = Arc::new(Escrow::memory());
    let state = TargetState::new(
        "sim".parse().unwrap(),
        original.clone(),
        Some(sim.clone()),
        false,
        CounterStore::memory(),
    )
    .with_escrow(escrow.clone());
    let target = Target {
        state,
        info: TargetInfo {
            name: "sim".into(),
            profile: "built-in".into(),
            transport: "built-in simulator".into(),
            system_title: None,
        },
    };
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_, mut done) = run(
        Arc::new(suites),
        Selection::default(),
        Arc::new(VarOverrides::new()),
        vec![target],
        RunOptions::default(),
        ev_tx,
        cancel_rx,
    )
    .await;
    drop(cancel_tx);
    let mut in_key_transfer = false;
    let mut reported_entries = Vec::new();
    while let Some(ev) = ev_rx.recv().await {
        match ev {
            Event::CaseFinished {
                verdict: Verdict::Error(d),
                ..
            } if d.message.contains("interrupted") => {
                in_key_transfer |= d.message.contains("(key-transfer)");
            }
            Event::KeyCustody { notice, .. } => {
                reported_entries.extend(notice.left_changed.iter().filter_map(|h| h.entry.clone()));
            }
            _ => {}
        }
    }
    let harness = done.remove(0).state.profile;
    let h = harness.client(1).unwrap();
    let o = original.client(1).unwrap();
    let deposits = escrow.deposits();
    let m = sim.meter.lock();
    let meter = &m.state.clients[&1];
    let check = |what: &str, held: &Key, orig: &Option<Key>, id: u8| {
        if Some(held) == orig.as_ref() {
            return;
        }
        let d = deposits
            .iter()
            .find(|d| d.client == 1 && d.key_id == id && &d.key == held)
            .unwrap_or_else(|| {
                panic!("interrupt at change {n}: the meter holds a {what} key that is neither the original nor escrowed")
            });
        assert!(
            reported_entries.contains(&d.entry),
            "interrupt at change {n}: the meter is left with the {what} key of escrow entry {}, and the run did not say so",
            d.entry
        );
    };
    check("unicast", &meter.encryption_key, &o.encryption_key, 0);
    check(
        "authentication",
        &meter.authentication_key,
        &o.authentication_key,
        2,
    );
    check("broadcast", &meter.broadcast_key, &o.broadcast_key, 1);
    check("master", &meter.master_key, &o.master_key, 3);
    // The harness associates next with what the meter holds.
    assert_eq!(
        h.encryption_key.as_ref(),
        Some(&meter.encryption_key),
        "interrupt at change {n}: the harness does not know the meter's unicast key"
    );
    assert_eq!(
        h.authentication_key.as_ref(),
        Some(&meter.authentication_key),
        "interrupt at change {n}: the harness does not know the meter's authentication key"
    );
    Outcome {
        in_key_transfer,
        reported_entries,
    }
}

#[test]
fn no_interrupt_point_leaves_a_key_nobody_holds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A whole run of the key-transfer suite changes the meter's memory about 90 times.
    let points = 100;
    let mut during_transfer = 0;
    let mut left_changed = 0;
    for n in 1..=points {
        let o = rt.block_on(interrupted_run(n));
        during_transfer += usize::from(o.in_key_transfer);
        left_changed += usize::from(!o.reported_entries.is_empty());
    }
    eprintln!(
        "{points} interrupt points; {during_transfer} landed in a key transfer; {left_changed} left the meter with an escrowed key (reported)"
    );
    // On the conformant simulator the teardown puts the original keys back
    // after every interrupt (without the fresh link and the key check before
    // the teardown, 13 of 100 points left an escrowed key on the meter).
    assert_eq!(
        left_changed, 0,
        "the teardown did not restore the keys after {left_changed} interrupt(s)"
    );
    // The interrupt lands in a key transfer's wait for its response only when
    // the runner sees the cancel before the response (a race by design).
    assert!(
        during_transfer >= 1,
        "only {during_transfer} interrupts landed during a key transfer: the test does not test what it should"
    );
}
