//! Benchmark input: a synthetic PostgreSQL 15 `test_decoding` capture, exactly as
//! `pg_recvlogical -f -` prints it, written to standard output. Standard library only.
//!
//! ```text
//! cargo run --release --example gen_capture -- --changes 1000000 --seed 1 > capture.txt
//! ```
//!
//! Five tables (`public.users` with every common type, `public.orders`, `public.articles` with
//! TOASTed bodies, `inventory.stock` with a composite key, `sales."Order Items"` with quoted
//! identifiers); about 60% inserts, 30% updates and 10% deletes, the updates and deletes always of
//! live keys; transactions of 1-50 changes plus an occasional big one; awkward values (doubled
//! quotes, raw newlines / tabs / backslashes, non-ASCII, NULL, '', NaN, ±Infinity, huge numerics).
//! `--changes N` counts `table ...:` messages (TRUNCATE included). Deterministic for a given seed.

#[path = "../capture_text/mod.rs"]
mod capture_text;
mod tuples;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use capture_text::{splitmix64, Out, Rng, DAY_US};

const HELP: &str = "\
gen_capture: write a synthetic PostgreSQL 15 test_decoding capture to stdout

Options:
  --changes N          row changes (`table ...:` messages) to write      [1000000]
  --seed S             PRNG seed; same seed, same bytes                  [1]
  --truncate-every N   a `TRUNCATE inventory.stock` transaction after
                       every N changes (0 = never)                       [0]
  --big-txn-every N    about every N changes, one transaction of
                       --big-txn-size changes (0 = never)                [250000]
  --big-txn-size N     changes in a big transaction                      [20000]
  --start-xid X        first transaction id                             [1000]
  --no-xids            `BEGIN` / `COMMIT` without xids (include-xids=0)
  --timestamps         `COMMIT ... (at <ts>)` (include-timestamp=1)
  --quiet              no summary on stderr
Numbers accept `_` separators and k/m suffixes (e.g. 1m, 250k).
";

// The PRNG, the writer and its formatters: capture_text/mod.rs.

// ---------------------------------------------------------------------------------------------
// Value pools. Text is raw (test_decoding only doubles `'`); array and JSON pools are already in
// PostgreSQL's output form.

const BIO_FRAGMENTS: &[&str] = &[
    "Likes \"quotes\", commas, and ' apostrophes",
    "plain text",
    "loves hiking",
    "coffee, tea, and more coffee",
    "it's complicated",
    "O'Brien's pub, Dublin",
    "tab\tseparated\tvalues",
    "path C:\\Users\\ann\\notes.txt",
    "regex \\d+\\.\\d*",
    "naïve café owner",
    "lives in Zürich",
    "Grüße aus München",
    "日本語を話します",
    "東京在住",
    "emoji 🎉🚀",
    "Zoë",
    "señor ñandú",
    "NULL",
    "null",
    "\\N",
    "a \"double\" and a 'single'",
    "semicolon; pipe | caret ^",
    "trailing space ",
    "  leading spaces",
    "percent 100% sure",
    "<b>html</b> & entities &amp;",
    "Ünïcödé",
    "comma,separated,list",
    "{braces} [brackets]",
];

const NEWLINE_FRAGMENTS: &[&str] = &[
    "line one\nline two",
    "first paragraph.\n\nsecond paragraph.",
    "windows line\r\nending",
    "ends with newline\n",
];

const TAGS: &[&str] = &[
    "a",
    "b",
    "vip",
    "beta",
    "\"with space\"",
    "NULL",
    "\"NULL\"",
    "\"say \\\"hi\\\"\"",
    "\"back\\\\slash\"",
    "\"a,b\"",
    "it's",
    "café",
    "日本",
    "\"\"",
    "\"{curly}\"",
];

const JSONB: &[&str] = &[
    "{\"theme\": \"dark\"}",
    "{\"lang\": \"fr\", \"theme\": \"light\"}",
    "{\"n\": 42, \"tags\": [\"a\", \"b\"], \"nested\": {\"k\": null}}",
    "[1, 2]",
    "\"just a string\"",
    "{\"quote\": \"it's \\\"fine\\\"\"}",
    "{\"note\": \"line\\nbreak\\ttab\"}",
    "{\"name\": \"Zoë\", \"emoji\": \"🎉\"}",
    "{\"score\": 12.5, \"visits\": 1234}",
    "{}",
    "[]",
    "true",
    "{\"a\": {\"b\": {\"c\": [1, {\"d\": \"deep\"}]}}}",
    "{\"path\": \"C:\\\\tmp\"}",
];

