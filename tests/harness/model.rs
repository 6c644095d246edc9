//! An in-memory model of a target: applies the local target's manifests in order, the way the
//! Redshift loader applies them (update files, then deletes incl. upsert keys, then inserts),
//! so tests can compare the result with the source's final contents.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use re_dms::csv::manifest::{FileKind, Manifest, StepManifest};

/// A CSV field: `None` is NULL.
pub type Field = Option<String>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Field>>,
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    fn matches(&self, row: &[Field], cols: &[usize], key: &[Field]) -> bool {
        cols.iter()
            .zip(key)
            .all(|(&c, k)| row[c] == *k && k.is_some())
    }

    /// Rows as `column -> value` maps sorted by the given key columns.
    pub fn sorted(&self, key: &[&str]) -> Vec<Vec<Field>> {
        let idx: Vec<usize> = key.iter().map(|k| self.col(k)).collect();
        let mut rows = self.rows.clone();
        rows.sort_by(|a, b| idx.iter().map(|&i| &a[i]).cmp(idx.iter().map(|&i| &b[i])));
        rows
    }
}

#[derive(Debug, Default)]
pub struct Model {
    pub tables: BTreeMap<String, Table>,
    pub segments: u64,
    pub files: u64,
}

impl Model {
    /// Applies every delivered segment directory under `dir` in segment order. A directory
    /// without its `manifest.json` is one the local target is still delivering (the manifest
    /// comes last, `sink/local.rs`): not applied yet, as a loader would not.
    pub fn apply_dir(&mut self, dir: &Path) {
        let mut segs: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        for seg in segs {
            let bytes = match std::fs::read(seg.join("manifest.json")) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", seg.display()),
            };
            let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
            self.apply(&manifest, &seg);
        }
    }

    pub fn apply(&mut self, m: &Manifest, dir: &Path) {
        self.segments += 1;
        for t in &m.tables {
            let name = t.qualified();
            for step in &t.steps {
                match step {
                    StepManifest::CreateTable { columns } => {
                        let table = self.tables.entry(name.clone()).or_default();
                        for c in columns {
                            if !table.columns.contains(&c.name) {
                                table.columns.push(c.name.clone());
                                table.rows.iter_mut().for_each(|r| r.push(None));
                            }
                        }
                    }
                    StepManifest::AddColumn { column } => {
                        let table = self
                            .tables
                            .get_mut(&name)
                            .expect("add column to a known table");
                        table.columns.push(column.name.clone());
                        table.rows.iter_mut().for_each(|r| r.push(None));
                    }
                    StepManifest::DropColumn { name: col } => {
                        let table = self
                            .tables
                            .get_mut(&name)
                            .expect("drop column of a known table");
                        let i = table.col(col);
                        table.columns.remove(i);
                        table.rows.iter_mut().for_each(|r| {
                            r.remove(i);
                        });
                    }
                    StepManifest::RenameColumn { from, to } => {
                        let table = self
                            .tables
                            .get_mut(&name)
                            .expect("rename column of a known table");
                        let i = table.col(from);
                        table.columns[i] = to.clone();
                    }
                    StepManifest::AlterColumnType { .. } => {}
                    StepManifest::Truncate => {
                        if let Some(t) = self.tables.get_mut(&name) {
                            t.rows.clear();
                        }
                    }
                    StepManifest::Load { key, files, .. } => {
                        let Some(table) = self.tables.get_mut(&name) else {
                            // Deletes for a table never created: nothing to delete.
                            assert!(
                                files.iter().all(|f| f.kind == FileKind::Delete),
                                "load into unknown table {name}"
                            );
                            continue;
                        };
                        let mut ordered: Vec<_> = files.iter().collect();
                        ordered.sort_by_key(|f| match f.kind {
                            FileKind::Update => 0,
                            FileKind::Delete => 1,
                            FileKind::Upsert => 2,
                        });
                        let key_idx: Vec<usize> = key.iter().map(|k| table.col(k)).collect();
                        let mut inserts = Vec::new();
                        for f in ordered {
                            self.files += 1;
                            let rows = read_gz_csv(&dir.join(&f.path), true);
                            assert_eq!(rows.len() as u64, f.rows, "{}: row count", f.path);
                            match f.kind {
                                FileKind::Update => {
                                    let set: Vec<usize> =
                                        f.columns.iter().map(|c| table.col(c)).collect();
                                    for r in rows {
                                        let (mk, vals) = r.split_at(f.match_columns.len());
                                        let hits: Vec<usize> = (0..table.rows.len())
                                            .filter(|&i| {
                                                table.matches(&table.rows[i], &key_idx, mk)
                                            })
                                            .collect();
                                        assert_eq!(
                                            hits.len(),
                                            1,
                                            "{}: update of {mk:?} matches {} rows",
                                            f.path,
                                            hits.len()
                                        );
                                        for (&c, v) in set.iter().zip(vals) {
                                            table.rows[hits[0]][c] = v.clone();
                                        }
                                    }
                                }
                                FileKind::Delete => {
                                    for r in rows {
                                        table.rows.retain(|row| !table_matches(row, &key_idx, &r));
                                    }
                                }
                                FileKind::Upsert => {
                                    let cols: Vec<usize> =
                                        f.columns.iter().map(|c| table.col(c)).collect();
                                    for r in rows {
                                        let mut row = vec![None; table.columns.len()];
                                        for (&c, v) in cols.iter().zip(r) {
                                            row[c] = v;
                                        }
                                        let k: Vec<Field> =
                                            key_idx.iter().map(|&i| row[i].clone()).collect();
                                        table.rows.retain(|existing| {
                                            !table_matches(existing, &key_idx, &k)
                                        });
                                        inserts.push(row);
                                    }
                                }
                            }
                        }
                        table.rows.extend(inserts);
                    }
                }
            }
        }
    }
}

