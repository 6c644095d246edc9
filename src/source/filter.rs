//! `[source] include` / `exclude`: which tables re_dms takes. Applied by ingest before the WAL,
//! so an excluded table costs nothing downstream (no WAL bytes, no batch, no load).
//!
//! Patterns are globs over `schema.table` as the source names them (unquoted, case-sensitive):
//! `*` is any run of characters (dots included), `?` one character. A table is taken when it
//! matches an `include` pattern and no `exclude` pattern: exclude wins. A TRUNCATE naming taken
//! and excluded tables is rewritten to name the taken ones only.

use super::decoding::{Message, TableName};

/// The include and exclude patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Default for TableFilter {
    /// Every table.
    fn default() -> Self {
        Self::new(&["*".to_string()], &[])
    }
}

impl TableFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        Self {
            include: include.to_vec(),
            exclude: exclude.to_vec(),
        }
    }

    /// Whether every table is taken (nothing to check per message).
    pub fn takes_all(&self) -> bool {
        self.exclude.is_empty() && self.include.iter().any(|p| p == "*" || p == "*.*")
    }

    /// Whether `schema.table` is taken.
    pub fn takes(&self, schema: &str, table: &str) -> bool {
        self.takes_qualified(&format!("{schema}.{table}"))
    }

    /// [`Self::takes`] of a name already written `schema.table`.
    pub fn takes_qualified(&self, name: &str) -> bool {
        if self.takes_all() {
            return true;
        }
        let hit = |p: &String| glob(p.as_bytes(), name.as_bytes());
        self.include.iter().any(hit) && !self.exclude.iter().any(hit)
    }
}

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    Take,
    /// A row change (or a TRUNCATE) of excluded tables only.
    Skip,
    /// A TRUNCATE of taken and excluded tables: this line instead, naming the taken ones.
    Rewrite(Vec<u8>),
}

impl TableFilter {
    /// The decision for `msg` (BEGIN, COMMIT and logical messages are always taken).
    pub fn apply(&self, msg: &Message<'_>) -> Filtered {
        if self.takes_all() {
            return Filtered::Take;
        }
        match msg {
            Message::Insert { table, .. }
            | Message::Update { table, .. }
            | Message::Delete { table, .. } => {
                if self.takes(&table.schema, &table.name) {
                    Filtered::Take
                } else {
                    Filtered::Skip
                }
            }
            Message::Truncate {
                tables,
                restart_seqs,
                cascade,
            } => {
                let kept: Vec<&TableName<'_>> = tables
                    .iter()
                    .filter(|t| self.takes(&t.schema, &t.name))
                    .collect();
                if kept.is_empty() {
                    Filtered::Skip
                } else if kept.len() == tables.len() {
                    Filtered::Take
                } else {
                    Filtered::Rewrite(truncate_line(&kept, *restart_seqs, *cascade))
                }
            }
            _ => Filtered::Take,
        }
    }
}

/// A TRUNCATE line as test_decoding prints it, names always quoted.
fn truncate_line(tables: &[&TableName<'_>], restart_seqs: bool, cascade: bool) -> Vec<u8> {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", quote(&t.schema), quote(&t.name)))
        .collect();
    let mut line = format!("table {}: TRUNCATE:", names.join(", "));
    if !restart_seqs && !cascade {
        line.push_str(" (no-flags)");
    }
    if restart_seqs {
        line.push_str(" restart_seqs");
    }
    if cascade {
        line.push_str(" cascade");
    }
    line.into_bytes()
}

/// `*` and `?` glob match, iterative (backtracks to the last `*` only).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> TableFilter {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        TableFilter::new(&v(include), &v(exclude))
    }

    #[test]
    fn globs_match_schema_dot_table() {
        assert!(glob(b"*.*", b"public.t"));
        assert!(glob(b"public.*", b"public.orders"));
        assert!(!glob(b"public.*", b"sales.orders"));
        assert!(glob(b"sales.order?", b"sales.orders"));
        assert!(!glob(b"sales.order?", b"sales.order"));
        assert!(glob(b"*_audit", b"public.t_audit"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(glob(b"My.Schema.*", b"My.Schema.T"));
        assert!(!glob(b"my.schema.*", b"My.Schema.T"), "case-sensitive");
    }

    #[test]
    fn a_truncate_of_taken_and_excluded_tables_names_the_taken_ones() {
        use crate::source::decoding::parse_message;
        let f = filter(&["*"], &["public.skip*"]);
        let line = b"table public.keep, public.skip_me, \"My\"\"S\".\"T\": TRUNCATE: cascade";
        let msg = parse_message(line, 1).unwrap();
        let Filtered::Rewrite(raw) = f.apply(&msg) else {
            panic!("not rewritten")
        };
        let again = parse_message(&raw, 1).unwrap();
        let Message::Truncate {
            tables,
            cascade,
            restart_seqs,
        } = again
        else {
            panic!("{}", String::from_utf8_lossy(&raw))
        };
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["public.keep", "My\"S.T"]);
        assert!(cascade && !restart_seqs);
        let only_skipped = parse_message(b"table public.skip_a: TRUNCATE: (no-flags)", 1).unwrap();
        assert_eq!(f.apply(&only_skipped), Filtered::Skip);
        let row = parse_message(b"table public.skip_a: DELETE: id[integer]:1", 1).unwrap();
        assert_eq!(f.apply(&row), Filtered::Skip);
        let kept = parse_message(b"table public.keep: DELETE: id[integer]:1", 1).unwrap();
        assert_eq!(f.apply(&kept), Filtered::Take);
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = filter(&["public.*", "sales.orders"], &["public.*_audit"]);
        assert!(f.takes("public", "t"));
        assert!(!f.takes("public", "t_audit"));
        assert!(f.takes("sales", "orders"));
        assert!(!f.takes("sales", "items"));
        assert!(!f.takes_all());
        assert!(TableFilter::default().takes_all());
        assert!(TableFilter::default().takes("any", "thing"));
    }
}
