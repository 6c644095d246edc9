//! Target names and SQL quoting (pure, no I/O). Everything here is re-exported by `sql`.
//!
//! Redshift folds ASCII letters of identifiers to lower case **even when they are quoted** (unless
//! the cluster sets `enable_case_sensitive_identifier`, which re_dms does not assume), and allows
//! at most 127 bytes per identifier. So every target name is folded here, once, and always sent
//! quoted (`"..."`, `"` doubled): what we send is exactly what the catalog will hold, and the
//! `information_schema` checks compare against the folded names. Only ASCII letters are folded,
//! as Redshift documents; other characters are kept.
//!
//! Two source names folding to one target name (columns `Id` and `id`; tables `s.Users` and
//! `s.users`, or `a.t` mapped by `schema_map` onto an existing `b.t`) would silently merge data, so
//! they are errors naming both, except tables sent to one target on purpose: with `load_into`, or
//! partitions sent to their partition root by the source catalog.
//!
//! String literals: Redshift descends from PostgreSQL 8.0 and treats a backslash in a string
//! literal as an escape (its LIKE docs write the default escape as `'\\'`), while PostgreSQL (the
//! test stack's backend) has `standard_conforming_strings = on`. A literal containing a backslash
//! would read differently in the two, so [`quote_literal`] spells backslashes as `CHR(92)`, which
//! both read the same; COPY's options take plain literals only, so [`copy_literal`] refuses them.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::Config;
use crate::csv::manifest::ColumnManifest;

/// Redshift's identifier limit, in bytes.
pub const MAX_IDENT_BYTES: usize = 127;

/// Everything the planner refuses, naming the table / column / value concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error(
        "table {table}: columns {first:?} and {second:?} both become column {target:?} in Redshift \
         (identifiers are folded to lower case); rename one in the source"
    )]
    ColumnCollision {
        table: String,
        first: String,
        second: String,
        target: String,
    },
    #[error(
        "tables {first} and {second} both load into Redshift table {target} (names are folded to \
         lower case; check redshift.schema_map); use [tables.\"{second}\"] load_into if intended"
    )]
    TableCollision {
        first: String,
        second: String,
        target: String,
    },
    #[error("{what} {name:?} is {bytes} bytes long; Redshift allows at most {MAX_IDENT_BYTES}")]
    NameTooLong {
        what: String,
        name: String,
        bytes: usize,
    },
    #[error("{what} {name:?} contains a NUL character, which no identifier may hold")]
    InvalidName { what: String, name: String },
    #[error(
        "table {table}: {what} contains a backslash or NUL, which COPY cannot be given portably"
    )]
    UnsafeCopyValue { table: String, what: String },
    #[error("table {table}, column {column:?}: {ty:?} is not a Redshift type name")]
    BadType {
        table: String,
        column: String,
        ty: String,
    },
    #[error("table {table}: no S3 URL for file {path:?}")]
    MissingUrl { table: String, path: String },
    #[error("table {table}: file {path:?} names column {column:?}, which its load does not list")]
    UnknownColumn {
        table: String,
        path: String,
        column: String,
    },
    #[error(
        "table {table}: file {path:?} needs the table's key but it has none \
         (set [tables.\"{table}\"] primary_key)"
    )]
    NoKey { table: String, path: String },
}

/// A table in Redshift: schema and name, already folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetTable {
    pub schema: String,
    pub name: String,
}

impl TargetTable {
    /// `"schema"."name"`, ready for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Both parts within Redshift's limits.
    pub fn check(&self) -> Result<(), SqlError> {
        check_ident("schema", &self.schema)?;
        check_ident("table", &self.name)
    }
}

impl fmt::Display for TargetTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Source table -> target table, from `redshift.schema_map`, `[tables."s.t"] load_into` and
/// (passed in by the caller) the partition parent the source catalog names.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    schema_map: BTreeMap<String, String>,
    /// Exact source `schema.table` -> `load_into` value as written.
    load_into: BTreeMap<String, String>,
}

