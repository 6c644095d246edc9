//! What re_dms knows about each source table: columns, their Postgres types, the primary key.
//!
//! test_decoding never reports DDL, so the schema is inferred from the rows themselves: every
//! INSERT/UPDATE prints all live columns with their types. [`TableSchema::diff`] compares a row's
//! columns with the known schema and yields the schema operations that turn one into the other.
//! The registry is saved in every WAL segment's snapshot record, so re-batching a segment after
//! a crash sees exactly the schema it saw the first time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::source::decoding::{Column, TableName};

/// A column as the source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// The Postgres type as test_decoding prints it (no typmod).
    pub pg_type: String,
}

impl ColumnDef {
    pub fn from_column(c: &Column<'_>) -> Self {
        Self {
            name: c.name.to_string(),
            pg_type: c.type_name.to_string(),
        }
    }
}

/// Where a table's primary key came from (README: "Primary keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// `[tables."s.t"] primary_key`
    Config,
    /// The source catalog.
    Catalog,
    /// The key columns test_decoding printed in a DELETE or `old-key:`.
    ReplicaIdentity,
    /// A column named `id`.
    IdColumn,
}

/// One change to a table's shape, applied to the target in order with the loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SchemaOp {
    /// First sight of the table.
    CreateTable {
        columns: Vec<ColumnDef>,
    },
    AddColumn {
        column: ColumnDef,
    },
    DropColumn {
        name: String,
    },
    /// Same column, another type (e.g. `integer` -> `bigint`).
    AlterColumnType {
        name: String,
        from: String,
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// `None` until the key is known (see [`KeySource`]).
    pub key: Option<Vec<String>>,
    pub key_source: Option<KeySource>,
}

