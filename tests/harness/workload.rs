//! Generated test_decoding text over a few tables, with the final state the warehouse must hold.

use std::collections::BTreeMap;

use super::model::Field;

/// A column's kind: how values are generated, printed by test_decoding, and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    BigInt,
    Text,
    Varchar,
    Bool,
    Numeric,
    Date,
}

impl Kind {
    /// The type name test_decoding prints.
    fn pg(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::BigInt => "bigint",
            Kind::Text => "text",
            Kind::Varchar => "character varying",
            Kind::Bool => "boolean",
            Kind::Numeric => "numeric",
            Kind::Date => "date",
        }
    }
}

/// One generated table: the key is its first column, `id`.
#[derive(Debug, Clone)]
pub struct GenTable {
    /// `schema.table`.
    pub name: String,
    pub columns: Vec<(&'static str, Kind)>,
    /// Final state by id: values as the warehouse prints them (NULL = None).
    pub rows: BTreeMap<i64, Vec<Field>>,
    next_id: i64,
}

/// A value: how test_decoding prints it, and how the warehouse prints it back.
struct Value {
    printed: String,
    stored: Field,
}

/// Generated test_decoding text over some tables, with the final state it leads to.
pub struct Workload {
    pub tables: Vec<GenTable>,
    pub text: String,
    pub changes: usize,
    pub transactions: usize,
    rng: fastrand::Rng,
    xid: u64,
}

impl Workload {
    /// Three tables of varied types: `public.customers`, `public.orders`, `shop.items`.
    pub fn three_tables(seed: u64) -> Self {
        use Kind::*;
        Self::new(
            seed,
            vec![
                (
                    "public.customers",
                    vec![
                        ("id", BigInt),
                        ("name", Varchar),
                        ("active", Bool),
                        ("score", Numeric),
                    ],
                ),
                (
                    "public.orders",
                    vec![
                        ("id", Int),
                        ("customer_id", BigInt),
                        ("note", Text),
                        ("qty", Int),
                        ("placed", Date),
                    ],
                ),
                (
                    "shop.items",
                    vec![
                        ("id", Int),
                        ("label", Text),
                        ("price", Numeric),
                        ("in_stock", Bool),
                    ],
                ),
            ],
        )
    }

