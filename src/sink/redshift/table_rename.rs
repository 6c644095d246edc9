//! Following a source table's rename in the warehouse: `ALTER TABLE old RENAME TO new` instead
//! of a new, empty target table next to the old one.
//!
//! test_decoding prints a renamed table under its new name only, so the batcher sees a table it
//! never saw (a create). The source catalog knows better: a table keeps its oid across `RENAME
//! TO` (and a partitioned root's partitions follow it), and `SourceCatalog::previous_table_names`
//! names what it was called before. The lanes ask [`RedshiftLoader::renamed_from`] once per run
//! for each target table they have not seen, and route the renamed table into the old name's
//! lane, so the rename runs after every earlier segment of the old name loaded. The apply runs
//! [`RedshiftLoader::follow_rename`] first (after the ledger check): when the new target table
//! is absent and an old one present, one statement renames it.
//!
//! Rules (conservative: a wrong rename would put one table's rows in another):
//! - an old name that another source table holds now (a swap, or the old name re-created) is
//!   left alone, with a warning;
//! - only within one target schema (Redshift cannot move a table with RENAME TO); a table moved
//!   to another schema, or sent elsewhere by `load_into`, gets a new target table, with a warning;
//! - the ledger rows of the segments loaded before keep the old name: they record what loaded
//!   where, and they are what makes a replay of such a segment (named by the old name) a no-op.
//!   Rows of later segments name the new one.

use super::load::RedshiftLoader;
use super::pool::{within, Attempt};
use super::sql::{quote_ident, TargetTable};
use crate::csv::manifest::TableManifest;
use crate::metrics;

/// Binds: `$1` schema, `$2` table (target names).
pub const TABLE_EXISTS_SQL: &str =
    "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2";

/// `ALTER TABLE from RENAME TO to` (same schema: `to`'s schema is `from`'s).
pub fn rename_table_sql(from: &TargetTable, to: &TargetTable) -> String {
    format!(
        "ALTER TABLE {} RENAME TO {}",
        from.sql(),
        quote_ident(&to.name)
    )
}

impl RedshiftLoader {
    /// The target tables `table`'s rows went to under the names its source table (or, for a
    /// partition, its partition root) had before, nearest first; empty when it was never
    /// renamed (as far as the source catalog saw) or cannot follow (see the module docs).
    pub fn renamed_from(&self, table: &TableManifest, target: &TargetTable) -> Vec<TargetTable> {
        let Some(catalog) = self.catalog.get() else {
            return Vec::new();
        };
        let (schema, name) = catalog
            .parent_of(&table.schema, &table.name)
            .unwrap_or((&table.schema, &table.name));
        if self.naming.has_load_into(schema, name) {
            return Vec::new();
        }
        let mut from = Vec::new();
        for (old_schema, old_name) in self.catalog.previous_table_names(schema, name) {
            let old = self.naming.target_table(&old_schema, &old_name);
            let why = if catalog.table(&old_schema, &old_name).is_some() {
                "another source table has the old name now"
            } else if self.naming.has_load_into(&old_schema, &old_name) {
                "the old name was sent elsewhere by load_into"
            } else if old.schema != target.schema {
                "it moved to another schema, and Redshift cannot move a table with RENAME TO"
            } else {
                if old != *target && !from.contains(&old) {
                    from.push(old);
                }
                continue;
            };
            tracing::warn!(
                table = %format!("{schema}.{name}"),
                was = %format!("{old_schema}.{old_name}"),
                target = %target,
                "source table renamed, but {why}: its rows load into {target}; the rows loaded before stay in {old}"
            );
        }
        from
    }

    /// Renames the first of `from` the warehouse has to `to`, when `to` is not there yet (so
    /// a replay, after the rename committed, does nothing).
    pub(super) async fn follow_rename(
        &self,
        c: &tokio_postgres::Client,
        from: &[TargetTable],
        to: &TargetTable,
    ) -> Result<(), Attempt> {
        if from.is_empty() || self.table_exists(c, to).await? {
            return Ok(());
        }
        for old in from {
            if !self.table_exists(c, old).await? {
                continue;
            }
            tracing::info!(from = %old, to = %to, "source table renamed: renaming its target table");
            let deadline = self.pool.deadline();
            let sql = rename_table_sql(old, to);
            within(deadline, "renaming a table", c.batch_execute(&sql)).await?;
            metrics::TABLES_RENAMED.inc();
            return Ok(());
        }
        Ok(())
    }

    async fn table_exists(
        &self,
        c: &tokio_postgres::Client,
        t: &TargetTable,
    ) -> Result<bool, Attempt> {
        let rows = within(
            self.pool.deadline(),
            "checking a table",
            c.query(TABLE_EXISTS_SQL, &[&t.schema, &t.name]),
        )
        .await?;
        Ok(!rows.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rename_keeps_the_schema_and_quotes_names() {
        let from = TargetTable {
            schema: "app".into(),
            name: "orders".into(),
        };
        let to = TargetTable {
            schema: "app".into(),
            name: "Orders \"v2\"".into(),
        };
        assert_eq!(
            rename_table_sql(&from, &to),
            r#"ALTER TABLE "app"."orders" RENAME TO "Orders ""v2""""#
        );
    }
}
