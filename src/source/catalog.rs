//! The source catalog: what test_decoding does not print, read from the source's `pg_catalog`.
//!
//! test_decoding names types without their typmod (`character varying`, `numeric`, `character`)
//! and names the leaf partition a row went to, never its partitioned parent. This module owns
//! reading, in one query, for every ordinary or partitioned table (`relkind` `r` / `p`) outside
//! the system schemas:
//! - its exact schema and name (raw, never quoted: `My.Schema` / `Mixed "Q".t` as created);
//! - for a partition, its partition root (`pg_partition_root`, PostgreSQL 12 or later), which
//!   is where its rows belong in the target;
//! - its primary key columns in index order, resolved by name through the table's own
//!   attribute numbers (a partition attached with another column order has other `indkey`s);
//! - for partitioned tables and partitions, the plain columns of every partition key from the
//!   root down (see [`Catalog::key_for`]);
//! - every live column with `format_type(atttypid, atttypmod)`, e.g. `character varying(20)`,
//!   `numeric(12,4)` (mapped by [`crate::csv::typemap::redshift_type_with_typmod`]).
//!
//! Leaf partitions: a primary key declared on the partitioned root is inherited by every
//! partition (PostgreSQL creates the partition's own `..._pkey` index, `indisprimary`), with the
//! same column names; so a leaf reports the root's key. A partition may also have a key of its
//! own when the root has none; it is unique within that partition only, and rows of all
//! partitions meet in the root's target table, so [`Catalog::key_for`] extends it with the
//! partition key columns (two rows of different partitions differ in one of them). Partition
//! keys on expressions cannot be added that way: such a key stays unique per partition only.
//!
//! [`load`] reads it once (connect, one query, disconnect). [`SourceCatalog`] keeps it current
//! for the pipeline over one connection kept open (re-opened when it breaks): before each
//! segment's load it re-reads the catalog when the segment shows a DDL change (a table created,
//! a column added, dropped or of another type) or a table the catalog lacks, and otherwise only
//! when the catalog's stamp ([`STAMP_SQL`]) moved. The stamp is needed because some changes
//! never show in the stream: `varchar(20)` widened to `varchar(50)` prints as `character
//! varying` both times, a partition attached, a key added.

use std::collections::BTreeMap;

use super::names::NameHistory;
use crate::connection::{self as tls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Parsing the connection string or connecting failed (the password is never shown).
    #[error("source catalog: {0}")]
    Connect(#[source] TlsError),
    /// The catalog query failed (e.g. PostgreSQL older than 12 lacks `pg_partition_root`).
    #[error("source catalog: reading pg_catalog: {0}")]
    Query(#[source] tokio_postgres::Error),
    /// Connecting and reading took longer than [`CATALOG_TIMEOUT`].
    #[error("source catalog: no answer within {CATALOG_TIMEOUT:?}")]
    Timeout,
}

/// One table of the source catalog. Names are raw (exact, unquoted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogTable {
    /// For a partition (at any depth): its partition root `(schema, table)`.
    pub parent: Option<(String, String)>,
    /// The table's own primary key, in index order; empty when it has none.
    pub primary_key: Vec<String>,
    /// Columns of the partition keys of this table and its ancestors, root first, without
    /// repeats (expression parts are left out); empty for a table outside any partitioning.
    pub partition_columns: Vec<String>,
    /// Live columns: name -> `format_type(atttypid, atttypmod)`.
    pub columns: BTreeMap<String, String>,
    /// The table's oid: stable across a table rename.
    pub oid: i64,
    /// Live columns: name -> attnum, which a column keeps across a rename.
    pub attnums: BTreeMap<String, i32>,
}

/// The source catalog, keyed by exact `(schema, table)` (names holding dots stay unambiguous).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub tables: BTreeMap<(String, String), CatalogTable>,
}

impl Catalog {
    pub fn table(&self, schema: &str, name: &str) -> Option<&CatalogTable> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    /// The partition root of `schema.name`, when it is a partition.
    pub fn parent_of(&self, schema: &str, name: &str) -> Option<(&str, &str)> {
        self.table(schema, name)?
            .parent
            .as_ref()
            .map(|(s, t)| (s.as_str(), t.as_str()))
    }

