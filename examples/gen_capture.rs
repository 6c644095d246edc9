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

#[path = "capture_text/mod.rs"]
mod capture_text;

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

    // -- public.users ---------------------------------------------------------------------

    fn user_tuple(&mut self, id: u32) {
        let h = splitmix64(u64::from(id) ^ 0x5553_4552);
        let (o, r) = (&mut self.o, &mut self.r);

        o.s("id[bigint]:");
        o.u(u64::from(id));

        // Stable per user, so updates repeat it.
        o.s(" email[character varying]:'");
        match h % 16 {
            0 => o.s("cé"),
            1 => o.s("o''brien"),
            2 => o.s("Ann.Lee+tag"),
            _ => o.s("user"),
        }
        o.u(u64::from(id));
        o.s(if h.is_multiple_of(16) {
            "@exämple.com'"
        } else {
            "@example.com'"
        });

        o.s(" active[boolean]:");
        o.s(if r.per_mille(850) { "true" } else { "false" });

        o.s(" score[numeric]:");
        if r.per_mille(50) {
            o.s("null");
        } else {
            o.fixed(r.range(-99_999_999, 99_999_999), 3);
        }

        o.s(" balance[numeric]:");
        match r.below(1000) {
            0..=49 => o.s("null"),
            50..=54 => o.s("NaN"),
            55..=59 => {
                // Wider than NUMERIC(38, ..).
                o.u(1 + r.below(9));
                for _ in 0..r.range(20, 40) {
                    o.buf.push(b'0' + r.below(10) as u8);
                }
                o.s(".5");
            }
            _ => {
                let scale = r.below(5) as u32;
                o.fixed(r.range(-100_000_000, 10_000_000_000), scale);
            }
        }

        o.s(" height[real]:");
        match r.below(1000) {
            0..=49 => o.s("null"),
            50..=59 => o.s(r.pick(ODD_REAL)),
            _ => o.float(r.range(140, 210) as f32 / 100.0),
        }

        o.s(" weight[double precision]:");
        match r.below(1000) {
            0..=49 => o.s("null"),
            50..=59 => o.s(r.pick(ODD_DOUBLE)),
            60..=499 => o.float(r.range(3_000, 150_000) as f64 / 1000.0),
            _ => o.float((r.next() >> 11) as f64 / (1u64 << 53) as f64 * 150.0 + 0.5),
        }

        o.s(" bio[text]:");
        match r.below(1000) {
            0..=29 => o.s("null"),
            30..=59 => o.s("''"),
            n => {
                o.buf.push(b'\'');
                for k in 0..=r.below(4) {
                    if k > 0 {
                        o.s(if r.per_mille(500) { ", " } else { " " });
                    }
                    o.qtext(r.pick(BIO_FRAGMENTS));
                }
                if n < 75 {
                    // ~1.5% of rows: a raw line break inside the value.
                    o.s(" ");
                    o.qtext(r.pick(NEWLINE_FRAGMENTS));
                }
                o.buf.push(b'\'');
            }
        }

        o.s(" tags[text[]]:");
        match r.below(100) {
            0..=4 => o.s("null"),
            5..=14 => o.s("'{}'"),
            _ => {
                o.s("'{");
                for k in 0..=r.below(4) {
                    if k > 0 {
                        o.buf.push(b',');
                    }
                    o.qtext(r.pick(TAGS));
                }
                o.s("}'");
            }
        }

        o.s(" prefs[jsonb]:");
        match r.below(100) {
            0..=4 => o.s("null"),
            5..=29 => {
                o.s("'{\"n\": ");
                o.i(r.range(-1000, 100_000));
                o.s(if r.per_mille(500) {
                    ", \"theme\": \"dark\"}'"
                } else {
                    ", \"theme\": \"light\"}'"
                });
            }
            _ => o.q(r.pick(JSONB)),
        }

        o.s(" meta[json]:");
        match r.below(100) {
            0..=4 => o.s("null"),
            5..=39 => {
                o.s("'{\"x\": ");
                o.u(r.below(1_000_000));
                o.s("}'");
            }
            _ => o.q(r.pick(JSON)),
        }

        o.s(" avatar[bytea]:");
        match r.below(100) {
            0..=9 => o.s("null"),
            10..=11 => o.s("'\\x'"),
            _ => {
                o.s("'\\x");
                for _ in 0..r.range(1, 8) {
                    o.hex(r.next(), 16);
                }
                o.buf.push(b'\'');
            }
        }

        o.s(" fav[public.colour]:");
        if r.per_mille(100) {
            o.s("null");
        } else {
            o.buf.push(b'\'');
            o.s(r.pick(COLOURS));
            o.buf.push(b'\'');
        }

        o.s(" born[date]:");
        if r.per_mille(50) {
            o.s("null");
        } else {
            o.buf.push(b'\'');
            o.date(r.range(-10_950, 14_610)); // 1940 .. 2010
            o.buf.push(b'\'');
        }

        o.s(" wakes[time without time zone]:");
        if r.per_mille(50) {
            o.s("null");
        } else {
            let secs = r.range(4 * 3600, 11 * 3600) as u64;
            let frac = if r.per_mille(200) {
                r.below(1_000_000)
            } else {
                0
            };
            o.buf.push(b'\'');
            o.time_of_day(secs * 1_000_000 + frac);
            o.buf.push(b'\'');
        }

        o.s(" seen[timestamp without time zone]:");
        if r.per_mille(50) {
            o.s("null");
        } else {
            let secs = EPOCH_2025_US / 1_000_000 - r.below(3 * 365 * 86_400) as i64;
            let frac = match r.below(10) {
                0..=3 => 0,
                4..=6 => r.below(100) as i64 * 10_000,
                _ => r.below(1_000_000) as i64,
            };
            o.ts(secs * 1_000_000 + frac, false);
        }

        // Stable per user (set on insert, never updated).
        o.s(" created[timestamp with time zone]:");
        let created = EPOCH_2025_US + i64::from(id) * 1_700_000 + (h % 1_000_000) as i64;
        o.ts(
            created - created % 1_000_000 * i64::from(!h.is_multiple_of(3)),
            true,
        );

        o.s(" external_id[uuid]:");
        if h.is_multiple_of(10) {
            o.s("null");
        } else {
            let a = splitmix64(h);
            let b = splitmix64(a);
            o.buf.push(b'\'');
            o.hex(a >> 32, 8);
            o.buf.push(b'-');
            o.hex(a >> 16, 4);
            o.buf.push(b'-');
            o.hex(0x4000 | (a & 0x0fff), 4);
            o.buf.push(b'-');
            o.hex(0x8000 | (b >> 48 & 0x3fff), 4);
            o.buf.push(b'-');
            o.hex(b, 12);
            o.buf.push(b'\'');
        }

        o.s(" nap[interval]:");
        if r.per_mille(100) {
            o.s("null");
        } else {
            let h = 3_600_000_000i64;
            let (y, m, d, t) = match r.below(9) {
                0 => (0, 0, 0, r.range(0, 48) * h),
                1 => (0, 0, -r.range(1, 30), 0),
                2 => (0, 0, r.range(1, 9), r.range(0, 86_399) * 1_000_000),
                3 => (1, 2, 3, 4 * h + 5 * 60_000_000 + 6_000_000),
                4 => (0, 0, 0, r.range(1, 59_999_999)),
                5 => (0, r.range(1, 3), 0, 0),
                6 => (0, 0, -1, r.range(1, 23) * h + 180_000_000),
                7 => (0, 0, 0, -r.range(1, 120) * 60_000_000),
                _ => (r.range(-2, 5), r.range(-11, 11), r.range(-30, 30), 0),
            };
            o.buf.push(b'\'');
            interval(o, y, m, d, t);
            o.buf.push(b'\'');
        }
    }

    // -- public.orders --------------------------------------------------------------------

    fn order_tuple(&mut self, off: u32, user: u32) {
        let id = ORDER_ID_BASE + u64::from(off);
        let h = splitmix64(id);
        let (o, r) = (&mut self.o, &mut self.r);
        o.s("id[bigint]:");
        o.u(id);
        o.s(" user_id[bigint]:");
        if user == 0 {
            o.s("null");
        } else {
            o.u(u64::from(user));
        }
        o.s(" amount[numeric]:");
        if h.is_multiple_of(100) {
            o.s("null");
        } else {
            o.fixed(((h >> 8) % 600_000) as i64 - 50_000, 2);
        }
        o.s(" status[character varying]:");
        o.q(r.pick(STATUSES));
        o.s(" created[timestamp with time zone]:");
        o.ts(
            EPOCH_2025_US + off as i64 * 900_000 + (h >> 20 & 0xfffff) as i64,
            true,
        );
        o.s(" paid[boolean]:");
        o.s(match r.below(20) {
            0 => "null",
            1..=9 => "false",
            _ => "true",
        });
    }

    // -- public.articles ------------------------------------------------------------------

    /// Writes the tuple; returns whether the body now lives out of line (TOASTed).
    fn article_tuple(&mut self, id: u32, rev: u32, keep_body: bool) -> bool {
        let h = splitmix64(u64::from(id) ^ 0xA271);
        let (o, r) = (&mut self.o, &mut self.r);
        o.s("id[integer]:");
        o.u(u64::from(id));
        o.s(" headline[text]:'");
        o.qtext(HEADLINES[(h % HEADLINES.len() as u64) as usize]);
        o.u(u64::from(id));
        o.s("' body[text]:");
        let toasted = if keep_body {
            o.s("unchanged-toast-datum");
            self.st.toast_unchanged += 1;
            true
        } else if r.per_mille(20) {
            o.s("null");
            false
        } else {
            // A quarter of the bodies are long (1-4 KB); past ~2 KB they are stored out of line.
            let target = if r.per_mille(250) {
                r.range(1000, 4000)
            } else {
                r.range(10, 300)
            };
            let paragraphs = target > 1000 && r.per_mille(300);
            o.buf.push(b'\'');
            let start = o.buf.len();
            let mut len = 0i64;
            while len < target {
                let w = r.pick(WORDS);
                if len > 0 {
                    if paragraphs && r.per_mille(15) {
                        o.s(".\n\n");
                    } else {
                        o.buf.push(b' ');
                    }
                }
                o.qtext(w);
                len = (o.buf.len() - start) as i64;
            }
            o.buf.push(b'\'');
            len > 2000
        };
        o.s(" rev[integer]:");
        o.u(u64::from(rev));
        toasted
    }

    // -- inventory.stock ------------------------------------------------------------------

    fn stock_key(&mut self, (warehouse, sku): (u8, u32)) {
        let o = &mut self.o;
        o.s("warehouse[text]:");
        o.q(WAREHOUSES[warehouse as usize]);
        o.s(" sku[text]:'");
        o.qtext(SKU_PREFIXES[sku as usize % SKU_PREFIXES.len()]);
        o.pad(u64::from(sku), 6);
        o.buf.push(b'\'');
    }

    fn stock_qty(&mut self) {
        self.o.s(" qty[integer]:");
        if self.r.per_mille(10) {
            self.o.s("null");
        } else {
            self.o.i(self.r.range(-5, 1000));
        }
    }

    // -- sales."Order Items" --------------------------------------------------------------

    fn item_key(&mut self, (order, line): (u32, u16)) {
        self.o.s("\"Order Id\"[bigint]:");
        self.o.u(ITEM_ORDER_BASE + u64::from(order));
        self.o.s(" line_no[integer]:");
        self.o.u(u64::from(line));
    }

    fn item_tuple(&mut self, key: (u32, u16)) {
        self.item_key(key);
        let (o, r) = (&mut self.o, &mut self.r);
        o.s(" \"Quantity\"[integer]:");
        let max = if r.per_mille(50) { 10_000 } else { 10 };
        o.u(1 + r.below(max));
        o.s(" note[text]:");
        match r.below(1000) {
            0..=399 => o.s("null"),
            400..=449 => o.s("''"),
            450..=454 => o.s("'multi\nline note'"),
            _ => o.q(r.pick(NOTES)),
        }
    }
}

/// An interval in PostgreSQL's default `postgres` IntervalStyle.
fn interval<W: Write>(o: &mut Out<W>, years: i64, mons: i64, days: i64, time_us: i64) {
    let mut first = true;
    let mut prev_negative = false;
    for (v, unit) in [(years, "year"), (mons, "mon"), (days, "day")] {
        if v == 0 {
            continue;
        }
        if !first {
            o.buf.push(b' ');
        }
        if prev_negative && v > 0 {
            o.buf.push(b'+');
        }
        o.i(v);
        o.buf.push(b' ');
        o.s(unit);
        if v != 1 {
            o.buf.push(b's');
        }
        first = false;
        prev_negative = v < 0;
    }
    if time_us != 0 || first {
        if !first {
            o.buf.push(b' ');
        }
        if time_us < 0 {
            o.buf.push(b'-');
        } else if prev_negative {
            o.buf.push(b'+');
        }
        o.time_of_day(time_us.unsigned_abs());
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
