//! What a Redshift [`ReDms`] loaded: rows read through the sim or from the warehouse backend
//! directly, the ledger, and checks against a [`Workload`]'s final state or the fixtures'
//! expected contents.

use std::path::Path;

use super::model::{read_expected, Field};
use super::stack::{connect, describe};
use super::workload::{GenTable, Workload};
use super::{ReDms, FIXTURES};

impl ReDms {
    /// Every row of `table` as text (NULL = None), columns in `columns` order (through the sim).
    pub async fn rows(&self, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
        rows_at(&self.db().url, table, columns).await
    }

    /// The same read from the backend directly: not in the sim's statement log, and working
    /// while the sim is in maintenance.
    pub async fn backend_rows(&self, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
        rows_at(self.backend_url(), table, columns).await
    }

    fn backend_url(&self) -> &str {
        self.db()
            .backend_url
            .as_deref()
            .expect("a warehouse database")
    }

    /// A connection to the warehouse database bypassing the sim.
    pub async fn backend(&self) -> tokio_postgres::Client {
        connect(self.backend_url()).await
    }

    /// The warehouse tables in `schema`, sorted (read from the backend).
    pub async fn tables_in(&self, schema: &str) -> Vec<String> {
        self.backend()
            .await
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
                 ORDER BY 1",
                &[&schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// `(source_table, segment)` of every ledger row, sorted; empty before the ledger exists.
    pub async fn ledger(&self) -> Vec<(String, i64)> {
        let c = self.backend().await;
        let rows = match c
            .query(
                "SELECT source_table::text, segment FROM re_dms.applied ORDER BY 1, 2",
                &[],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Vec::new()
            }
            Err(e) => panic!("reading the ledger: {}", describe(&e)),
        };
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// Asserts the warehouse holds exactly `w`'s final state (read from the backend).
    pub async fn assert_workload(&self, w: &Workload) {
        for t in &w.tables {
            self.assert_table(t).await;
        }
    }

    /// Asserts the warehouse table holds exactly `t`'s final state (read from the backend).
    pub async fn assert_table(&self, t: &GenTable) {
        let cols: Vec<String> = t.columns.iter().map(|(n, _)| n.to_string()).collect();
        let mut got = self.backend_rows(&t.name, &cols).await;
        got.sort_by_key(|r| r[0].as_deref().unwrap().parse::<i64>().unwrap());
        let want: Vec<&Vec<Field>> = t.rows.values().collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{}: row count (got {} rows, want {})",
            t.name,
            got.len(),
            want.len()
        );
        for (g, w) in got.iter().zip(want) {
            for ((c, gv), wv) in cols.iter().zip(g).zip(w) {
                assert_eq!(
                    normalize(gv),
                    normalize(wv),
                    "{}.{c} of row id {:?}",
                    t.name,
                    w[0]
                );
            }
        }
    }

    /// Asserts the ledger has exactly one row per (table, segment) and returns the segments.
    pub async fn assert_ledger_unique(&self) -> Vec<(String, i64)> {
        let ledger = self.ledger().await;
        let mut dedup = ledger.clone();
        dedup.dedup();
        assert_eq!(ledger, dedup, "a table-segment was recorded twice");
        ledger
    }

    /// Asserts the warehouse holds the fixtures' expected final contents (read through the sim).
    pub async fn assert_fixture_state(&self) {
        self.assert_matches_expected("public.users", &["id"]).await;
        self.assert_matches_expected("public.articles", &["id"])
            .await;
        self.assert_matches_expected("inventory.stock", &["warehouse", "sku"])
            .await;
    }

    async fn assert_matches_expected(&self, table: &str, key: &[&str]) {
        let (header, expected) = read_expected(
            &Path::new(FIXTURES)
                .join("expected")
                .join(format!("{table}.csv")),
        );
        let key_idx: Vec<usize> = key
            .iter()
            .map(|k| header.iter().position(|h| h == k).unwrap())
            .collect();
        let sort = |rows: &mut Vec<Vec<Field>>| {
            rows.sort_by(|a, b| {
                key_idx
                    .iter()
                    .map(|&i| &a[i])
                    .cmp(key_idx.iter().map(|&i| &b[i]))
            })
        };
        let mut got = self.rows(table, &header).await;
        let mut want = expected;
        sort(&mut got);
        sort(&mut want);
        assert_eq!(got.len(), want.len(), "{table}: row count; got {got:?}");
        for (g, w) in got.iter().zip(&want) {
            for ((h, gv), wv) in header.iter().zip(g).zip(w) {
                assert_eq!(
                    normalize(gv),
                    normalize(wv),
                    "{table}.{h} of row {:?}",
                    w[key_idx[0]]
                );
            }
        }
    }
}

async fn rows_at(url: &str, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
    let c = connect(url).await;
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let q = format!("SELECT {} FROM {table}", cols.join(", "));
    let mut out = Vec::new();
    for m in c
        .simple_query(&q)
        .await
        .unwrap_or_else(|e| panic!("{q}: {}", describe(&e)))
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push(
                (0..columns.len())
                    .map(|i| r.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }
    out
}

/// NUMERIC(38,10) prints trailing zeros: compare numbers by value.
fn normalize(v: &Field) -> Field {
    v.as_ref().map(|s| {
        let numeric = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && s.contains('.');
        if numeric {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.clone()
        }
    })
}