    /// Live columns of `schema.name` with their `format_type` (for typed target columns).
    pub fn column_types(&self, schema: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.table(schema, name).map(|t| &t.columns)
    }

    /// The key `schema.name`'s rows are merged on in the target (`None`: the catalog has none):
    /// - a partition whose root has a primary key: the root's key (the partition inherits it);
    /// - a partition with a key of its own only: that key, then the partition key columns it
    ///   lacks (see the module docs);
    /// - any other table: its primary key.
    pub fn key_for(&self, schema: &str, name: &str) -> Option<Vec<String>> {
        let t = self.table(schema, name)?;
        let root = t.parent.as_ref().and_then(|(s, n)| self.table(s, n));
        let key = match root {
            Some(root) if !root.primary_key.is_empty() => root.primary_key.clone(),
            Some(_) if !t.primary_key.is_empty() => {
                let mut key = t.primary_key.clone();
                for c in &t.partition_columns {
                    if !key.contains(c) {
                        key.push(c.clone());
                    }
                }
                key
            }
            _ => t.primary_key.clone(),
        };
        (!key.is_empty()).then_some(key)
    }

    /// [`Catalog::key_for`] of every table that has one, keyed by `schema.table` as the config's
    /// `[tables."s.t"]` and the manifests name tables.
    pub fn primary_keys(&self) -> BTreeMap<String, Vec<String>> {
        self.tables
            .keys()
            .filter_map(|(s, n)| Some((format!("{s}.{n}"), self.key_for(s, n)?)))
            .collect()
    }
}

/// One row per table. Array subqueries keep their order with `ORDER BY` (index key position,
/// column number, ancestor depth). User schemas cannot start with `pg_` (reserved), so that
/// pattern excludes exactly `pg_catalog`, `pg_toast*` and `pg_temp_*`.
pub const CATALOG_SQL: &str = "\
SELECT n.nspname::text, c.relname::text, rn.nspname::text, r.relname::text,
  ARRAY(SELECT a.attname::text
        FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary
        ORDER BY k.ord),
  ARRAY(SELECT a.attname::text
        FROM pg_partition_ancestors(c.oid) WITH ORDINALITY AS anc(relid, depth)
        JOIN pg_partitioned_table pt ON pt.partrelid = anc.relid
        CROSS JOIN LATERAL unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = anc.relid AND a.attnum = k.attnum
        ORDER BY anc.depth DESC, k.ord),
  ARRAY(SELECT a.attname::text FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
  ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
  c.oid::int8,
  ARRAY(SELECT a.attnum::int4 FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";

/// Connects to the source (`conninfo`: libpq key=value or URL, `sslmode` honoured as for
/// Redshift), reads the catalog in one query, and disconnects, within [`CATALOG_TIMEOUT`].
pub async fn load(conninfo: &str) -> Result<Catalog, CatalogError> {
    tokio::time::timeout(CATALOG_TIMEOUT, read(conninfo))
        .await
        .map_err(|_| CatalogError::Timeout)?
}

async fn read(conninfo: &str) -> Result<Catalog, CatalogError> {
    let client = tls::connect(conninfo)
        .await
        .map_err(CatalogError::Connect)?;
    read_catalog(&client).await
}

/// [`CATALOG_SQL`] over `client`.
async fn read_catalog(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
    let rows = client
        .query(CATALOG_SQL, &[])
        .await
        .map_err(CatalogError::Query)?;
    let mut catalog = Catalog::default();
    for row in rows {
        let (key, table) = table_of(&row).map_err(CatalogError::Query)?;
        catalog.tables.insert(key, table);
    }
    Ok(catalog)
}

/// How long one catalog read may take before it counts as failed.
pub const CATALOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A fingerprint of the catalog rows [`CATALOG_SQL`] depends on: every change to a table,
/// column, primary key or schema writes a new row version (a new `xmin`) or removes one, so the
/// count and the sum of the `xmin`s move. `VACUUM` and `ANALYZE` update `pg_class` in place
/// (same `xmin`) and do not. Cheap: a few thousand catalog rows, no per-table function calls.
pub const STAMP_SQL: &str = "\
SELECT concat_ws('/',
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::numeric), 0) FROM pg_attribute WHERE attnum > 0),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::numeric), 0) FROM pg_class WHERE relkind IN ('r', 'p')),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::numeric), 0) FROM pg_index WHERE indisprimary),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::numeric), 0) FROM pg_namespace))";

