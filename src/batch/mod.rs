//! The per-table batcher: folds one segment's changes into per-table load steps.
//!
//! Owns the schema registry (columns, types and key of every table seen) and, per segment, an
//! ordered list of steps per table: schema operations, loads ([`TableLoad`]) and truncates.
//!
//! Invariants:
//! - one outcome per row key per load (see `table_batch.rs` for the state machine);
//! - a row whose columns or types differ from the known schema closes the table's current load,
//!   then the schema operations are emitted, then a new load starts: a load has one column list;
//! - a missing column (dropped) is a schema change; `unchanged-toast-datum` is a known column
//!   whose value is not in the stream: the two are never confused;
//! - TRUNCATE discards the table's pending load (superseded) and emits a truncate step;
//! - a table's key follows the order in README.md ("Primary keys"): config, catalog, the key
//!   columns of a DELETE or `old-key:`, a column named `id`. Changes that arrive before the key is known are kept as
//!   record positions and indexed once it is; a table whose key cannot be found is an error
//!   naming the config key that fixes it — its changes are never dropped;
//! - memory is the index only (record positions + key bytes); [`Batcher::memory_full`] tells the
//!   ingest loop to close the segment early.

mod digested;
pub mod rebuild;
mod row_index;
pub mod schema;
pub mod table_batch;

