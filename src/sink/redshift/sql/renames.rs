//! Telling a column rename from a drop and an add (pure, no I/O; part of the Redshift SQL).
//!
//! test_decoding shows only the new name, so the batcher sees a renamed column as one column
//! gone and another one new: `DropColumn { d }` + `AddColumn { d2 }`, or only `AddColumn { d2 }`
//! when the old name came back in the same change (`RENAME d TO d2; ADD COLUMN d`: the batcher
//! takes the new `d` for the old one). Applied as such, every value of `d` written before would
//! stay behind in a dropped column. The source catalog knows better: a column keeps its attnum
//! across a rename, and `SourceCatalog::renamed_from` answers which name the column now called
//! `d2` had before. [`apply_renames`] rewrites a table-segment's steps with that answer:
//! - `DropColumn { d }` … `AddColumn { d2 }` in one run of schema steps → `RenameColumn { d → d2 }`;
//! - `AddColumn { d2 }` while the next load still has `d` (re-added) → `RenameColumn { d → d2 }`
//!   then `AddColumn { d }` with the load's type for it (an `AlterColumnType { d }` of that run
//!   is dropped: the new `d` is created with its type);
//!
//! and names the drop-and-add pairs it leaves as they are, for a warning.

use crate::csv::manifest::{ColumnManifest, StepManifest, TableManifest};

/// The steps with renames turned into [`StepManifest::RenameColumn`] (see the module docs);
/// `None` when nothing changed. Also the `(dropped, added)` pairs of each run of schema steps
/// left as a drop and an add, for the caller to warn about.
pub fn apply_renames(
    table: &TableManifest,
    renamed_from: impl Fn(&str) -> Option<String>,
) -> (Option<TableManifest>, Vec<(String, String)>) {
    let mut steps = table.steps.clone();
    let mut changed = false;
    let mut i = 0;
    while i < steps.len() {
        let StepManifest::AddColumn { column } = &steps[i] else {
            i += 1;
            continue;
        };
        let added = column.name.clone();
        let Some(old) = renamed_from(&added).filter(|o| *o != added) else {
            i += 1;
            continue;
        };
        let (start, end) = schema_run(&steps, i);
        let rename = StepManifest::RenameColumn {
            from: old.clone(),
            to: added.clone(),
        };
        let drop_at = (start..end)
            .find(|&j| matches!(&steps[j], StepManifest::DropColumn { name } if *name == old));
        if let Some(j) = drop_at {
            steps[j] = rename;
            steps.remove(i);
            changed = true;
            continue;
        }
        let readded = next_load_column(&steps[end..], &old);
        let added_in_run = (start..end)
            .any(|j| matches!(&steps[j], StepManifest::AddColumn { column } if column.name == old));
        if let (Some(column), false) = (readded, added_in_run) {
            steps.splice(i..=i, [rename, StepManifest::AddColumn { column }]);
            steps.retain(
                |s| !matches!(s, StepManifest::AlterColumnType { name, .. } if *name == old),
            );
            changed = true;
        }
        i += 1;
    }
    let left = drop_add_pairs(&steps);
    let rewritten = changed.then(|| TableManifest {
        steps,
        ..table.clone()
    });
    (rewritten, left)
}

/// The run of schema steps (no load or truncate between) around index `at`: `start..end`.
fn schema_run(steps: &[StepManifest], at: usize) -> (usize, usize) {
    let is_schema =
        |s: &StepManifest| !matches!(s, StepManifest::Load { .. } | StepManifest::Truncate);
    let start = (0..at)
        .rev()
        .find(|&j| !is_schema(&steps[j]))
        .map_or(0, |j| j + 1);
    let end = (at..steps.len())
        .find(|&j| !is_schema(&steps[j]))
        .unwrap_or(steps.len());
    (start, end)
}

/// `name`'s column in the first load of `steps`, if that load has it.
fn next_load_column(steps: &[StepManifest], name: &str) -> Option<ColumnManifest> {
    steps.iter().find_map(|s| match s {
        StepManifest::Load { columns, .. } => {
            Some(columns.iter().find(|c| c.name == name).cloned())
        }
        _ => None,
    })?
}

/// Every `(dropped, added)` pair within one run of schema steps.
fn drop_add_pairs(steps: &[StepManifest]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    for s in steps {
        match s {
            StepManifest::DropColumn { name } => dropped.push(name),
            StepManifest::AddColumn { column } => {
                pairs.extend(dropped.iter().map(|d| (d.to_string(), column.name.clone())));
            }
            StepManifest::Load { .. } | StepManifest::Truncate => dropped.clear(),
            _ => {}
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv::manifest::FileManifest;

    fn col(name: &str) -> ColumnManifest {
        ColumnManifest {
            name: name.into(),
            pg_type: "text".into(),
            redshift_type: "VARCHAR(65535)".into(),
        }
    }

    fn load(cols: &[&str]) -> StepManifest {
        StepManifest::Load {
            columns: cols.iter().map(|c| col(c)).collect(),
            key: vec!["id".into()],
            files: Vec::<FileManifest>::new(),
        }
    }

    fn table(steps: Vec<StepManifest>) -> TableManifest {
        TableManifest {
            schema: "public".into(),
            name: "t".into(),
            key: vec!["id".into()],
            steps,
        }
    }

    fn drop(name: &str) -> StepManifest {
        StepManifest::DropColumn { name: name.into() }
    }

    fn add(name: &str) -> StepManifest {
        StepManifest::AddColumn { column: col(name) }
    }

    fn rename(from: &str, to: &str) -> StepManifest {
        StepManifest::RenameColumn {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn a_drop_and_add_the_catalog_calls_a_rename_becomes_one() {
        let t = table(vec![
            load(&["id", "d"]),
            drop("d"),
            add("d2"),
            load(&["id", "d2"]),
        ]);
        let (out, left) = apply_renames(&t, |c| (c == "d2").then(|| "d".to_string()));
        let out = out.expect("rewritten");
        assert_eq!(
            out.steps,
            [load(&["id", "d"]), rename("d", "d2"), load(&["id", "d2"])]
        );
        assert!(left.is_empty());
    }

    #[test]
    fn a_rename_then_the_old_name_added_again_renames_then_adds() {
        // RENAME d TO d2; ADD COLUMN d: the batcher saw only d2 as new.
        let t = table(vec![
            load(&["id", "d"]),
            add("d2"),
            load(&["id", "d2", "d"]),
        ]);
        let (out, _) = apply_renames(&t, |c| (c == "d2").then(|| "d".to_string()));
        assert_eq!(
            out.expect("rewritten").steps,
            [
                load(&["id", "d"]),
                rename("d", "d2"),
                add("d"),
                load(&["id", "d2", "d"])
            ]
        );
    }

    #[test]
    fn a_key_column_renamed_and_unknown_pairs_are_reported() {
        let t = table(vec![drop("id"), add("key"), load(&["key"])]);
        let (out, _) = apply_renames(&t, |c| (c == "key").then(|| "id".to_string()));
        assert_eq!(out.unwrap().steps, [rename("id", "key"), load(&["key"])]);

        // No catalog answer: left as a drop and an add, and said so.
        let t = table(vec![drop("d"), add("d2"), load(&["id", "d2"])]);
        let (out, left) = apply_renames(&t, |_| None);
        assert!(out.is_none());
        assert_eq!(left, [("d".to_string(), "d2".to_string())]);
    }
}