/// The catalog as last read, refreshed by whoever needs it current (the Redshift target, before
/// each segment: see the module docs). Without `source.connection` it stays empty and every
/// lookup says "unknown".
#[derive(Debug, Default)]
pub struct SourceCatalog {
    conninfo: Option<String>,
    /// The connection reads go over, kept open between them; `None` until the first read and
    /// after a failed one.
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// [`STAMP_SQL`]'s answer when `current` was read.
    stamp: std::sync::Mutex<Option<String>>,
    /// Every name each table and column had in the reads (`source::names`), saved in
    /// `history_dir` when set: how a rename is told from a drop and an add.
    history: std::sync::Mutex<NameHistory>,
    history_dir: Option<std::path::PathBuf>,
    /// [`SOURCE_IDENTITY_SQL`]'s answer, read once per connection (`None` if it failed).
    identity: std::sync::Mutex<Option<String>>,
    current: std::sync::RwLock<Option<std::sync::Arc<Catalog>>>,
    /// When the last read failed: refreshes wait [`CATALOG_RETRY_AFTER`] after a failure, so an
    /// unreachable source does not cost a connection attempt (up to [`CATALOG_TIMEOUT`]) per
    /// segment.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Which cluster and database the catalog is read from (`<system identifier>/<database oid>`),
/// so that a name history is never applied to another source's oids. `pg_control_system()` is
/// executable by any role.
pub const SOURCE_IDENTITY_SQL: &str =
    "SELECT (SELECT system_identifier::text FROM pg_control_system()) \
     || '/' || (SELECT oid::text FROM pg_database WHERE datname = current_database())";

/// After a failed read, the next attempt waits this long.
pub const CATALOG_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl SourceCatalog {
    /// Reads the catalog once when `conninfo` is set; a failure is logged and leaves it empty
    /// (the typmod-less defaults apply until a refresh succeeds). `history_dir` (the WAL
    /// directory) keeps the name history across restarts; an unreadable one is a warning.
    pub async fn open(conninfo: &str, history_dir: Option<&std::path::Path>) -> Self {
        let conninfo = (!conninfo.trim().is_empty()).then(|| conninfo.to_string());
        let history = match (&conninfo, history_dir) {
            (Some(_), Some(dir)) => NameHistory::load(dir).unwrap_or_else(|e| {
                tracing::warn!(error = %crate::error_chain(&e), "source catalog: the name history cannot be read; starting a new one (renames made before are loaded as drop + create)");
                NameHistory::default()
            }),
            _ => NameHistory::default(),
        };
        let this = Self {
            conninfo,
            history: std::sync::Mutex::new(history),
            history_dir: history_dir.map(std::path::Path::to_path_buf),
            ..Self::default()
        };
        this.refresh(true).await;
        this
    }

    /// Brings the catalog up to date: re-reads it when `ddl_seen` (the caller saw a schema
    /// change, or a table the catalog lacks) or when its stamp moved since the last read. On
    /// failure keeps the last one read (and says so).
    pub async fn refresh(&self, ddl_seen: bool) {
        let Some(conninfo) = &self.conninfo else {
            return;
        };
        let failed_at = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        if failed_at.is_some_and(|t| t.elapsed() < CATALOG_RETRY_AFTER) {
            return;
        }
        let mut client = self.client.lock().await;
        let reused = client.is_some();
        let mut result = self.read_over(&mut client, conninfo, ddl_seen).await;
        if result.is_err() && reused {
            // The kept connection may have broken since (a source restart): one fresh try.
            result = self.read_over(&mut client, conninfo, ddl_seen).await;
        }
        let err = match result {
            Ok(()) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return;
            }
            Err(e) => crate::error_chain(&e),
        };
        crate::metrics::CATALOG_ERRORS.inc();
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        if self.get().is_some() {
            tracing::warn!(error = %err, "source catalog refresh failed; keeping the last one read");
        } else {
            tracing::warn!(error = %err, "source catalog unreachable: typmod-less defaults (VARCHAR(65535), NUMERIC(38,10)), partitions into tables of their own, keys from the stream");
        }
    }