const JSON: &[&str] = &[
    "{\"x\": 1}",
    "{\"x\":1,\"y\":[true,false,null]}",
    "null",
    "{\"a\" : \"b\" }",
    "{\"k\": \"tab\\there\", \"k\": \"duplicate key kept\"}",
    "[]",
    "{\"msg\": \"don't panic\"}",
    "{\"unicode\": \"\\u00e9\", \"raw\": \"é\"}",
    "  {\"padded\": true}  ",
    "3.14159",
];

const COLOURS: &[&str] = &["red", "green", "blue"];

const ODD_REAL: &[&str] = &[
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "1e+20",
    "3.4028235e+38",
];
const ODD_DOUBLE: &[&str] = &[
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "1e+300",
    "-2.5e-08",
    "1.7976931348623157e+308",
    "5e-324",
];

const STATUSES: &[&str] = &[
    "new",
    "new",
    "paid",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
    "on hold",
    "returned – damaged",
    "customer's request",
    "",
];

const HEADLINES: &[&str] = &[
    "headline ",
    "Breaking: things you didn't know, part ",
    "Ünïcödé headline ",
    "日本のニュース ",
    "Quote \"of the day\" #",
    "Comma, separated, ",
    "Tabs\tin\theadline ",
];

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "a", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "was", "on",
    "data", "stream", "replication", "warehouse", "logical", "decoding", "row", "column", "table",
    "value", "change", "commit", "segment", "batch", "load", "merge", "naïve", "café", "Zürich",
    "日本語", "don't", "it's", "\"quoted\"", "a,b", "tab\there", "C:\\path\\file", "50%", "ü", "señor",
    "über", "🎉", "x'y", "(parens)", "[brackets]", "{braces}", "semi;colon", "NULL", "lorem",
    "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
];

const WAREHOUSES: &[&str] = &[
    "north",
    "south",
    "east",
    "west",
    "O'Hare",
    "Zürich",
    "東京",
    "dock 7, bay \"B\"",
    "back\\slash",
    "central",
];

const SKU_PREFIXES: &[&str] = &["SKU-", "A-", "B-", "x", "ÄÖÜ-", "it's-", "sku "];

const NOTES: &[&str] = &[
    "gift",
    "gift wrap, please",
    "leave at neighbour's",
    "tab\tseparated",
    "äöü",
    "請小心輕放",
    "\"fragile\"",
    "call 555-0100; ring twice",
    "\\ backslash",
    "NULL",
];

// Microseconds since 1970-01-01 of 2025-01-01 00:00:00 UTC.
const EPOCH_2025_US: i64 = 1_735_689_600_000_000;

// First keys: orders ids cross the int4 limit early, "Order Id"s sit just above 2^53.
const ORDER_ID_BASE: u64 = 2_147_483_000;
const ITEM_ORDER_BASE: u64 = 9_007_199_254_740_000;

// ---------------------------------------------------------------------------------------------
// Generator state.

#[derive(Clone, Copy)]
enum Table {
    Users = 0,
    Orders = 1,
    Articles = 2,
    Stock = 3,
    Items = 4,
}

const TABLES: [Table; 5] = [
    Table::Users,
    Table::Orders,
    Table::Articles,
    Table::Stock,
    Table::Items,
];
const TABLE_NAMES: [&str; 5] = [
    "public.users",
    "public.orders",
    "public.articles",
    "inventory.stock",
    "sales.\"Order Items\"",
];
/// Share of changes per table, in percent.
const TABLE_WEIGHTS: [u64; 5] = [20, 30, 10, 20, 20];

const INS: usize = 0;
const UPD: usize = 1;
const DEL: usize = 2;
const TRUNC: usize = 3;

#[derive(Clone, Copy)]
struct Article {
    id: u32,
    rev: u32,
    toasted: bool,
}

#[derive(Default)]
struct Stats {
    ops: [[u64; 4]; 5],
    toast_unchanged: u64,
    key_changes: u64,
    txns: u64,
    big_txns: u64,
    empty_txns: u64,
}

