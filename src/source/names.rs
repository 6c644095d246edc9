//! Every name the source catalog has shown for a table (by oid) and for a column (by table oid
//! and attnum): how a rename is told from a drop and a create (test_decoding prints only the
//! current name; a table keeps its oid across `RENAME TO`, a column its attnum across
//! `RENAME COLUMN`, and a dropped and re-created one gets a new number).
//!
//! Kept in memory by [`crate::source::catalog::SourceCatalog`] and, when it has a file, saved
//! after every catalog read that adds a name, so a rename made while re_dms was stopped is seen
//! at the next start (the file is in the WAL directory: `<wal directory>/catalog_names.json`).
//! Entries of a table the catalog no longer shows are forgotten, so a recycled oid never
//! inherits a dropped table's names.
//!
//! ```json
//! {"version": 1, "source": "7312345678901234567/16384",
//!  "tables": [{"oid": 16384, "names": [["public", "orders"], ["public", "orders_v2"]]}],
//!  "columns": [{"oid": 16384, "attnum": 2, "names": ["d", "d2"]}]}
//! ```
//!
//! Names are in the order seen, the current one last. A file that cannot be read is a warning
//! (the history starts empty: renames from before are then loaded as drop + create, as without
//! a catalog); never fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalog::Catalog;

/// The history's file name in the WAL directory.
pub const NAMES_FILE: &str = "catalog_names.json";

/// The file format's version; another one is ignored with a warning.
const VERSION: u32 = 1;

/// Names kept per table or column: the newest ones (a table renamed back and forth for ever
/// must not grow the file for ever).
const MAX_NAMES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a catalog name history: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Names seen, by table oid and by (table oid, attnum).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameHistory {
    /// The source the oids are of (`<system identifier>/<database oid>`), when known: a history
    /// of another cluster or database (a restored dump, a replica promoted elsewhere, the WAL
    /// directory pointed at another source) is discarded, never applied to unrelated oids.
    source: Option<String>,
    tables: BTreeMap<i64, Vec<(String, String)>>,
    columns: BTreeMap<(i64, i32), Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    source: Option<String>,
    tables: Vec<TableEntry>,
    columns: Vec<ColumnEntry>,
}

#[derive(Serialize, Deserialize)]
struct TableEntry {
    oid: i64,
    names: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct ColumnEntry {
    oid: i64,
    attnum: i32,
    names: Vec<String>,
}

impl NameHistory {
    /// Adds what `catalog` (read from `source`, see [`NameHistory::source`]) shows and forgets
    /// tables it no longer has; true when anything changed (the caller saves then).
    pub fn record(&mut self, catalog: &Catalog, source: Option<&str>) -> bool {
        let before = self.clone();
        if let Some(source) = source {
            if self.source.as_deref().is_some_and(|s| s != source) {
                tracing::warn!(was = ?self.source, now = source, "source catalog: another cluster or database than the name history's; starting a new history");
                self.tables.clear();
                self.columns.clear();
            }
            self.source = Some(source.to_string());
        }
        let live: std::collections::BTreeSet<i64> =
            catalog.tables.values().map(|t| t.oid).collect();
        self.tables.retain(|oid, _| live.contains(oid));
        self.columns.retain(|(oid, _), _| live.contains(oid));
        for ((schema, name), table) in &catalog.tables {
            push_new(
                self.tables.entry(table.oid).or_default(),
                (schema.clone(), name.clone()),
            );
            for (column, &attnum) in &table.attnums {
                push_new(
                    self.columns.entry((table.oid, attnum)).or_default(),
                    column.clone(),
                );
            }
        }
        *self != before
    }

    /// The tables (oids) that were ever called `name`.
    pub fn oids_named(&self, name: &(String, String)) -> Vec<i64> {
        self.tables
            .iter()
            .filter(|(_, names)| names.contains(name))
            .map(|(&oid, _)| oid)
            .collect()
    }

    /// The names the table `oid`, now `current`, had before, nearest first.
    pub fn previous_table_names(
        &self,
        oid: i64,
        current: &(String, String),
    ) -> Vec<(String, String)> {
        self.tables
            .get(&oid)
            .map(|names| before(names, current))
            .unwrap_or_default()
    }

    /// The names column `attnum` of table `oid`, now `current`, had before, nearest first.
    pub fn previous_column_names(&self, oid: i64, attnum: i32, current: &str) -> Vec<String> {
        self.columns
            .get(&(oid, attnum))
            .map(|names| before(names, &current.to_string()))
            .unwrap_or_default()
    }

    /// The history saved in `dir`; empty when there is none.
    pub fn load(dir: &Path) -> Result<Self, NamesError> {
        let path = dir.join(NAMES_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(NamesError::Io { path, source }),
        };
        let file: File =
            serde_json::from_slice(&bytes).map_err(|source| NamesError::Json { path, source })?;
        if file.version != VERSION {
            tracing::warn!(
                version = file.version,
                "{NAMES_FILE}: another version of the name history; starting a new one"
            );
            return Ok(Self::default());
        }
        Ok(Self {
            source: file.source,
            tables: file.tables.into_iter().map(|t| (t.oid, t.names)).collect(),
            columns: file
                .columns
                .into_iter()
                .map(|c| ((c.oid, c.attnum), c.names))
                .collect(),
        })
    }

