//! The Redshift loader issues a number of statements that depends on tables and segments, never
//! on rows: generated changes over 3 tables are replayed into redshift-sim and the statements it
//! logged (`--statement-log`) are counted. The test holds the sim alone
//! ([`Stack::sim_exclusive`]), so nothing else writes to the log while it counts.

use std::time::Instant;

use crate::harness::stack::Stack;
use crate::harness::workload::Workload;
use crate::harness::ReDms;

/// Into a fresh database: a first replay of 1,000 changes (so that the measured run updates and
/// deletes rows already in the warehouse, not only rows of its own segment, which folding would
/// absorb), then `changes` more, measured. Returns (statements the sim logged during the
/// measured run, table-segments of that run).
async fn run(name: &str, seed: u64, changes: usize) -> (Vec<String>, usize) {
    let mut w = Workload::three_tables(seed);
    let rs = ReDms::redshift(name).await.build();
    let out = rs.replay(w.generate(1_000).take_text().as_bytes());
    assert!(out.status.success(), "{}", out.stderr);
    let preload = rs.ledger().await.len();

    let (changes_before, txns_before) = (w.changes, w.transactions);
    let text = w.generate(changes).take_text();
    let stack = Stack::get();
    let before = stack.statements().len();
    let started = Instant::now();
    let out = rs.replay(text.as_bytes());
    let took = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    // Only the run's statements: every check below reads the backend directly.
    let statements = stack.statements()[before..].to_vec();
    eprintln!(
        "{name}: {} changes in {} transactions, {} bytes, {} final rows: {} statements, {took:?}",
        w.changes - changes_before,
        w.transactions - txns_before,
        text.len(),
        w.row_count(),
        statements.len(),
    );
    rs.assert_workload(&w).await;
    let ledger = rs.assert_ledger_unique().await;
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
    (statements, ledger.len() - preload)
}

fn count(statements: &[String], prefix: &str) -> usize {
    statements.iter().filter(|s| s.starts_with(prefix)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_count_does_not_grow_with_rows() {
    let _sim = Stack::sim_exclusive().await;
    let (small, small_segments) = run("stmt_10k", 1, 10_000).await;
    let all = small.join("\n");
    assert_eq!(small_segments, 3, "default settings: one segment, 3 tables");
    assert!(
        small.len() < 60,
        "{} statements for 10,000 changes:\n{all}",
        small.len()
    );
    // Per table: one upsert file and one delete file, each staged with one COPY and checked
    // against its row count; the merge is a DELETE for the deleted keys, a DELETE for the
    // upserted keys and one INSERT.
    assert_eq!(count(&small, "COPY "), 6, "{all}");
    assert_eq!(count(&small, "SELECT pg_last_copy_count()"), 6, "{all}");
    assert_eq!(count(&small, "DELETE FROM "), 6, "{all}");
    assert_eq!(count(&small, "INSERT INTO \""), 3, "{all}");
    assert_eq!(count(&small, "INSERT INTO re_dms.applied"), 3, "{all}");

    let (large, large_segments) = run("stmt_100k", 2, 100_000).await;
    // Per table-segment: a constant (about 15) statements. Allow that much per extra
    // table-segment, should the larger input have been cut into more segments.
    let slack = 20 * large_segments.saturating_sub(small_segments);
    assert!(
        large.len() <= small.len() + slack && large.len() + slack >= small.len(),
        "{} statements for 100,000 changes ({large_segments} table-segments) vs {} for 10,000 \
         ({small_segments}):\n{}",
        large.len(),
        small.len(),
        large.join("\n")
    );
}