struct Opts {
    changes: u64,
    seed: u64,
    truncate_every: u64,
    big_every: u64,
    big_size: u64,
    start_xid: u64,
    xids: bool,
    timestamps: bool,
    quiet: bool,
}

struct Gen<W: Write> {
    o: Out<W>,
    r: Rng,
    // Live keys, swap-removed on delete. Compact: offsets from a base, packed where composite.
    users: Vec<u32>,
    next_user: u32,
    orders: Vec<(u32, u32)>, // (order offset, user id)
    next_order: u32,
    articles: Vec<Article>,
    next_article: u32,
    stock: Vec<(u8, u32)>, // (warehouse index, sku number)
    next_sku: u32,
    items: Vec<(u32, u16)>, // ("Order Id" offset, line_no)
    item_order: u32,
    item_line: u16,
    xid: u64,
    clock_us: i64,
    st: Stats,
}

impl<W: Write> Gen<W> {
    fn new(sink: W, opts: &Opts) -> Self {
        Gen {
            o: Out::new(sink),
            r: Rng::new(opts.seed),
            users: Vec::new(),
            next_user: 1,
            orders: Vec::new(),
            next_order: 0,
            articles: Vec::new(),
            next_article: 1,
            stock: Vec::new(),
            next_sku: 1,
            items: Vec::new(),
            item_order: 0,
            item_line: 0,
            xid: opts.start_xid,
            clock_us: EPOCH_2025_US + 3 * DAY_US + 7_200_000_000,
            st: Stats::default(),
        }
    }

    fn run(&mut self, opts: &Opts) -> io::Result<()> {
        let mut emitted = 0u64;
        let mut next_truncate = opts.truncate_every;
        let mut next_big = if opts.big_every > 0 {
            opts.big_every / 2 + self.r.below(opts.big_every)
        } else {
            u64::MAX
        };
        while emitted < opts.changes {
            if opts.truncate_every > 0 && emitted >= next_truncate {
                next_truncate = emitted + 1 + opts.truncate_every;
                self.begin(opts)?;
                self.o.s("table inventory.stock: TRUNCATE: (no-flags)");
                self.o.end_line()?;
                self.stock.clear();
                self.st.ops[Table::Stock as usize][TRUNC] += 1;
                self.commit(opts)?;
                emitted += 1;
                continue;
            }
            if self.r.per_mille(2) {
                // DDL or a transaction that touched nothing decoded: an empty pair.
                self.st.empty_txns += 1;
                self.begin(opts)?;
                self.commit(opts)?;
                continue;
            }
            let mut size = 1 + self.r.below(50);
            if emitted >= next_big {
                size = opts.big_size * 19 / 20 + self.r.below(opts.big_size / 10 + 1);
                next_big = emitted + opts.big_every / 2 + self.r.below(opts.big_every);
                self.st.big_txns += 1;
            }
            let size = size.min(opts.changes - emitted);
            self.begin(opts)?;
            for _ in 0..size {
                self.change()?;
            }
            self.commit(opts)?;
            emitted += size;
        }
        self.o.flush()?;
        self.o.sink.flush()
    }

    fn begin(&mut self, opts: &Opts) -> io::Result<()> {
        self.st.txns += 1;
        self.clock_us += self.r.below(2_000_000) as i64;
        self.o.s("BEGIN");
        if opts.xids {
            self.o.s(" ");
            self.o.u(self.xid);
        }
        self.o.end_line()
    }

    fn commit(&mut self, opts: &Opts) -> io::Result<()> {
        self.o.s("COMMIT");
        if opts.xids {
            self.o.s(" ");
            self.o.u(self.xid);
        }
        if opts.timestamps {
            let at = self.clock_us + self.r.below(1_000_000) as i64;
            self.o.s(" (at ");
            let start = self.o.buf.len();
            self.o.ts(at, true);
            // `(at ...)` is not quoted: drop the quotes `ts` wrote.
            self.o.buf.remove(start);
            self.o.buf.pop();
            self.o.s(")");
        }
        // Aborted transactions and other databases' xids leave gaps.
        self.xid += 1 + if self.r.per_mille(50) {
            self.r.below(5)
        } else {
            0
        };
        self.o.end_line()
    }