    pub fn new(seed: u64, tables: Vec<(&str, Vec<(&'static str, Kind)>)>) -> Self {
        Self {
            tables: tables
                .into_iter()
                .map(|(name, columns)| GenTable {
                    name: name.to_string(),
                    columns,
                    rows: BTreeMap::new(),
                    next_id: 1,
                })
                .collect(),
            text: String::new(),
            changes: 0,
            transactions: 0,
            rng: fastrand::Rng::with_seed(seed),
            xid: 1000,
        }
    }

    /// Appends `changes` more changes in transactions of 5..=15 changes: ~50% inserts, ~30%
    /// updates (whole new row, as test_decoding prints them), ~20% deletes, tables at random.
    pub fn generate(&mut self, changes: usize) -> &mut Self {
        let mut left = changes;
        while left > 0 {
            let n = self.rng.usize(5..=15).min(left);
            self.begin();
            for _ in 0..n {
                let t = self.rng.usize(0..self.tables.len());
                let roll = self.rng.u32(0..10);
                if self.tables[t].rows.is_empty() || roll < 5 {
                    self.insert(t);
                } else if roll < 8 {
                    self.update(t);
                } else {
                    self.delete(t);
                }
            }
            self.commit();
            left -= n;
        }
        self
    }

    pub fn begin(&mut self) {
        self.xid += 1;
        self.text.push_str(&format!("BEGIN {}\n", self.xid));
    }

    pub fn commit(&mut self) {
        self.text.push_str(&format!("COMMIT {}\n", self.xid));
        self.transactions += 1;
    }

    /// Inserts a new row into table `t` (its next id).
    pub fn insert(&mut self, t: usize) {
        let id = self.tables[t].next_id;
        self.tables[t].next_id += 1;
        self.write_row(t, "INSERT", id);
    }

    /// Inserts a row into table `t` (its next id) with the other columns' values as given,
    /// printed (e.g. a value the warehouse rejects); `stored` is what the warehouse would hold
    /// for them.
    pub fn insert_raw(&mut self, t: usize, printed: &[&str], stored: Vec<Field>) {
        let id = self.tables[t].next_id;
        self.tables[t].next_id += 1;
        let table = &self.tables[t];
        let (key, key_kind) = table.columns[0];
        let mut line = format!(
            "table {}: INSERT: {key}[{}]:{id}",
            table.name,
            key_kind.pg()
        );
        for ((c, k), v) in table.columns[1..].iter().zip(printed) {
            line.push_str(&format!(" {c}[{}]:{v}", k.pg()));
        }
        self.text.push_str(&line);
        self.text.push('\n');
        let mut row = vec![Some(id.to_string())];
        row.extend(stored);
        self.tables[t].rows.insert(id, row);
        self.changes += 1;
    }

    fn update(&mut self, t: usize) {
        let id = self.pick(t);
        self.write_row(t, "UPDATE", id);
    }

    fn delete(&mut self, t: usize) {
        let id = self.pick(t);
        let table = &mut self.tables[t];
        table.rows.remove(&id);
        let line = format!(
            "table {}: DELETE: id[{}]:{id}\n",
            table.name,
            table.columns[0].1.pg()
        );
        self.text.push_str(&line);
        self.changes += 1;
    }

    /// A random existing id of table `t`.
    fn pick(&mut self, t: usize) -> i64 {
        let n = self.tables[t].rows.len();
        let i = self.rng.usize(0..n);
        *self.tables[t].rows.keys().nth(i).unwrap()
    }

    fn write_row(&mut self, t: usize, op: &str, id: i64) {
        let columns = self.tables[t].columns.clone();
        let mut line = format!("table {}: {op}:", self.tables[t].name);
        let mut stored = Vec::with_capacity(columns.len());
        for (i, (c, k)) in columns.iter().enumerate() {
            let v = if i == 0 {
                Value {
                    printed: id.to_string(),
                    stored: Some(id.to_string()),
                }
            } else {
                self.value(*k)
            };
            line.push_str(&format!(" {c}[{}]:{}", k.pg(), v.printed));
            stored.push(v.stored);
        }
        line.push('\n');
        self.text.push_str(&line);
        self.tables[t].rows.insert(id, stored);
        self.changes += 1;
    }

    fn value(&mut self, k: Kind) -> Value {
        let r = &mut self.rng;
        if r.u32(0..20) == 0 {
            return Value {
                printed: "null".into(),
                stored: None,
            };
        }
        let plain = |s: String| Value {
            printed: s.clone(),
            stored: Some(s),
        };
        match k {
            Kind::Int => plain(r.i32(-100_000..100_000).to_string()),
            Kind::BigInt => plain(r.i64(-(1 << 50)..(1 << 50)).to_string()),
            Kind::Bool => {
                let b = r.bool();
                Value {
                    printed: b.to_string(),
                    stored: Some(if b { "t" } else { "f" }.into()),
                }
            }
            Kind::Numeric => {
                let units = r.i64(-10_000_000..10_000_000);
                let s = format!(
                    "{}{}.{:03}",
                    if units < 0 { "-" } else { "" },
                    units.abs() / 1000,
                    units.abs() % 1000
                );
                plain(s)
            }
            Kind::Date => {
                let s = format!(
                    "{:04}-{:02}-{:02}",
                    r.u32(1990..2030),
                    r.u32(1..=12),
                    r.u32(1..=28)
                );
                Value {
                    printed: format!("'{s}'"),
                    stored: Some(s),
                }
            }
            Kind::Text | Kind::Varchar => {
                const PIECES: &[&str] = &[
                    "plain",
                    "with, comma",
                    "a \"quoted\" word",
                    "it's",
                    "café",
                    "tab\there",
                    "two\nlines",
                    "back\\slash",
                    "",
                    " ",
                    "\\N",
                ];
                let n = r.usize(1..=3);
                let mut s = String::new();
                for _ in 0..n {
                    s.push_str(PIECES[r.usize(0..PIECES.len())]);
                }
                if r.u32(0..4) != 0 {
                    s.push_str(&r.u32(..).to_string());
                }
                Value {
                    printed: format!("'{}'", s.replace('\'', "''")),
                    stored: Some(s),
                }
            }
        }
    }

    /// The text generated so far, leaving the state (the next text continues from it).
    pub fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }

    /// Rows of all tables.
    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}