impl TableSchema {
    pub fn table_name(&self) -> TableName<'static> {
        TableName {
            schema: self.schema.clone().into(),
            name: self.name.clone().into(),
        }
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Whether `row`'s column names and types are exactly the known ones, in order.
    pub fn matches(&self, row: &[Column<'_>]) -> bool {
        self.columns.len() == row.len()
            && self
                .columns
                .iter()
                .zip(row)
                .all(|(k, c)| k.name == c.name && k.pg_type == c.type_name)
    }

    /// The operations that turn the known columns into `row`'s, in the order to apply them:
    /// drops, then type changes, then adds (in the row's column order). Updates `self.columns`.
    pub fn diff(&mut self, row: &[Column<'_>]) -> Vec<SchemaOp> {
        self.follow_key(row);
        let mut ops = Vec::new();
        for known in &self.columns {
            if !row.iter().any(|c| c.name == known.name) {
                ops.push(SchemaOp::DropColumn {
                    name: known.name.clone(),
                });
            }
        }
        for c in row {
            match self.columns.iter().find(|k| k.name == c.name) {
                Some(k) if k.pg_type != c.type_name => ops.push(SchemaOp::AlterColumnType {
                    name: k.name.clone(),
                    from: k.pg_type.clone(),
                    to: c.type_name.to_string(),
                }),
                Some(_) => {}
                None => ops.push(SchemaOp::AddColumn {
                    column: ColumnDef::from_column(c),
                }),
            }
        }
        self.columns = row.iter().map(ColumnDef::from_column).collect();
        ops
    }

    /// Keeps the key in step with `row` when a key column is gone from it. test_decoding prints
    /// columns in attnum order, and an added column always gets the highest attnum, so a single
    /// new name between the gone column's surviving neighbours, with a known column after it, is
    /// that column renamed: the key follows it. Otherwise the key is forgotten and learned again
    /// (a DELETE or old-key, the catalog at the next start, a column named `id`).
    fn follow_key(&mut self, row: &[Column<'_>]) {
        let Some(mut key) = self.key.take() else {
            return;
        };
        let in_row = |name: &str| row.iter().position(|c| c.name == name);
        // Only when the key column is the one column gone: with two gone, the single new name
        // next to them may be the other one renamed.
        let gone = self
            .columns
            .iter()
            .filter(|c| in_row(&c.name).is_none())
            .count();
        for k in key.iter_mut() {
            if in_row(k).is_some() {
                continue;
            }
            let Some(i) = self.columns.iter().position(|c| c.name == *k) else {
                self.key_source = None;
                return;
            };
            let prev = self.columns[..i].iter().rev().find_map(|c| in_row(&c.name));
            let next = self.columns[i + 1..].iter().find_map(|c| in_row(&c.name));
            let from = prev.map_or(0, |p| p + 1);
            let new_between: Vec<&Column<'_>> = match next {
                Some(n) if n >= from => row[from..n]
                    .iter()
                    .filter(|c| !self.columns.iter().any(|k| k.name == c.name))
                    .collect(),
                _ => Vec::new(),
            };
            match new_between.as_slice() {
                [renamed] if gone == 1 => *k = renamed.name.to_string(),
                _ => {
                    self.key_source = None;
                    return;
                }
            }
        }
        self.key = Some(key);
    }

    /// Index of each key column in `columns`, or the first key column that is missing.
    pub fn key_indexes(&self) -> Result<Vec<usize>, String> {
        let key = self.key.as_deref().unwrap_or_default();
        key.iter()
            .map(|k| {
                self.columns
                    .iter()
                    .position(|c| &c.name == k)
                    .ok_or_else(|| k.clone())
            })
            .collect()
    }
}

/// Every table seen so far, by `schema.table`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRegistry {
    pub tables: BTreeMap<String, TableSchema>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::decoding::Value;

    fn col<'a>(name: &'a str, ty: &'a str) -> Column<'a> {
        Column {
            name: name.into(),
            type_name: ty,
            value: Value::Null,
        }
    }

    fn table(cols: &[(&str, &str)]) -> TableSchema {
        TableSchema {
            schema: "public".into(),
            name: "t".into(),
            columns: cols
                .iter()
                .map(|(n, t)| ColumnDef {
                    name: n.to_string(),
                    pg_type: t.to_string(),
                })
                .collect(),
            key: Some(vec!["id".into()]),
            key_source: Some(KeySource::IdColumn),
        }
    }

    #[test]
    fn diff_adds_drops_and_retypes_in_order() {
        let mut t = table(&[("id", "integer"), ("headline", "text"), ("rev", "integer")]);
        let row = [
            col("id", "bigint"),
            col("rev", "integer"),
            col("author", "text"),
        ];
        assert!(!t.matches(&row));
        let ops = t.diff(&row);
        assert_eq!(
            ops,
            vec![
                SchemaOp::DropColumn {
                    name: "headline".into()
                },
                SchemaOp::AlterColumnType {
                    name: "id".into(),
                    from: "integer".into(),
                    to: "bigint".into()
                },
                SchemaOp::AddColumn {
                    column: ColumnDef {
                        name: "author".into(),
                        pg_type: "text".into()
                    }
                },
            ]
        );
        assert!(t.matches(&row));
        assert!(t.diff(&row).is_empty());
    }

    #[test]
    fn a_renamed_key_column_is_followed_a_dropped_one_forgotten() {
        let mut t = table(&[("id", "integer"), ("v", "text")]);
        t.diff(&[col("rid", "integer"), col("v", "text")]);
        assert_eq!(t.key, Some(vec!["rid".to_string()]));
        // The last column renamed cannot be told from a drop and an add: learned again.
        let mut t = table(&[("v", "text"), ("id", "integer")]);
        t.diff(&[col("v", "text"), col("rid", "integer")]);
        assert_eq!((t.key, t.key_source), (None, None));
        let mut t = table(&[("id", "integer"), ("v", "text")]);
        t.diff(&[col("v", "text"), col("w", "text")]);
        assert_eq!(t.key, None);
        // The key dropped and its neighbour renamed: not followed.
        let mut t = table(&[
            ("a", "text"),
            ("id", "integer"),
            ("x", "text"),
            ("z", "text"),
        ]);
        t.diff(&[col("a", "text"), col("y", "text"), col("z", "text")]);
        assert_eq!(t.key, None);
    }

    #[test]
    fn key_indexes_name_missing_column() {
        let mut t = table(&[("id", "integer")]);
        assert_eq!(t.key_indexes(), Ok(vec![0]));
        t.key = Some(vec!["id".into(), "nope".into()]);
        assert_eq!(t.key_indexes(), Err("nope".to_string()));
    }
}
