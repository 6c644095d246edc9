//! The per-segment manifest: everything a target needs to apply one segment, in order.
//!
//! Written by the CSV stage next to the files it describes, as `manifest.json`:
//! ```json
//! { "version": 1, "segment": 12, "lineage": "5f0c…(32 hex digits)", "legacy": false,
//!   "first_lsn": "0/1", "last_lsn": "0/48", "changes": 40,
//!   "tables": [ { "schema": "public", "name": "users", "key": ["id"],
//!     "steps": [ { "op": "create_table", "columns": [{"name": "id", "pg_type": "bigint", "redshift_type": "BIGINT"}] },
//!                { "op": "load", "columns": [...], "files": [
//!                    { "kind": "delete", "path": "public.users.1.delete.csv.gz", "columns": ["id"], "rows": 1 },
//!                    { "kind": "upsert", "path": "...", "columns": ["id", "email"], "rows": 2 },
//!                    { "kind": "update", "path": "...", "match_columns": ["id"], "columns": ["id", "rev"], "rows": 3 } ] },
//!                { "op": "add_column", "column": {...} }, { "op": "drop_column", "name": "headline" },
//!                { "op": "alter_column_type", "name": "id", "from": "integer", "to": "bigint", "redshift_type": "BIGINT" },
//!                { "op": "truncate" } ] } ] }
//! ```
//! A load is applied as: `update` files (match on `match_columns`, set `columns`), then `delete`
//! files and the keys of `upsert` files (delete by key), then `upsert` rows (insert).
//! Tables are independent of each other; each table's steps are applied in order.

use serde::{Deserialize, Serialize};

use crate::batch::schema::{ColumnDef, SchemaOp};
use crate::csv::typemap::redshift_type;
use crate::lsn::Lsn;
use crate::wal::Lineage;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub segment: u64,
    /// The WAL lineage of the segment: with `segment`, the target's ledger key.
    pub lineage: Lineage,
    /// The segment was written before its WAL directory had a lineage: a ledger row without a
    /// lineage may record it (see `crate::wal`).
    #[serde(default)]
    pub legacy: bool,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// Row changes folded into this segment.
    pub changes: u64,
    pub tables: Vec<TableManifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableManifest {
    pub schema: String,
    pub name: String,
    /// Key columns in use at the end of the segment.
    pub key: Vec<String>,
    pub steps: Vec<StepManifest>,
}

impl TableManifest {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The table's name in the target's ledger: `schema.table` as [`Self::qualified`], unless a
    /// part holds a `.` or `"`; then both parts are quoted (`"a.b"."c"`), so that `"a.b".c` and
    /// `a."b.c"` never share a ledger row.
    pub fn ledger_name(&self) -> String {
        let plain = |p: &str| !p.contains('.') && !p.contains('"');
        if plain(&self.schema) && plain(&self.name) {
            return self.qualified();
        }
        let quote = |p: &str| format!("\"{}\"", p.replace('"', "\"\""));
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnManifest {
    pub name: String,
    pub pg_type: String,
    pub redshift_type: String,
}

impl From<&ColumnDef> for ColumnManifest {
    fn from(c: &ColumnDef) -> Self {
        Self {
            name: c.name.clone(),
            pg_type: c.pg_type.clone(),
            redshift_type: redshift_type(&c.pg_type),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StepManifest {
    CreateTable {
        columns: Vec<ColumnManifest>,
    },
    AddColumn {
        column: ColumnManifest,
    },
    DropColumn {
        name: String,
    },
    /// Never written by the CSV stage: the Redshift target turns a drop and an add that the
    /// source catalog shows to be a rename into this (`sink::redshift::sql::renames`).
    RenameColumn {
        from: String,
        to: String,
    },
    AlterColumnType {
        name: String,
        from: String,
        to: String,
        redshift_type: String,
    },
    Truncate,
    Load {
        columns: Vec<ColumnManifest>,
        key: Vec<String>,
        files: Vec<FileManifest>,
    },
}

impl StepManifest {
    /// A change to the table's columns (or its creation), not to its rows.
    pub fn is_schema_change(&self) -> bool {
        !matches!(self, StepManifest::Load { .. } | StepManifest::Truncate)
    }
}

impl From<&SchemaOp> for StepManifest {
    fn from(op: &SchemaOp) -> Self {
        match op {
            SchemaOp::CreateTable { columns } => StepManifest::CreateTable {
                columns: columns.iter().map(Into::into).collect(),
            },
            SchemaOp::AddColumn { column } => StepManifest::AddColumn {
                column: column.into(),
            },
            SchemaOp::DropColumn { name } => StepManifest::DropColumn { name: name.clone() },
            SchemaOp::AlterColumnType { name, from, to } => StepManifest::AlterColumnType {
                name: name.clone(),
                from: from.clone(),
                to: to.clone(),
                redshift_type: redshift_type(to),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Keys of rows to delete.
    Delete,
    /// Full rows: delete by key, then insert.
    Upsert,
    /// Partial rows (TOAST columns not re-sent): `match_columns` find the row, `columns` are set.
    Update,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    pub kind: FileKind,
    /// File name, relative to the segment's directory.
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_columns: Vec<String>,
    pub columns: Vec<String>,
    pub rows: u64,
    /// Compressed size.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> TableManifest {
        TableManifest {
            schema: schema.into(),
            name: name.into(),
            key: Vec::new(),
            steps: Vec::new(),
        }
    }

    #[test]
    fn ledger_names_are_plain_unless_a_part_is_ambiguous() {
        assert_eq!(table("public", "Users").ledger_name(), "public.Users");
        assert_eq!(table("a.b", "c").ledger_name(), "\"a.b\".\"c\"");
        assert_eq!(table("a", "b.c").ledger_name(), "\"a\".\"b.c\"");
        assert_eq!(table("we\"ird", "t").ledger_name(), "\"we\"\"ird\".\"t\"");
        assert_ne!(
            table("a.b", "c").ledger_name(),
            table("a", "b.c").ledger_name()
        );
    }
}
