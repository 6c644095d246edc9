//! Telling a column rename from a drop and an add (pure, no I/O; part of the Redshift SQL).
//!
//! test_decoding shows only the new name, so the batcher sees a renamed column as one column
//! gone and another one new: `DropColumn { d }` + `AddColumn { d2 }`, or only `AddColumn { d2 }`
//! when the old name came back in the same change (`RENAME d TO d2; ADD COLUMN d`: the batcher
//! takes the new `d` for the old one). Applied as such, every value of `d` written before would
//! stay behind in a dropped column. The source catalog knows better: a column keeps its attnum
//! across a rename, and `SourceCatalog::previous_names` answers which names the column now called
//! `d2` had before. [`apply_renames`] rewrites a table-segment's steps with that answer:
//! - `DropColumn { d }` … `AddColumn { d2 }` in one run of schema steps → `RenameColumn { d → d2 }`;
//! - `AddColumn { d2 }` while the next load still has `d` (re-added) → `RenameColumn { d → d2 }`
//!   then `AddColumn { d }` with the load's type for it (an `AlterColumnType { d }` of that run
//!   is dropped: the new `d` is created with its type);
//!
//! and names the drop-and-add pairs it leaves as they are, for a warning. The planner runs a
//! rename followed by the re-add of its old name as one transaction (`sql::rename_column`).

use crate::csv::manifest::{ColumnManifest, StepManifest, TableManifest};

/// The steps with renames turned into [`StepManifest::RenameColumn`] (see the module docs);
/// `None` when nothing changed. `previous(c)`: the names the column now called `c` had before,
/// nearest first (`SourceCatalog::previous_names`). Also the `(dropped, added)` pairs of each
/// run of schema steps left as a drop and an add, for the caller to warn about.
///
/// Conservative: a name that is dropped and added again in one run (a swap), or an old name
/// whose current column has a history of its own, is left alone: a wrong rename would keep
/// values under another column, worse than the drop the warning names.
pub fn apply_renames(
    table: &TableManifest,
    previous: impl Fn(&str) -> Vec<String>,
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
        let (start, end) = schema_run(&steps, i);
        let dropped_in_run = |steps: &[StepManifest], name: &str| {
            (start..end)
                .find(|&j| matches!(&steps[j], StepManifest::DropColumn { name: n } if n == name))
        };
        let added_in_run = |steps: &[StepManifest], name: &str| {
            (start..end).any(
                |j| matches!(&steps[j], StepManifest::AddColumn { column } if column.name == name),
            )
        };
        let names = previous(&added);
        if names.is_empty() || dropped_in_run(&steps, &added).is_some() {
            i += 1;
            continue;
        }
        // The nearest earlier name that this run drops: a plain rename.
        if let Some((old, j)) = names
            .iter()
            .find_map(|o| dropped_in_run(&steps, o).map(|j| (o.clone(), j)))
        {
            steps[j] = StepManifest::RenameColumn {
                from: old,
                to: added,
            };
            steps.remove(i);
            changed = true;
            continue;
        }
        // The old name came back as a new column (its own history is empty) in the same run.
        let old = &names[0];
        let readded = next_load_column(&steps[end..], old)
            .filter(|_| !added_in_run(&steps, old) && previous(old).is_empty());
        if let Some(column) = readded {
            let old = old.clone();
            // The new `old` is created with its type: a type change of the old one in this run
            // is moot. (Removed first, keeping `i` on the add it replaces.)
            let moot = |s: &StepManifest| matches!(s, StepManifest::AlterColumnType { name, .. } if *name == old);
            let before = (start..i).filter(|&j| moot(&steps[j])).count();
            let mut j = start;
            steps.retain(|s| {
                let keep = !(start..end).contains(&j) || !moot(s);
                j += 1;
                keep
            });
            i -= before;
            let rename = StepManifest::RenameColumn {
                from: old.clone(),
                to: added,
            };
            steps.splice(i..=i, [rename, StepManifest::AddColumn { column }]);
            changed = true;
            // Past the rename and the re-add: both are settled.
            i += 2;
            continue;
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
    let start = (0..at)
        .rev()
        .find(|&j| !steps[j].is_schema_change())
        .map_or(0, |j| j + 1);
    let end = (at..steps.len())
        .find(|&j| !steps[j].is_schema_change())
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

    /// `previous` answering `earlier` for `column` only.
    fn names(asked: &str, column: &str, earlier: &[&str]) -> Vec<String> {
        if asked == column {
            earlier.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
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
        let (out, left) = apply_renames(&t, |c| names(c, "d2", &["d"]));
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
        let (out, _) = apply_renames(&t, |c| names(c, "d2", &["d"]));
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
        let (out, _) = apply_renames(&t, |c| names(c, "key", &["id"]));
        assert_eq!(out.unwrap().steps, [rename("id", "key"), load(&["key"])]);

        // No catalog answer: left as a drop and an add, and said so.
        let t = table(vec![drop("d"), add("d2"), load(&["id", "d2"])]);
        let (out, left) = apply_renames(&t, |_| Vec::new());
        assert!(out.is_none());
        assert_eq!(left, [("d".to_string(), "d2".to_string())]);
    }

    #[test]
    fn chains_swaps_and_reused_names_stay_safe() {
        // a -> b -> c between two rows: the drop is of `a`, two names back.
        let t = table(vec![drop("a"), add("c"), load(&["id", "c"])]);
        let (out, _) = apply_renames(&t, |c| names(c, "c", &["b", "a"]));
        assert_eq!(out.unwrap().steps, [rename("a", "c"), load(&["id", "c"])]);
        // A swap (a <-> c through b): `a` is dropped and added in one run: left alone.
        let t = table(vec![
            drop("a"),
            drop("c"),
            add("a"),
            add("c"),
            load(&["a", "c"]),
        ]);
        let (out, _) = apply_renames(&t, |c| match c {
            "a" => vec!["c".to_string()],
            "c" => vec!["a".to_string()],
            _ => Vec::new(),
        });
        assert!(out.is_none());
        // The old name is back, but its column has a history of its own (a shift, not a
        // re-add): no rename-and-add.
        let t = table(vec![add("b"), load(&["id", "b", "a"])]);
        let (out, _) = apply_renames(&t, |c| match c {
            "b" => vec!["a".to_string()],
            "a" => vec!["z".to_string()],
            _ => Vec::new(),
        });
        assert!(out.is_none());
        // A type change of the old name in a later run stays.
        let alter = StepManifest::AlterColumnType {
            name: "d".into(),
            from: "integer".into(),
            to: "bigint".into(),
            redshift_type: "BIGINT".into(),
        };
        let t = table(vec![
            add("d2"),
            load(&["id", "d2", "d"]),
            alter.clone(),
            load(&["id", "d2", "d"]),
        ]);
        let (out, _) = apply_renames(&t, |c| names(c, "d2", &["d"]));
        let steps = out.unwrap().steps;
        assert!(steps.contains(&alter), "{steps:?}");
        // A re-add whose old name had a type change in its run, then a plain rename after it.
        let t = table(vec![
            drop("x"),
            alter.clone(),
            add("d2"),
            add("x2"),
            load(&["id", "d2", "x2", "d"]),
        ]);
        let (out, _) = apply_renames(&t, |c| match c {
            "d2" => vec!["d".to_string()],
            "x2" => vec!["x".to_string()],
            _ => Vec::new(),
        });
        assert_eq!(
            out.unwrap().steps,
            [
                rename("x", "x2"),
                rename("d", "d2"),
                add("d"),
                load(&["id", "d2", "x2", "d"])
            ]
        );
    }
}