fn table_matches(row: &[Field], cols: &[usize], key: &[Field]) -> bool {
    cols.iter()
        .zip(key)
        .all(|(&c, k)| row[c] == *k && k.is_some())
}

pub fn read_gz_csv(path: &Path, backslash_n_null: bool) -> Vec<Vec<Field>> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    parse_csv(&text, backslash_n_null)
}

/// A CSV reader that keeps the quoted/unquoted distinction: with `backslash_n_null`, an
/// unquoted `\N` is NULL (re_dms's dialect); otherwise an unquoted empty field is (Postgres's
/// `COPY ... CSV`).
pub fn parse_csv(text: &[u8], backslash_n_null: bool) -> Vec<Vec<Field>> {
    let text = std::str::from_utf8(text).expect("CSV is UTF-8");
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut in_quotes, mut at_start) = (false, false, true);
    let mut chars = text.chars().peekable();
    let finish = |field: &mut String, quoted: bool| -> Field {
        let f = std::mem::take(field);
        let null = if backslash_n_null {
            !quoted && f == "\\N"
        } else {
            !quoted && f.is_empty()
        };
        (!null).then_some(f)
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start || field.is_empty() => {
                in_quotes = true;
                quoted = true;
                at_start = false;
            }
            ',' => {
                row.push(finish(&mut field, quoted));
                quoted = false;
                at_start = true;
            }
            '\n' => {
                row.push(finish(&mut field, quoted));
                rows.push(std::mem::take(&mut row));
                quoted = false;
                at_start = true;
            }
            _ => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if !field.is_empty() || quoted || !row.is_empty() {
        row.push(finish(&mut field, quoted));
        rows.push(row);
    }
    rows
}

/// Reads a Postgres `\copy ... csv header` file: (header, rows).
pub fn read_expected(path: &Path) -> (Vec<String>, Vec<Vec<Field>>) {
    let mut rows = parse_csv(&std::fs::read(path).unwrap(), false);
    let header = rows
        .remove(0)
        .into_iter()
        .map(|f| f.unwrap_or_default())
        .collect();
    (header, rows)
}