    /// Index of a live row: half the time among the most recent 1000 (hot rows, often in the
    /// same transaction or segment as their insert), otherwise uniform.
    fn pick_index(&mut self, len: usize) -> usize {
        let len = len as u64;
        if len > 1000 && self.r.per_mille(500) {
            (len - 1 - self.r.below(1000)) as usize
        } else {
            self.r.below(len) as usize
        }
    }

    fn change(&mut self) -> io::Result<()> {
        let mut roll = self.r.below(100);
        let mut table = Table::Users;
        for (t, w) in TABLES.iter().zip(TABLE_WEIGHTS) {
            if roll < w {
                table = *t;
                break;
            }
            roll -= w;
        }
        let op = match self.r.below(100) {
            0..=59 => INS,
            60..=89 => UPD,
            _ => DEL,
        };
        let live = match table {
            Table::Users => self.users.len(),
            Table::Orders => self.orders.len(),
            Table::Articles => self.articles.len(),
            Table::Stock => self.stock.len(),
            Table::Items => self.items.len(),
        };
        // Nothing to update or delete yet: insert instead.
        let op = if live == 0 { INS } else { op };
        let i = if live == 0 { 0 } else { self.pick_index(live) };
        self.st.ops[table as usize][op] += 1;
        self.o.s("table ");
        self.o.s(TABLE_NAMES[table as usize]);
        match (table, op) {
            (Table::Users, INS) => {
                let id = self.next_user;
                self.next_user += 1;
                self.users.push(id);
                self.o.s(": INSERT: ");
                self.user_tuple(id);
            }
            (Table::Users, UPD) => {
                let id = self.users[i];
                self.o.s(": UPDATE: ");
                self.user_tuple(id);
            }
            (Table::Users, _) => {
                let id = self.users.swap_remove(i);
                self.o.s(": DELETE: id[bigint]:");
                self.o.u(u64::from(id));
            }
            (Table::Orders, INS) => {
                let off = self.next_order;
                self.next_order += 1;
                let user = if self.users.is_empty() || self.r.per_mille(20) {
                    0 // printed as null
                } else {
                    self.users[self.r.below(self.users.len() as u64) as usize]
                };
                self.orders.push((off, user));
                self.o.s(": INSERT: ");
                self.order_tuple(off, user);
            }
            (Table::Orders, UPD) => {
                let (off, user) = self.orders[i];
                self.o.s(": UPDATE: ");
                self.order_tuple(off, user);
            }
            (Table::Orders, _) => {
                let (off, _) = self.orders.swap_remove(i);
                self.o.s(": DELETE: id[bigint]:");
                self.o.u(ORDER_ID_BASE + u64::from(off));
            }
            (Table::Articles, INS) => {
                let id = self.next_article;
                self.next_article += 1;
                self.o.s(": INSERT: ");
                let toasted = self.article_tuple(id, 1, false);
                self.articles.push(Article {
                    id,
                    rev: 1,
                    toasted,
                });
            }
            (Table::Articles, UPD) => {
                let a = self.articles[i];
                // A TOASTed body the UPDATE does not touch prints as unchanged-toast-datum.
                let keep_body = a.toasted && self.r.per_mille(700);
                self.o.s(": UPDATE: ");
                let toasted = self.article_tuple(a.id, a.rev + 1, keep_body);
                self.articles[i] = Article {
                    id: a.id,
                    rev: a.rev + 1,
                    toasted,
                };
            }
            (Table::Articles, _) => {
                let a = self.articles.swap_remove(i);
                self.o.s(": DELETE: id[integer]:");
                self.o.u(u64::from(a.id));
            }
            (Table::Stock, INS) => {
                let key = (self.r.below(WAREHOUSES.len() as u64) as u8, self.next_sku);
                self.next_sku += 1;
                self.stock.push(key);
                self.o.s(": INSERT: ");
                self.stock_key(key);
                self.stock_qty();
            }
            (Table::Stock, UPD) => {
                let old = self.stock[i];
                self.o.s(": UPDATE: ");
                if self.r.per_mille(200) {
                    // The key changes: test_decoding prints the old key first.
                    self.st.key_changes += 1;
                    let warehouse = if self.r.per_mille(300) {
                        self.r.below(WAREHOUSES.len() as u64) as u8
                    } else {
                        old.0
                    };
                    let new = (warehouse, self.next_sku);
                    self.next_sku += 1;
                    self.stock[i] = new;
                    self.o.s("old-key: ");
                    self.stock_key(old);
                    self.o.s(" new-tuple: ");
                    self.stock_key(new);
                } else {
                    self.stock_key(old);
                }
                self.stock_qty();
            }
            (Table::Stock, _) => {
                let key = self.stock.swap_remove(i);
                self.o.s(": DELETE: ");
                self.stock_key(key);
            }
            (Table::Items, INS) => {
                if self.item_line == 0 || self.item_line >= 200 || self.r.per_mille(400) {
                    self.item_order += 1;
                    self.item_line = 0;
                }
                self.item_line += 1;
                let key = (self.item_order, self.item_line);
                self.items.push(key);
                self.o.s(": INSERT: ");
                self.item_tuple(key);
            }
            (Table::Items, UPD) => {
                let key = self.items[i];
                self.o.s(": UPDATE: ");
                self.item_tuple(key);
            }
            (Table::Items, _) => {
                let key = self.items.swap_remove(i);
                self.o.s(": DELETE: ");
                self.item_key(key);
            }
        }
        self.o.end_line()
    }
}