    /// One read over the kept connection (opened first when there is none), within
    /// [`CATALOG_TIMEOUT`]. Any failure drops the connection.
    async fn read_over(
        &self,
        client: &mut Option<tokio_postgres::Client>,
        conninfo: &str,
        ddl_seen: bool,
    ) -> Result<(), CatalogError> {
        let read = tokio::time::timeout(CATALOG_TIMEOUT, async {
            if client.is_none() {
                let c = tls::connect(conninfo)
                    .await
                    .map_err(CatalogError::Connect)?;
                let identity = c
                    .query_one(SOURCE_IDENTITY_SQL, &[])
                    .await
                    .and_then(|row| row.try_get::<_, Option<String>>(0));
                *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = match identity {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "source catalog: cannot tell which cluster this is (pg_control_system); the name history is kept as it is");
                        None
                    }
                };
                *client = Some(c);
            }
            let Some(c) = client.as_ref() else {
                unreachable!("connected above")
            };
            let stamp: String = c
                .query_one(STAMP_SQL, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(CatalogError::Query)?;
            let known = self.stamp.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if !ddl_seen && self.get().is_some() && known.as_deref() == Some(stamp.as_str()) {
                return Ok(());
            }
            let catalog = read_catalog(c).await?;
            self.remember_names(&catalog);
            *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                Some(std::sync::Arc::new(catalog));
            *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamp);
            crate::metrics::CATALOG_READS.inc();
            Ok(())
        })
        .await
        .unwrap_or(Err(CatalogError::Timeout));
        if read.is_err() {
            *client = None;
        }
        read
    }

    fn remember_names(&self, catalog: &Catalog) {
        let identity = self
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if !history.record(catalog, identity.as_deref()) {
            return;
        }
        if let Some(dir) = &self.history_dir {
            if let Err(e) = history.save(dir) {
                tracing::warn!(error = %crate::error_chain(&e), "source catalog: saving the name history failed; a rename made while re_dms is stopped may be loaded as drop + create");
            }
        }
    }

    /// The names the column now called `column` in `schema.table` had before, nearest first
    /// (see `source::names`: only the attnum `column` holds now is looked at). Empty when no
    /// read saw an earlier name, when `column` is not a live column now, or without
    /// `source.connection`.
    pub fn previous_names(&self, schema: &str, table: &str, column: &str) -> Vec<String> {
        let Some(catalog) = self.get() else {
            return Vec::new();
        };
        let Some(t) = catalog.table(schema, table) else {
            return Vec::new();
        };
        let Some(&attnum) = t.attnums.get(column) else {
            return Vec::new();
        };
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.previous_column_names(t.oid, attnum, column)
    }

    /// The names the table now called `schema.table` had before, nearest first. Empty when no
    /// read saw another, when the catalog lacks it, or without `source.connection`.
    pub fn previous_table_names(&self, schema: &str, table: &str) -> Vec<(String, String)> {
        let Some(catalog) = self.get() else {
            return Vec::new();
        };
        let Some(t) = catalog.table(schema, table) else {
            return Vec::new();
        };
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.previous_table_names(t.oid, &(schema.to_string(), table.to_string()))
    }

    /// For a name the catalog does not have now: the name its table has now, when exactly one
    /// table the catalog has was ever called so (renamed since; the stream may be behind the
    /// catalog by several renames). `None` otherwise.
    pub fn current_name(&self, schema: &str, table: &str) -> Option<(String, String)> {
        let catalog = self.get()?;
        if catalog.table(schema, table).is_some() {
            return None;
        }
        let oids = self.oids_named(schema, table);
        let mut now = catalog
            .tables
            .iter()
            .filter(|(_, t)| oids.contains(&t.oid))
            .map(|(k, _)| k.clone());
        match (now.next(), now.next()) {
            (Some(current), None) => Some(current),
            _ => None,
        }
    }

    /// Whether `schema.table` names a table created after another table of that name was
    /// renamed away (its target table may have been renamed with it).
    pub fn renamed_away(&self, schema: &str, table: &str) -> bool {
        let Some(catalog) = self.get() else {
            return false;
        };
        let Some(t) = catalog.table(schema, table) else {
            return false;
        };
        self.oids_named(schema, table)
            .iter()
            .any(|&oid| oid != t.oid)
    }

    /// The tables (oids) the history knows were once called `schema.table`.
    fn oids_named(&self, schema: &str, table: &str) -> Vec<i64> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .oids_named(&(schema.to_string(), table.to_string()))
    }

    /// Whether the catalog as last read has `schema.name`; `None` without a catalog.
    pub fn knows(&self, schema: &str, name: &str) -> Option<bool> {
        self.get().map(|c| c.table(schema, name).is_some())
    }

    /// The catalog as last read, if any.
    pub fn get(&self) -> Option<std::sync::Arc<Catalog>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One row of [`CATALOG_SQL`].
