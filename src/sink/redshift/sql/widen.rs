//! Widening target VARCHAR columns to what the source catalog declares (pure, no I/O; part of
//! `sql`, which re-exports it).
//!
//! test_decoding prints `character varying` whatever the typmod, so `ALTER TABLE ... ALTER COLUMN
//! c TYPE varchar(50)` in the source (or `varchar(n)` -> `text`) never shows in the stream; the
//! catalog shows it, and [`plan_widen`] turns it into `ALTER TABLE t ALTER COLUMN c TYPE
//! VARCHAR(n)` steps. Redshift allows that statement only outside a transaction block, only to
//! widen, and refuses an unchanged size ("target column size should be different"), so each step
//! carries a [`WidthCheck`]: the caller reads the column's current width with
//! [`VARCHAR_WIDTH_SQL`] and runs the step only when [`WidenStep::should_run`] says so (the
//! column exists, is a VARCHAR, and is narrower). Re-running converges: once widened, the check
//! skips it.

use std::collections::BTreeMap;

use super::naming::{check_column_names, quote_ident, target_column, SqlError, TargetTable};
use crate::csv::typemap::{redshift_type_with_typmod, varchar_width, VARCHAR_MAX_BYTES};

/// Binds: `$1` schema, `$2` table, `$3` column (target names, already lower case). One row with
/// the column's declared width when it is a VARCHAR; no row when the column does not exist or
/// has another type (a CHAR(36) is not widened into a VARCHAR). Read it as `Option<i32>`.
pub const VARCHAR_WIDTH_SQL: &str = "SELECT CAST(character_maximum_length AS INTEGER) \
     FROM information_schema.columns \
     WHERE table_schema = $1 AND table_name = $2 AND column_name = $3 \
     AND data_type = 'character varying'";

/// Run the step only if the column is a VARCHAR narrower than `width` bytes. Target names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidthCheck {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub width: u32,
}

/// One widening, run outside any transaction, after its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidenStep {
    pub check: WidthCheck,
    /// `ALTER TABLE "s"."t" ALTER COLUMN "c" TYPE VARCHAR(n)`: one statement.
    pub sql: String,
}

impl WidenStep {
    /// Whether to run `sql`, given the column's current width as [`VARCHAR_WIDTH_SQL`] reads
    /// it (`None`: no row, or a NULL width): only a VARCHAR narrower than wanted is widened;
    /// no such VARCHAR column, or one already as wide, skips the step.
    pub fn should_run(&self, current: Option<i32>) -> bool {
        current.is_some_and(|w| i64::from(w) < i64::from(self.check.width))
    }
}

/// The VARCHAR byte width each column should have by the source catalog (`format_type` by
/// source column name, as `catalog::CatalogTable::columns`), for [`plan_widen`]: every column
/// mapped to a VARCHAR, including VARCHAR(65535) (a `varchar(n)` changed to `text`).
pub fn widen_columns(column_types: &BTreeMap<String, String>) -> Vec<(String, u32)> {
    column_types
        .iter()
        .filter_map(|(name, ft)| {
            varchar_width(&redshift_type_with_typmod(ft)).map(|w| (name.clone(), w))
        })
        .collect()
}

/// Plans widening `target`'s columns: one [`WidenStep`] per `(source column name, wanted
/// VARCHAR bytes)`, in the order given. Widths above 65535 are capped (Redshift's limit); a
/// width of 0 is no VARCHAR and is skipped. `source` names the source table in errors (two
/// columns folding to one target name, names too long).
pub fn plan_widen(
    source: &str,
    target: &TargetTable,
    columns: &[(String, u32)],
) -> Result<Vec<WidenStep>, SqlError> {
    target.check()?;
    check_column_names(source, columns.iter().map(|(c, _)| c.as_str()))?;
    let max = u32::try_from(VARCHAR_MAX_BYTES).unwrap_or(u32::MAX);
    let steps = columns
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(name, width)| {
            let column = target_column(name);
            let width = (*width).min(max);
            WidenStep {
                sql: format!(
                    "ALTER TABLE {} ALTER COLUMN {} TYPE VARCHAR({width})",
                    target.sql(),
                    quote_ident(&column)
                ),
                check: WidthCheck {
                    schema: target.schema.clone(),
                    table: target.name.clone(),
                    column,
                    width,
                },
            }
        })
        .collect();
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> TargetTable {
        TargetTable {
            schema: "sales".into(),
            name: "order \"x\"".into(),
        }
    }

    #[test]
    fn widen_steps_and_their_checks() {
        let cols = vec![
            ("Name".to_string(), 80),
            ("note".to_string(), 70_000),
            ("zero".to_string(), 0),
        ];
        let steps = plan_widen("Sales.Order \"X\"", &target(), &cols).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[0].sql,
            "ALTER TABLE \"sales\".\"order \"\"x\"\"\" ALTER COLUMN \"name\" TYPE VARCHAR(80)"
        );
        assert_eq!(
            steps[0].check,
            WidthCheck {
                schema: "sales".into(),
                table: "order \"x\"".into(),
                column: "name".into(),
                width: 80
            }
        );
        assert!(steps[1].sql.ends_with("\"note\" TYPE VARCHAR(65535)"));
        assert_eq!(steps[1].check.width, 65535);
        // Only a narrower existing VARCHAR is widened: equal would be refused by Redshift,
        // narrowing too; a missing column or one without a width is left alone.
        let s = &steps[0];
        assert!(s.should_run(Some(20)) && s.should_run(Some(79)));
        assert!(!s.should_run(Some(80)) && !s.should_run(Some(65535)));
        assert!(!s.should_run(None));
        assert!(VARCHAR_WIDTH_SQL.contains("character_maximum_length"));
    }

    #[test]
    fn widen_refuses_bad_names() {
        let cols = vec![("Id".to_string(), 10), ("ID".to_string(), 20)];
        let err = plan_widen("s.t", &target(), &cols).unwrap_err();
        assert!(matches!(err, SqlError::ColumnCollision { .. }), "{err:?}");
        let long = vec![("c".repeat(128), 10)];
        assert!(plan_widen("s.t", &target(), &long).is_err());
        let t = TargetTable {
            schema: "s".into(),
            name: "t".repeat(128),
        };
        assert!(plan_widen("s.t", &t, &[]).is_err());
        assert!(plan_widen("s.t", &target(), &[]).unwrap().is_empty());
    }

    #[test]
    fn widths_from_the_catalog() {
        let types: BTreeMap<String, String> = [
            ("a", "character varying(20)"),
            ("b", "character(3)"),
            ("c", "text"),
            ("d", "integer"),
            ("e", "numeric(12,4)"),
            ("f", "character varying(20)[]"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
        assert_eq!(
            widen_columns(&types),
            [
                ("a".to_string(), 80),
                ("b".to_string(), 12),
                ("c".to_string(), 65535),
                ("f".to_string(), 65535),
            ]
        );
    }
}