use crate::batch::schema::{ColumnDef, KeySource, SchemaOp, SchemaRegistry, TableSchema};
use crate::source::decoding::{
    parse_message, Column, Message, ParseError, TableName, Tuple, Value,
};
use crate::wal::segment::SegmentError;
pub use digested::DigestedRow;
pub use table_batch::{Applied, Entry, RecPos, RowState, TableLoad};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "table {table}: no primary key found (no [tables.\"{table}\"] primary_key in the config, \
         no key columns seen in a DELETE or old-key, no column named `id`); set \
         [tables.\"{table}\"] primary_key = [\"col\", ...]"
    )]
    NoKey { table: String },
    #[error("table {table}: the row has no key column `{column}` (key in use: {key:?}); set [tables.\"{table}\"] primary_key")]
    KeyColumnMissing {
        table: String,
        column: String,
        key: Vec<String>,
    },
    #[error("table {table}: key column `{column}` is unchanged-toast-datum, so the row cannot be identified")]
    KeyUnchangedToast { table: String, column: String },
    #[error(
        "table {table}: the key columns printed by test_decoding ({seen:?}) do not contain the key \
         in use ({in_use:?}); set [tables.\"{table}\"] primary_key"
    )]
    KeyMismatch {
        table: String,
        in_use: Vec<String>,
        seen: Vec<String>,
    },
    #[error(
        "table {table}: {op} without tuple data (REPLICA IDENTITY NOTHING?); the row cannot be \
         identified: set REPLICA IDENTITY DEFAULT or FULL on the source table"
    )]
    NoTupleData { table: String, op: &'static str },
    #[error("re-reading a WAL record: {0}")]
    Reread(#[from] SegmentError),
    #[error("re-parsing a WAL record: {0}")]
    Reparse(#[from] ParseError),
}

/// Reads back messages the batcher indexed by position (the current segment's file).
pub trait RecordSource {
    fn message_at(&mut self, pos: RecPos) -> Result<Vec<u8>, BatchError>;
}

/// One step of a table's work in a segment, in order.
#[derive(Debug)]
pub enum Step {
    Schema(SchemaOp),
    Load(TableLoad),
    Truncate,
}

/// One table's steps in one segment.
#[derive(Debug)]
pub struct TableBatch {
    pub schema: String,
    pub name: String,
    pub steps: Vec<Step>,
    current: Option<TableLoad>,
    /// Changes seen before the key was known, in order.
    unkeyed: Vec<RecPos>,
    /// Changes received in this batch, by op: insert, update, delete, truncate.
    pub received: [u64; 4],
    /// The digest signature (`wal::digest`) whose column list the registry's columns for this
    /// table were found equal to; cleared whenever those columns change.
    signature: Option<u64>,
}

impl TableBatch {
    fn new(schema: &str, name: &str) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
            steps: Vec::new(),
            current: None,
            unkeyed: Vec::new(),
            received: [0; 4],
            signature: None,
        }
    }

    fn close_load(&mut self) {
        if let Some(load) = self.current.take() {
            if !load.is_empty() {
                self.steps.push(Step::Load(load));
            }
        }
    }

    /// Closes the current load and starts an empty one with the same columns and key: what a
    /// change the current load cannot fold in (see [`Applied::Conflict`]) is applied to.
    fn restart_load(&mut self) -> &mut TableLoad {
        let l = self
            .current
            .as_ref()
            .expect("a conflict comes from the current load");
        let fresh = TableLoad::new(l.columns.clone(), l.key.clone(), l.key_idx.clone());
        self.close_load();
        self.current.insert(fresh)
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// A segment's worth of work: every table touched, in name order.
#[derive(Debug, Default)]
pub struct Batch {
    pub tables: Vec<TableBatch>,
    pub changes: u64,
}

/// Share of the batch budget (percent) from which the ingest loop closes the segment at the next
/// transaction boundary. A segment closed by the full budget is closed inside a transaction (the
/// message that crossed it is a row change), and such a segment is loaded only together with a
/// later complete one: closing at a boundary first keeps a busy stream's segments complete, so
/// each is loaded as soon as it is written.
pub const CLOSE_AT_BOUNDARY_PERCENT: usize = 90;

/// Bytes of index memory per position of a change whose key is not known yet.
const UNKEYED_COST: usize = std::mem::size_of::<RecPos>();

pub struct Batcher {
    registry: SchemaRegistry,
    /// Keys known before the stream shows any: `[tables."s.t"] primary_key` (source `Config`),
    /// then the source catalog's (`Catalog`), by `schema.table`.
    known_keys: rebuild::KnownKeys,
    /// By `schema.table`; handed out in name order by [`Batcher::take`].
    tables: hashbrown::HashMap<String, TableBatch, foldhash::fast::FixedState>,
    /// The budget for one batch's index: [`Batcher::memory_full`] once reached.
    max_mem: usize,
    mem: usize,
    changes: u64,
    keys: KeyScratch,
    qualified_buf: String,
    /// The fields of the digested row being indexed.
    fields: Vec<crate::wal::change::Field>,
}

/// Reused buffers for the encoded keys of the change being indexed.
#[derive(Default)]
struct KeyScratch {
    new: Vec<u8>,
    old: Vec<u8>,
}

/// One INSERT or UPDATE to fold into a table's load.
struct RowChange<'m, 'a> {
    old_key: Option<&'m Tuple<'a>>,
    new: &'m Tuple<'a>,
    pos: RecPos,
    is_insert: bool,
}

/// `schema.name`, the registry's and the batch's key for a table, built in `buf`.
pub(crate) fn qualified_into(buf: &mut String, t: &TableName<'_>) {
    buf.clear();
    buf.push_str(&t.schema);
    buf.push('.');
    buf.push_str(&t.name);
}

impl Batcher {
    pub fn new(
        mut registry: SchemaRegistry,
        known_keys: rebuild::KnownKeys,
        max_mem: usize,
    ) -> Self {
        // Known keys win over whatever was learned from the stream before (the config key may
        // have been added to fix a table whose key could not be found). A catalog key naming a
        // column the segment's table lacks is from another time (read at start, the segment is
        // older or newer than a key column's rename): the segment's own key stays.
        for (name, (key, source)) in &known_keys.keys {
            if let Some(t) = registry.tables.get_mut(name) {
                let fits = key.iter().all(|k| t.columns.iter().any(|c| &c.name == k));
                if *source == KeySource::Catalog && !t.columns.is_empty() && !fits {
                    continue;
                }
                t.key = Some(key.clone());
                t.key_source = Some(*source);
            }
        }
        Self {
            registry,
            known_keys,
            tables: hashbrown::HashMap::default(),
            max_mem,
            mem: 0,
            changes: 0,
            keys: KeyScratch::default(),
            qualified_buf: String::new(),
            fields: Vec::new(),
        }
    }

    pub fn known_keys(&self) -> &rebuild::KnownKeys {
        &self.known_keys
    }

    pub fn registry(&self) -> &SchemaRegistry {
        &self.registry
    }

    pub fn memory_full(&self) -> bool {
        self.mem >= self.max_mem
    }

    /// The index has reached [`CLOSE_AT_BOUNDARY_PERCENT`] of its budget: the segment should
    /// close at the next transaction boundary.
    pub fn memory_nearly_full(&self) -> bool {
        self.mem >= self.max_mem / 100 * CLOSE_AT_BOUNDARY_PERCENT
    }

    pub fn memory_used(&self) -> usize {
        self.mem
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Folds one message (already in the WAL at `pos`) into the batch.
    pub fn apply(
        &mut self,
        msg: &Message<'_>,
        pos: RecPos,
        src: &mut dyn RecordSource,
    ) -> Result<(), BatchError> {
        match msg {
            Message::Begin { .. } | Message::Commit { .. } | Message::Logical { .. } => Ok(()),
            Message::Insert { table, new } => {
                let new = new.as_ref().ok_or_else(|| no_tuple(table, "INSERT"))?;
                self.row(table, None, new, pos, true, src)
            }
            Message::Update {
                table,
                old_key,
                new,
            } => {
                let new = new.as_ref().ok_or_else(|| no_tuple(table, "UPDATE"))?;
                self.row(table, old_key.as_ref(), new, pos, false, src)
            }
            Message::Delete { table, old } => {
                let old = old.as_ref().ok_or_else(|| no_tuple(table, "DELETE"))?;
                self.delete(table, old, src)
            }
            Message::Truncate { tables, .. } => {
                for t in tables {
                    // Everything pending for the table is superseded by the truncate.
                    let tb = self.table_batch(t);
                    tb.received[3] += 1;
                    let freed =
                        tb.current.take().map_or(0, |l| l.mem) + tb.unkeyed.len() * UNKEYED_COST;
                    tb.unkeyed.clear();
                    tb.steps.push(Step::Truncate);
                    self.mem = self.mem.saturating_sub(freed);
                }
                Ok(())
            }
        }
    }

    fn table_batch(&mut self, t: &TableName<'_>) -> &mut TableBatch {
        qualified_into(&mut self.qualified_buf, t);
        self.tables
            .entry_ref(self.qualified_buf.as_str())
            .or_insert_with(|| TableBatch::new(&t.schema, &t.name))
    }

    /// The registry entry for `t`, created (with its known key, if any) on first sight.
    fn table_schema(&mut self, t: &TableName<'_>) -> (&mut TableSchema, bool) {
        qualified_into(&mut self.qualified_buf, t);
        let created = !self.registry.tables.contains_key(&self.qualified_buf);
        if created {
            let known = self.known_keys.keys.get(&self.qualified_buf).cloned();
            let (key, key_source) = match known {
                Some((key, source)) => (Some(key), Some(source)),
                None => (None, None),
            };
            self.registry.tables.insert(
                self.qualified_buf.clone(),
                TableSchema {
                    schema: t.schema.to_string(),
                    name: t.name.to_string(),
                    columns: Vec::new(),
                    key,
                    key_source,
                },
            );
        }
        (
            self.registry
                .tables
                .get_mut(&self.qualified_buf)
                .expect("inserted above"),
            created,
        )
    }

    /// INSERT or UPDATE with its new tuple.
    fn row(
        &mut self,
        table: &TableName<'_>,
        old_key: Option<&Tuple<'_>>,
        new: &Tuple<'_>,
        pos: RecPos,
        is_insert: bool,
        src: &mut dyn RecordSource,
    ) -> Result<(), BatchError> {
        if old_key.is_none() && self.index_known(table, new, pos, is_insert)? {
            return Ok(());
        }
        let (ts, _) = self.table_schema(table);
        let mut keyless = ts.key.is_none();
        if !ts.matches(&new.columns) {
            let ops = if ts.columns.is_empty() {
                ts.columns = new.columns.iter().map(ColumnDef::from_column).collect();
                vec![SchemaOp::CreateTable {
                    columns: ts.columns.clone(),
                }]
            } else {
                // Pending changes were recorded under the old columns: index them first.
                self.resolve_unkeyed(table, src)?;
                self.table_schema(table).0.diff(&new.columns)
            };
            let tb = self.table_batch(table);
            tb.close_load();
            tb.signature = None;
            tb.steps.extend(ops.into_iter().map(Step::Schema));
            keyless = self.table_schema(table).0.key.is_none();
        }
        if let Some(old) = old_key {
            self.learn_key(table, old, src)?;
            keyless = self.table_schema(table).0.key.is_none();
        }
        let tb = self.table_batch(table);
        tb.received[usize::from(!is_insert)] += 1;
        if keyless {
            tb.unkeyed.push(pos);
            self.mem += UNKEYED_COST;
            return Ok(());
        }
        self.index_row(table, old_key, new, pos, is_insert)
    }

    /// The common case of [`Self::row`] with one lookup in the registry and one in the batch: a
    /// table seen before, whose key is known and whose columns are `new`'s, and no old key.
    /// `false`: not that case, and nothing was done.
    fn index_known(
        &mut self,
        table: &TableName<'_>,
        new: &Tuple<'_>,
        pos: RecPos,
        is_insert: bool,
    ) -> Result<bool, BatchError> {
        qualified_into(&mut self.qualified_buf, table);
        let Some(ts) = self.registry.tables.get(self.qualified_buf.as_str()) else {
            return Ok(false);
        };
        if ts.key.is_none() || !ts.matches(&new.columns) {
            return Ok(false);
        }
        let Some(tb) = self.tables.get_mut(self.qualified_buf.as_str()) else {
            return Ok(false);
        };
        tb.received[usize::from(!is_insert)] += 1;
        let change = RowChange {
            old_key: None,
            new,
            pos,
            is_insert,
        };
        fold_row(ts, tb, &mut self.keys, &change, &mut self.mem)?;
        self.changes += 1;
        Ok(true)
    }

    /// Indexes a row change of a table whose key is known and whose columns match `new`.
    fn index_row(
        &mut self,
        table: &TableName<'_>,
        old_key: Option<&Tuple<'_>>,
        new: &Tuple<'_>,
        pos: RecPos,
        is_insert: bool,
    ) -> Result<(), BatchError> {
        qualified_into(&mut self.qualified_buf, table);
        let ts = self
            .registry
            .tables
            .get(self.qualified_buf.as_str())
            .expect("row() registered the table");
        let tb = self
            .tables
            .entry_ref(self.qualified_buf.as_str())
            .or_insert_with(|| TableBatch::new(&table.schema, &table.name));
        let change = RowChange {
            old_key,
            new,
            pos,
            is_insert,
        };
        fold_row(ts, tb, &mut self.keys, &change, &mut self.mem)?;
        self.changes += 1;
        Ok(())
    }

    fn delete(
        &mut self,
        table: &TableName<'_>,
        old: &Tuple<'_>,
        src: &mut dyn RecordSource,
    ) -> Result<(), BatchError> {
        self.learn_key(table, old, src)?;
        self.table_schema(table);
        self.table_batch(table);
        // Disjoint borrows: nothing is cloned per DELETE unless a load has to be created.
        let Self {
            registry,
            tables,
            qualified_buf,
            keys,
            ..
        } = self;
        let ts = registry
            .tables
            .get(qualified_buf.as_str())
            .expect("table_schema() registered it");
        let tb = tables
            .get_mut(qualified_buf.as_str())
            .expect("table_batch() created it");
        tb.received[2] += 1;
        let load = tb.current.get_or_insert_with(|| {
            TableLoad::new(
                ts.columns.clone(),
                ts.key.clone().unwrap_or_default(),
                ts.key_indexes().unwrap_or_default(),
            )
        });
        encode_old_key(&mut keys.new, qualified_buf, &load.key, old)?;
        let before = load.mem;
        let grew = match load.delete(&keys.new) {
            Applied::Done => load.mem.saturating_sub(before),
            Applied::Conflict => {
                let load = tb.restart_load();
                let again = load.delete(&keys.new);
                debug_assert_eq!(again, Applied::Done, "a fresh load accepts any change");
                load.mem
            }
        };
        self.mem += grew;
        self.changes += 1;
        Ok(())
    }

    /// Learns the key from a DELETE / `old-key:` tuple if none is known (then indexes what was
    /// waiting for it), or checks the tuple against the key in use.
    fn learn_key(
        &mut self,
        table: &TableName<'_>,
        old: &Tuple<'_>,
        src: &mut dyn RecordSource,
    ) -> Result<(), BatchError> {
        let (ts, _) = self.table_schema(table);
        match &ts.key {
            Some(key) => {
                if key.iter().any(|k| old.get(k).is_some()) {
                    return Ok(());
                }
                Err(BatchError::KeyMismatch {
                    table: ts.qualified(),
                    in_use: key.clone(),
                    seen: old.columns.iter().map(|c| c.name.to_string()).collect(),
                })
            }
            None => {
                ts.key = Some(old.columns.iter().map(|c| c.name.to_string()).collect());
                ts.key_source = Some(KeySource::ReplicaIdentity);
                tracing::info!(table = %ts.qualified(), key = ?ts.key, "key learned from replica identity");
                self.resolve_unkeyed(table, src)
            }
        }
    }

    /// Indexes the changes that waited for `table`'s key, asking the source catalog (a table
    /// created or renamed after the start) and then falling back to a column named `id` when
    /// no key is known; an error when there is none.
    fn resolve_unkeyed(
        &mut self,
        table: &TableName<'_>,
        src: &mut dyn RecordSource,
    ) -> Result<(), BatchError> {
        if self.table_batch(table).unkeyed.is_empty() {
            return Ok(());
        }
        let asked = if self.table_schema(table).0.key.is_none() {
            self.known_keys.from_catalog(&table.schema, &table.name)
        } else {
            None
        };
        let (ts, _) = self.table_schema(table);
        if let Some(key) =
            asked.filter(|k| k.iter().all(|c| ts.columns.iter().any(|d| &d.name == c)))
        {
            tracing::info!(table = %ts.qualified(), key = ?key, "key read from the source catalog (the table is newer than the start)");
            ts.key = Some(key);
            ts.key_source = Some(KeySource::Catalog);
        }
        if ts.key.is_none() {
            if !ts.columns.iter().any(|c| c.name == "id") {
                return Err(BatchError::NoKey {
                    table: ts.qualified(),
                });
            }
            ts.key = Some(vec!["id".to_string()]);
            ts.key_source = Some(KeySource::IdColumn);
            tracing::info!(table = %ts.qualified(), "no key known: using column `id`");
        }
        let pending = std::mem::take(&mut self.table_batch(table).unkeyed);
        self.mem = self.mem.saturating_sub(pending.len() * UNKEYED_COST);
        for pos in pending {
            let raw = src.message_at(pos)?;
            match parse_message(&raw, 0)? {
                Message::Insert { new: Some(new), .. } => {
                    self.index_row(table, None, &new, pos, true)?
                }
                Message::Update {
                    new: Some(new),
                    old_key,
                    ..
                } => self.index_row(table, old_key.as_ref(), &new, pos, false)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Closes the batch: resolves pending keys (falling back to `id`), returns every table's
    /// steps in name order and starts an empty batch. The registry carries over.
    pub fn take(&mut self, src: &mut dyn RecordSource) -> Result<Batch, BatchError> {
        let pending: Vec<TableName<'static>> = self
            .tables
            .values()
            .filter(|tb| !tb.unkeyed.is_empty())
            .map(|tb| TableName {
                schema: tb.schema.clone().into(),
                name: tb.name.clone().into(),
            })
            .collect();
        for t in pending {
            self.resolve_unkeyed(&t, src)?;
        }
        let mut touched: Vec<_> = self.tables.drain().collect();
        touched.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut tables = Vec::with_capacity(touched.len());
        for (_, mut tb) in touched {
            tb.close_load();
            if !tb.steps.is_empty() {
                tables.push(tb);
            }
        }
        self.mem = 0;
        Ok(Batch {
            tables,
            changes: std::mem::take(&mut self.changes),
        })
    }
}

fn ts_name(t: &TableName<'_>) -> String {
    format!("{}.{}", t.schema, t.name)
}

fn no_tuple(t: &TableName<'_>, op: &'static str) -> BatchError {
    BatchError::NoTupleData {
        table: ts_name(t),
        op,
    }
}

/// Folds a row change into `tb`'s current load (a new one from `ts` if there is none), or into a
/// fresh load when the current one cannot take it; `mem` grows by what the index grew.
fn fold_row(
    ts: &TableSchema,
    tb: &mut TableBatch,
    keys: &mut KeyScratch,
    change: &RowChange<'_, '_>,
    mem: &mut usize,
) -> Result<(), BatchError> {
    let load = current_load(ts, tb)?;
    encode_new_key(&mut keys.new, ts, &load.key_idx, change.new)?;
    if let Some(old) = change.old_key {
        encode_old_key(&mut keys.old, &ts.qualified(), &load.key, old)?;
    }
    let old = change.old_key.map(|_| keys.old.as_slice());
    let mask = known_columns(change.new);
    let encoded = Encoded {
        is_insert: change.is_insert,
        old,
        key: &keys.new,
        pos: change.pos,
        mask: mask.as_deref(),
    };
    fold_encoded(tb, &encoded, mem)
}

/// `tb`'s current load, started from `ts` if there is none.
fn current_load<'t>(
    ts: &TableSchema,
    tb: &'t mut TableBatch,
) -> Result<&'t mut TableLoad, BatchError> {
    if tb.current.is_none() {
        tb.current = Some(new_load(ts)?);
    }
    Ok(tb.current.as_mut().expect("set above"))
}

/// A row change with its keys encoded.
struct Encoded<'k> {
    is_insert: bool,
    old: Option<&'k [u8]>,
    key: &'k [u8],
    pos: RecPos,
    mask: Option<&'k [bool]>,
}

/// Applies `change` to `tb`'s current load (which the caller made), or to a fresh load when
/// the current one cannot take it; `mem` grows by what the index grew.
fn fold_encoded(
    tb: &mut TableBatch,
    change: &Encoded<'_>,
    mem: &mut usize,
) -> Result<(), BatchError> {
    let Encoded {
        is_insert,
        old,
        key,
        pos,
        mask,
    } = *change;
    let load = tb
        .current
        .as_mut()
        .expect("the caller made the current load (current_load)");
    let before = load.mem;
    match apply_to(load, is_insert, old, key, pos, mask) {
        Applied::Done => *mem = (*mem + load.mem).saturating_sub(before),
        Applied::Conflict => {
            let load = tb.restart_load();
            let again = apply_to(load, is_insert, old, key, pos, mask);
            debug_assert_eq!(again, Applied::Done, "a fresh load accepts any change");
            *mem += load.mem;
        }
    }
    Ok(())
}

fn apply_to(
    load: &mut TableLoad,
    is_insert: bool,
    old: Option<&[u8]>,
    key: &[u8],
    pos: RecPos,
    mask: Option<&[bool]>,
) -> Applied {
    match (is_insert, old) {
        (true, _) => load.insert(key, pos),
        (false, Some(old)) => load.update_key(old, key, pos, mask),
        (false, None) => load.update(key, pos, mask),
    }
}

/// An empty load with the table's columns and key; an error when a key column is not among the
/// columns.
fn new_load(ts: &TableSchema) -> Result<TableLoad, BatchError> {
    let key = ts.key.clone().unwrap_or_default();
    let key_idx = ts
        .key_indexes()
        .map_err(|column| BatchError::KeyColumnMissing {
            table: ts.qualified(),
            column,
            key: key.clone(),
        })?;
    Ok(TableLoad::new(ts.columns.clone(), key, key_idx))
}

/// Encodes the key of a new tuple (key columns by index in `key_idx`) into `out`. A key column
/// left unchanged-toast-datum is an error: the row cannot be identified.
#[inline]
fn encode_new_key(
    out: &mut Vec<u8>,
    ts: &TableSchema,
    key_idx: &[usize],
    new: &Tuple<'_>,
) -> Result<(), BatchError> {
    let mut toast_key = None;
    table_batch::encode_key(
        out,
        key_idx.iter().map(|&i| {
            let c = new.columns.get(i)?;
            if c.value == Value::UnchangedToast {
                toast_key = Some(c.name.to_string());
            }
            key_bytes(&c.value)
        }),
    );
    match toast_key {
        Some(column) => Err(BatchError::KeyUnchangedToast {
            table: ts.qualified(),
            column,
        }),
        None => Ok(()),
    }
}

/// The columns of `new` whose value is in the stream: `None` when all are, else `false` for each
/// unchanged-toast-datum column (an update of the others only).
#[inline]
fn known_columns(new: &Tuple<'_>) -> Option<Vec<bool>> {
    new.columns
        .iter()
        .any(|c| c.value == Value::UnchangedToast)
        .then(|| {
            new.columns
                .iter()
                .map(|c| c.value != Value::UnchangedToast)
                .collect()
        })
}

/// Encodes the key from an old-key / DELETE tuple by column name. NULL key columns are omitted
/// by test_decoding, so a missing column is NULL — but at least one must be there.
fn encode_old_key(
    out: &mut Vec<u8>,
    table: &str,
    key: &[String],
    old: &Tuple<'_>,
) -> Result<(), BatchError> {
    if !key.iter().any(|k| old.get(k).is_some()) {
        return Err(BatchError::KeyMismatch {
            table: table.to_string(),
            in_use: key.to_vec(),
            seen: old.columns.iter().map(|c| c.name.to_string()).collect(),
        });
    }
    table_batch::encode_key(
        out,
        key.iter().map(|k| {
            old.get(k)
                .map(|c: &Column<'_>| &c.value)
                .and_then(key_bytes)
        }),
    );
    Ok(())
}

/// The bytes a key value is indexed by: its text when unescaping needs no copy, else the raw
/// quoted form (unique all the same).
fn key_bytes<'a>(v: &Value<'a>) -> Option<&'a [u8]> {
    match *v {
        Value::Null | Value::UnchangedToast => None,
        Value::Unquoted(b) | Value::Bits(b) | Value::Quoted(b) => Some(b),
    }
}