// ---------------------------------------------------------------------------------------------

fn parse_num(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let t = v.replace('_', "").to_ascii_lowercase();
    let (digits, mul) = match t.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => match t.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => (t.as_str(), 1),
        },
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("{flag}: not a number: {v:?}"))
}

fn parse_args() -> Result<Option<Opts>, String> {
    let mut o = Opts {
        changes: 1_000_000,
        seed: 1,
        truncate_every: 0,
        big_every: 250_000,
        big_size: 20_000,
        start_xid: 1000,
        xids: true,
        timestamps: false,
        quiet: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--changes" => o.changes = parse_num(&flag, val())?,
            "--seed" => o.seed = parse_num(&flag, val())?,
            "--truncate-every" => o.truncate_every = parse_num(&flag, val())?,
            "--big-txn-every" => o.big_every = parse_num(&flag, val())?,
            "--big-txn-size" => o.big_size = parse_num(&flag, val())?.max(1),
            "--start-xid" => o.start_xid = parse_num(&flag, val())?,
            "--no-xids" => o.xids = false,
            "--timestamps" => o.timestamps = true,
            "--quiet" | "-q" => o.quiet = true,
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(None);
            }
            _ => return Err(format!("unknown argument {a:?} (see --help)")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_capture: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let stdout = io::stdout();
    let mut g = Gen::new(stdout.lock(), &opts);
    if let Err(e) = g.run(&opts) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS; // e.g. `| head`
        }
        eprintln!("gen_capture: writing stdout: {e}");
        return ExitCode::FAILURE;
    }
    if !opts.quiet {
        let secs = started.elapsed().as_secs_f64();
        let st = &g.st;
        let mut e = io::stderr().lock();
        let total: u64 = st.ops.iter().flatten().sum();
        let _ = writeln!(
            e,
            "gen_capture: {total} changes in {} transactions ({} big, {} empty), {} bytes, \
             {secs:.2} s ({:.0} MB/s)",
            st.txns,
            st.big_txns,
            st.empty_txns,
            g.o.written,
            g.o.written as f64 / 1e6 / secs.max(1e-9),
        );
        let _ = writeln!(
            e,
            "  {:<22}{:>10}{:>10}{:>10}{:>9}",
            "table", "insert", "update", "delete", "trunc"
        );
        for (name, ops) in TABLE_NAMES.iter().zip(st.ops) {
            let _ = writeln!(
                e,
                "  {name:<22}{:>10}{:>10}{:>10}{:>9}",
                ops[0], ops[1], ops[2], ops[3]
            );
        }
        let col = |k: usize| st.ops.iter().map(|o| o[k]).sum::<u64>();
        let _ = writeln!(
            e,
            "  {:<22}{:>10}{:>10}{:>10}{:>9}",
            "total",
            col(INS),
            col(UPD),
            col(DEL),
            col(TRUNC)
        );
        let _ = writeln!(
            e,
            "  unchanged-toast-datum updates: {}; key-changing updates: {}; live rows at end: {}",
            st.toast_unchanged,
            st.key_changes,
            g.users.len() + g.orders.len() + g.articles.len() + g.stock.len() + g.items.len()
        );
    }
    ExitCode::SUCCESS
}