impl Naming {
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.redshift.schema_map.clone(),
            config
                .tables
                .iter()
                .filter_map(|(k, t)| t.load_into.clone().map(|l| (k.clone(), l)))
                .collect(),
        )
    }

    pub fn new(schema_map: BTreeMap<String, String>, load_into: BTreeMap<String, String>) -> Self {
        Self {
            schema_map,
            load_into,
        }
    }

    /// Where source table `schema.table` goes, not knowing its partition parent:
    /// [`Naming::target_table_with_parent`] with `None`.
    pub fn target_table(&self, schema: &str, table: &str) -> TargetTable {
        self.target_table_with_parent(schema, table, None)
    }

    /// Where source table `schema.table` goes: `load_into` first (its value is in source
    /// namespace, `schema.table`; without a `.` it names a table in the same schema), then
    /// `parent` (the partition root the source catalog names for a partition, `(schema,
    /// table)`), then the table itself; then `schema_map` on the schema, then folding to lower
    /// case. Lengths are checked by [`TargetTable::check`] (the planner does).
    pub fn target_table_with_parent(
        &self,
        schema: &str,
        table: &str,
        parent: Option<(&str, &str)>,
    ) -> TargetTable {
        let (s, t) = match self.load_into.get(&format!("{schema}.{table}")) {
            Some(into) => match into.split_once('.') {
                Some((s, t)) => (s, t),
                None => (schema, into.as_str()),
            },
            None => parent.unwrap_or((schema, table)),
        };
        let s = self.schema_map.get(s).map(String::as_str).unwrap_or(s);
        TargetTable {
            schema: fold(s),
            name: fold(t),
        }
    }

    /// Whether `schema.table` was sent elsewhere on purpose.
    pub fn has_load_into(&self, schema: &str, table: &str) -> bool {
        self.load_into.contains_key(&format!("{schema}.{table}"))
    }

    /// Given every source table seen (`(schema, table, catalog parent)`), reports two that map
    /// to one target table without asking for it. Tables with `load_into`, and partitions sent
    /// to their parent by the catalog, may share a target with each other and with (at most)
    /// one table that maps there by its own name (the parent itself).
    pub fn check_table_collision<'a, I>(&self, tables: I) -> Result<(), SqlError>
    where
        I: IntoIterator<Item = (&'a str, &'a str, Option<(&'a str, &'a str)>)>,
    {
        let mut by_name: BTreeMap<TargetTable, String> = BTreeMap::new();
        for (schema, table, parent) in tables {
            let target = self.target_table_with_parent(schema, table, parent);
            target.check()?;
            if parent.is_some() || self.has_load_into(schema, table) {
                continue;
            }
            let source = format!("{schema}.{table}");
            match by_name.get(&target) {
                Some(first) if *first != source => {
                    return Err(SqlError::TableCollision {
                        first: first.clone(),
                        second: source,
                        target: target.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    by_name.insert(target, source);
                }
            }
        }
        Ok(())
    }
}

/// Redshift's folding: ASCII letters to lower case.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The target name of a source column (folded to lower case).
pub fn target_column(name: &str) -> String {
    fold(name)
}

/// `"name"` with `"` doubled. Does not fold: pass target names.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks one target identifier: at most [`MAX_IDENT_BYTES`], no NUL. `what` names it in errors
/// (`"column of table s.t"`).
pub fn check_ident(what: &str, name: &str) -> Result<(), SqlError> {
    if name.contains('\0') {
        return Err(SqlError::InvalidName {
            what: what.to_string(),
            name: name.to_string(),
        });
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(SqlError::NameTooLong {
            what: what.to_string(),
            name: name.to_string(),
            bytes: name.len(),
        });
    }
    Ok(())
}

/// Two columns of `table` folding to one target name is an error naming both; so is a name
/// too long for Redshift.
pub fn check_collisions(table: &str, columns: &[ColumnManifest]) -> Result<(), SqlError> {
    check_column_names(table, columns.iter().map(|c| c.name.as_str()))
}

/// [`check_collisions`] over bare names.
pub fn check_column_names<'a>(
    table: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), SqlError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in names {
        let target = target_column(name);
        check_ident(&format!("column of table {table}"), &target)?;
        if let Some(first) = seen.insert(target.clone(), name) {
            if first != name {
                return Err(SqlError::ColumnCollision {
                    table: table.to_string(),
                    first: first.to_string(),
                    second: name.to_string(),
                    target,
                });
            }
        }
    }
    Ok(())
}

/// A string literal that reads the same in Redshift and PostgreSQL: `'...'` with `'` doubled,
/// and each backslash spelled `CHR(92)` (see the module docs), e.g. `('a' || CHR(92) || 'b')`.
/// Only for places that take expressions (not COPY options).
pub fn quote_literal(value: &str) -> String {
    let plain = |s: &str| format!("'{}'", s.replace('\'', "''"));
    if !value.contains('\\') {
        return plain(value);
    }
    let parts: Vec<String> = value.split('\\').map(plain).collect();
    format!("({})", parts.join(" || CHR(92) || "))
}

/// A plain literal for a COPY option (URL, credentials, region): refuses backslashes and NUL,
/// which cannot be written portably (see the module docs). `what` names the value in errors.
pub fn copy_literal(table: &str, what: &str, value: &str) -> Result<String, SqlError> {
    if value.contains('\\') || value.contains('\0') {
        return Err(SqlError::UnsafeCopyValue {
            table: table.to_string(),
            what: what.to_string(),
        });
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

#[cfg(test)]
mod tests;