    /// Writes the history durably into `dir` (temporary file, fsync, rename, directory fsync).
    pub fn save(&self, dir: &Path) -> Result<(), NamesError> {
        let path = dir.join(NAMES_FILE);
        let file = File {
            version: VERSION,
            source: self.source.clone(),
            tables: self
                .tables
                .iter()
                .map(|(&oid, names)| TableEntry {
                    oid,
                    names: names.clone(),
                })
                .collect(),
            columns: self
                .columns
                .iter()
                .map(|(&(oid, attnum), names)| ColumnEntry {
                    oid,
                    attnum,
                    names: names.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&file).map_err(|source| NamesError::Json {
            path: path.clone(),
            source,
        })?;
        super::binding::replace_durably(dir, NAMES_FILE, &json)
            .map_err(|source| NamesError::Io { path, source })
    }
}

fn push_new<T: PartialEq>(names: &mut Vec<T>, name: T) {
    if names.last() != Some(&name) {
        names.push(name);
        if names.len() > MAX_NAMES {
            names.remove(0);
        }
    }
}

/// The names before the last occurrence of `current`, nearest first, each once, without
/// `current`.
fn before<T: PartialEq + Clone>(names: &[T], current: &T) -> Vec<T> {
    let at = names
        .iter()
        .rposition(|n| n == current)
        .unwrap_or(names.len());
    let mut out: Vec<T> = Vec::new();
    for n in names[..at].iter().rev() {
        if n != current && !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::catalog::CatalogTable;

    /// (table name, oid, [(column, attnum)])
    type Table<'a> = (&'a str, i64, &'a [(&'a str, i32)]);

    fn catalog(tables: &[Table<'_>]) -> Catalog {
        Catalog {
            tables: tables
                .iter()
                .map(|(name, oid, cols)| {
                    let t = CatalogTable {
                        oid: *oid,
                        attnums: cols.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
                        ..CatalogTable::default()
                    };
                    (("public".to_string(), name.to_string()), t)
                })
                .collect(),
        }
    }

    impl NameHistory {
        fn record_test(&mut self, c: &Catalog) -> bool {
            self.record(c, Some("7000/5"))
        }
    }

    fn t(name: &str) -> (String, String) {
        ("public".to_string(), name.to_string())
    }

    #[test]
    fn renames_are_remembered_and_dropped_tables_forgotten() {
        let mut h = NameHistory::default();
        assert!(h.record_test(&catalog(&[("a", 1, &[("x", 1)]), ("b", 2, &[])])));
        assert!(!h.record_test(&catalog(&[("a", 1, &[("x", 1)]), ("b", 2, &[])])));
        // a -> a2 (column x -> y), then b dropped.
        assert!(h.record_test(&catalog(&[("a2", 1, &[("y", 1)])])));
        assert_eq!(h.previous_table_names(1, &t("a2")), [t("a")]);
        assert_eq!(h.previous_column_names(1, 1, "y"), ["x"]);
        assert!(h.previous_table_names(1, &t("a")).is_empty());
        // b's oid recycled by a new table: no history inherited.
        h.record_test(&catalog(&[("a2", 1, &[("y", 1)]), ("c", 2, &[])]));
        h.record_test(&catalog(&[("a3", 1, &[("y", 1)]), ("c", 2, &[])]));
        assert!(h.previous_table_names(2, &t("c")).is_empty());
        assert_eq!(h.previous_table_names(1, &t("a3")), [t("a2"), t("a")]);
        // Back to an earlier name: only the names before its last occurrence count.
        h.record_test(&catalog(&[("a", 1, &[("y", 1)])]));
        assert_eq!(h.previous_table_names(1, &t("a")), [t("a3"), t("a2")]);
        assert_eq!(h.oids_named(&t("a2")), [1]);
        // Another source: the history starts again.
        assert!(h.record(&catalog(&[("z", 1, &[("y", 1)])]), Some("7001/5")));
        assert!(h.previous_table_names(1, &t("z")).is_empty());
        assert!(h.oids_named(&t("a")).is_empty());
    }

    #[test]
    fn names_are_capped() {
        let mut h = NameHistory::default();
        for i in 0..100 {
            let name = if i % 2 == 0 { "a" } else { "b" };
            h.record_test(&catalog(&[(name, 1, &[])]));
        }
        assert_eq!(h.tables[&1].len(), MAX_NAMES);
        assert_eq!(h.previous_table_names(1, &t("b")), [t("a")]);
    }

    #[test]
    fn a_saved_history_loads_back_and_a_broken_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            NameHistory::load(dir.path()).unwrap(),
            NameHistory::default()
        );
        let mut h = NameHistory::default();
        h.record_test(&catalog(&[("a", 1, &[("x", 1)])]));
        h.record_test(&catalog(&[("a2", 1, &[("y", 1)])]));
        h.save(dir.path()).unwrap();
        assert_eq!(NameHistory::load(dir.path()).unwrap(), h);
        std::fs::write(dir.path().join(NAMES_FILE), b"{").unwrap();
        let err = NameHistory::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(NAMES_FILE), "{err}");
    }
}
