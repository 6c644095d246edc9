//! bytea into the Redshift stand-in: VARBYTE sized to what Redshift allows, a value beyond it
//! written as NULL and counted (never a failed load or a stopped table), and the stand-in
//! enforcing VARBYTE(n) on the decoded bytes, so that a test can see the difference.

use crate::harness::stack::{describe, Stack};
use crate::harness::ReDms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_beyond_varbyte_is_nulled_and_counted_not_a_failed_load() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("bytea_sizes").await.build();
    // 70,000 bytes: more than the VARBYTE(65535) re_dms used to create; then one byte more than
    // VARBYTE(1,024,000); an empty value; a small one.
    let fits = "ab".repeat(70_000);
    let over = "cd".repeat(1_024_001);
    let input = format!(
        "BEGIN 1\n\
         table public.bin: INSERT: id[integer]:1 b[bytea]:'\\x{fits}'\n\
         table public.bin: INSERT: id[integer]:2 b[bytea]:'\\x{over}'\n\
         table public.bin: INSERT: id[integer]:3 b[bytea]:'\\x'\n\
         table public.bin: INSERT: id[integer]:4 b[bytea]:'\\x00ff'\n\
         COMMIT 1\n"
    );
    let out = rs.replay(input.as_bytes());
    assert!(out.status.success(), "re_dms failed:\n{}", out.stderr);
    assert!(
        out.stderr.lines().any(|l| l.contains("WARN")
            && l.contains("public.bin")
            && l.contains("column=b")
            && l.contains("1 value(s) written as NULL")),
        "no warning naming the table and column:\n{}",
        out.stderr
    );

    let c = rs.backend().await;
    let rows: Vec<(i32, Option<i32>)> = c
        .query(
            "SELECT id, octet_length(b) FROM public.bin ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // An empty bytea arrives as NULL: COPY reads an empty field of a non-character column as
    // NULL (docs/redshift-types.md).
    assert_eq!(
        rows,
        [(1, Some(70_000)), (2, None), (3, None), (4, Some(2))]
    );

    // The stand-in holds VARBYTE(n) to n decoded bytes, through its SQL path.
    let sim = crate::harness::stack::connect(&rs.db().url).await;
    sim.batch_execute("ALTER TABLE public.bin ADD COLUMN small VARBYTE(2)")
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    sim.batch_execute("UPDATE public.bin SET small = b WHERE id = 4")
        .await
        .unwrap_or_else(|e| panic!("2 bytes fit VARBYTE(2): {}", describe(&e)));
    let err = sim
        .batch_execute("UPDATE public.bin SET small = b WHERE id = 1")
        .await
        .expect_err("70,000 bytes do not fit VARBYTE(2)");
    assert!(describe(&err).contains("check"), "{}", describe(&err));
}
