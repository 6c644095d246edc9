//! Following a source table's rename in the warehouse: `ALTER TABLE old RENAME TO new` instead
//! of a new, empty target table next to the old one.
//!
//! test_decoding prints a renamed table under its new name only, so the batcher sees a table it
//! never saw (a create). The source catalog knows better: a table keeps its oid across `RENAME
//! TO` (and a partitioned root's partitions follow it), and `SourceCatalog::previous_table_names`
//! names what it was called before. The lanes ask [`RedshiftLoader::renamed_from`] for each
//! table of each segment (in memory) and route a renamed table into the old name's lane, so the
//! rename runs after every earlier segment of the old name loaded. The apply runs
//! [`RedshiftLoader::follow_rename`] first (after the ledger check): when the new target table
//! is absent and an old one present, one statement renames it.
//!
//! The stream may be behind the catalog by several renames (a backlog, two renames between
//! catalog reads): a name the catalog no longer has but the history knew for a table it has
//! now stands for that table ([`RedshiftLoader::target_of`]), so rows written under an
//! intermediate name load into the same target table. A table created under a name whose
//! table was renamed away gets its CREATE back, and a table renamed onto an existing target its
//! columns as guarded ADD COLUMNs ([`RedshiftLoader::with_table_renames`]).
//!
//! Rules (conservative: a wrong rename would put one table's rows in another):
//! - an old name that another source table holds now (a swap, or the old name re-created), or an
//!   old target another source table loads into (`load_into`, partitions, folding), is left
//!   alone, with a warning;
//! - only within one target schema (Redshift cannot move a table with RENAME TO); a table moved
//!   to another schema, or sent elsewhere by `load_into`, gets a new target table, with a warning;
//! - the ledger rows of the segments loaded before keep the old name: they record what loaded
//!   where; the ledger is checked by source table, not target, so a replay of such a segment is
//!   found whatever its target is now. Rows of later segments name the new one.

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
        let (schema, name) = self.catalog_name(table);
        let (schema, name) = catalog
            .parent_of(&schema, &name)
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .unwrap_or((schema, name));
        if self.naming.has_load_into(&table.schema, &table.name)
            || self.naming.has_load_into(&schema, &name)
        {
            return Vec::new();
        }
        let mut from = Vec::new();
        for (old_schema, old_name) in self.catalog.previous_table_names(&schema, &name) {
            let old = self.naming.target_table(&old_schema, &old_name);
            if old == *target || from.contains(&old) {
                continue;
            }
            let why = if catalog.table(&old_schema, &old_name).is_some() {
                "another source table has the old name now"
            } else if self.naming.has_load_into(&old_schema, &old_name) {
                "the old name was sent elsewhere by load_into"
            } else if old.schema != target.schema {
                "it moved to another schema, and Redshift cannot move a table with RENAME TO"
            } else if let Some(other) = self.loads_into(&catalog, &old, (&schema, &name)) {
                tracing::warn!(table = %format!("{schema}.{name}"), other = %other, target = %old, "source table renamed, but another source table loads into its old target table: not renamed there");
                continue;
            } else {
                from.push(old);
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

    /// A source table other than `root` and its partitions whose rows load into `target` now.
    fn loads_into(
        &self,
        catalog: &crate::source::catalog::Catalog,
        target: &TargetTable,
        root: (&str, &str),
    ) -> Option<String> {
        catalog.tables.iter().find_map(|((s, n), t)| {
            let of_root = (s.as_str(), n.as_str()) == root
                || t.parent
                    .as_ref()
                    .is_some_and(|(ps, pn)| (ps.as_str(), pn.as_str()) == root);
            let parent = t.parent.as_ref().map(|(ps, pn)| (ps.as_str(), pn.as_str()));
            (!of_root && self.naming.target_table_with_parent(s, n, parent) == *target)
                .then(|| format!("{s}.{n}"))
        })
    }

    /// `table`'s steps as the warehouse needs them after renames: a table renamed onto an
    /// existing target gets each column of its CREATE as a guarded ADD COLUMN too (columns
    /// added to the source between the last row under the old name and the first under the new
    /// one), and a table created under a name whose table was renamed away gets a CREATE (the
    /// batcher knew the name, so it wrote none; the target table went with the rename).
    pub(super) fn with_table_renames<'a>(
        &self,
        table: &'a TableManifest,
        renamed_from: &[TargetTable],
    ) -> std::borrow::Cow<'a, TableManifest> {
        use crate::csv::manifest::StepManifest;
        let create = table
            .steps
            .iter()
            .position(|s| matches!(s, StepManifest::CreateTable { .. }));
        let mut out = table.clone();
        match create {
            Some(at) if !renamed_from.is_empty() => {
                let StepManifest::CreateTable { columns } = &table.steps[at] else {
                    unreachable!("found above")
                };
                let adds = columns
                    .iter()
                    .map(|c| StepManifest::AddColumn { column: c.clone() });
                out.steps.splice(at + 1..at + 1, adds);
            }
            None if self.catalog.renamed_away(&table.schema, &table.name) => {
                let Some(columns) = table.steps.iter().find_map(|s| match s {
                    StepManifest::Load { columns, .. } => Some(columns.clone()),
                    _ => None,
                }) else {
                    return std::borrow::Cow::Borrowed(table);
                };
                out.steps.insert(0, StepManifest::CreateTable { columns });
            }
            _ => return std::borrow::Cow::Borrowed(table),
        }
        std::borrow::Cow::Owned(out)
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