fn table_of(
    row: &tokio_postgres::Row,
) -> Result<((String, String), CatalogTable), tokio_postgres::Error> {
    let schema: String = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let root_schema: Option<String> = row.try_get(2)?;
    let root_name: Option<String> = row.try_get(3)?;
    let primary_key: Vec<String> = row.try_get(4)?;
    let mut partition_columns: Vec<String> = Vec::new();
    for c in row.try_get::<_, Vec<String>>(5)? {
        if !partition_columns.contains(&c) {
            partition_columns.push(c);
        }
    }
    let names: Vec<String> = row.try_get(6)?;
    let types: Vec<String> = row.try_get(7)?;
    let oid: i64 = row.try_get(8)?;
    let attnums: Vec<i32> = row.try_get(9)?;
    let table = CatalogTable {
        parent: root_schema.zip(root_name),
        primary_key,
        partition_columns,
        attnums: names.iter().cloned().zip(attnums).collect(),
        columns: names.into_iter().zip(types).collect(),
        oid,
    };
    Ok(((schema, name), table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(parent: Option<(&str, &str)>, key: &[&str], part: &[&str]) -> CatalogTable {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        CatalogTable {
            parent: parent.map(|(s, t)| (s.to_string(), t.to_string())),
            primary_key: strings(key),
            partition_columns: strings(part),
            columns: BTreeMap::new(),
            oid: 0,
            attnums: BTreeMap::new(),
        }
    }

    fn catalog(tables: Vec<((&str, &str), CatalogTable)>) -> Catalog {
        Catalog {
            tables: tables
                .into_iter()
                .map(|((s, n), t)| ((s.to_string(), n.to_string()), t))
                .collect(),
        }
    }

    #[test]
    fn keys_of_partitions_and_plain_tables() {
        let c = catalog(vec![
            (("s", "ev"), table(None, &["region", "id"], &["region"])),
            (
                ("s", "ev_eu"),
                table(Some(("s", "ev")), &["region", "id"], &["region", "at"]),
            ),
            // The root has no key; the partition's own is extended by the partition columns.
            (("s", "p"), table(None, &[], &["a"])),
            (("s", "p_1"), table(Some(("s", "p")), &["b"], &["a", "c"])),
            (("s", "p_2"), table(Some(("s", "p")), &["a"], &["a"])),
            (("s", "p_3"), table(Some(("s", "p")), &[], &["a"])),
            (("a.b", "c"), table(None, &["x"], &[])),
            (("a", "b.c"), table(None, &[], &[])),
        ]);
        assert_eq!(c.key_for("s", "ev_eu").unwrap(), ["region", "id"]);
        assert_eq!(c.key_for("s", "p_1").unwrap(), ["b", "a", "c"]);
        assert_eq!(c.key_for("s", "p_2").unwrap(), ["a"]);
        assert_eq!(c.key_for("s", "p_3"), None);
        assert_eq!(c.key_for("s", "p"), None);
        assert_eq!(c.key_for("s", "missing"), None);
        assert_eq!(c.parent_of("s", "p_1"), Some(("s", "p")));
        assert_eq!(c.parent_of("s", "p"), None);
        // Exact lookups, even with dots in names.
        assert!(c.table("a.b", "c").is_some() && c.table("a", "b.c").is_some());
        assert_eq!(c.key_for("a", "b.c"), None);
        let keys = c.primary_keys();
        assert_eq!(
            keys.keys().collect::<Vec<_>>(),
            ["a.b.c", "s.ev", "s.ev_eu", "s.p_1", "s.p_2"]
        );
        assert_eq!(keys["a.b.c"], ["x"]);
    }
}
