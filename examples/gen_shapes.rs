//! Benchmark input of particular shapes: a synthetic PostgreSQL `test_decoding` capture, exactly
//! as `pg_recvlogical -f -` prints it, written to standard output. Standard library only.
//!
//! ```text
//! cargo run --release --example gen_shapes -- --shape wide > wide.txt
//! cargo run --release --example gen_shapes -- --shape toast --value-bytes 1m > toast.txt
//! cargo run --release --example gen_shapes -- --shape tables --tables 1000 > tables.txt
//! ```
//!
//! (or without cargo: `rustc --edition 2021 -O -o gen_shapes examples/gen_shapes.rs`.)
//!
//! - `wide`: one table `public.wide` of 100 columns (`id` and 99 columns cycling through integer,
//!   text, numeric, boolean, timestamptz and double precision, ~5% NULL); 60% inserts, 30% full
//!   updates and 10% deletes of live ids; transactions of 1-50 changes.
//! - `toast`: `public.docs` rows whose `body` is a `--value-bytes` text spanning lines; updates
//!   send a new body or leave it `unchanged-toast-datum`; a few deletes; one change a transaction.
//! - `tables`: `--tables` tables `public.t0000`... of 4 columns, each getting the same number of
//!   changes (inserts of ids 1..k first, then updates and a delete), interleaved in transactions
//!   of ~100 changes that each touch ~100 different tables.
//!
//! `--changes N` counts `table ...:` messages; xids increase by one from 1000. Deterministic for
//! a given seed. Check the output with `python3 benches/check_capture.py FILE --expect-changes N`.

#[path = "capture_text/mod.rs"]
mod capture_text;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use capture_text::{Out, Rng, DAY_US};

const HELP: &str = "\
gen_shapes: write a synthetic PostgreSQL test_decoding capture of one shape to stdout

Options:
  --shape wide|toast|tables  what to write (required):
        wide    public.wide, 100 columns of mixed types; 60/30/10% insert/update/delete;
                transactions of 1-50 changes
        toast   public.docs with a --value-bytes text body; updates send a new body or
                leave it unchanged-toast-datum; a few deletes; one change a transaction
        tables  --tables tables public.t0000...; changes/tables changes each, inserts
                first; transactions of ~100 changes across many tables
  --changes N        row changes (`table ...:` messages)
                     [wide 100000, toast 200, tables 10000]
  --seed S           PRNG seed; same seed, same bytes                  [1]
  --tables N         (tables) number of tables, 1 to 1000000          [1000]
  --value-bytes N    (toast) bytes of each body value, at most 1g;
                     under 2000 bytes it is not TOASTed, so updates
                     always send it                                    [1048576]
  --quiet            no summary on stderr
Numbers accept `_` separators and k/m/g suffixes (e.g. 1m, 250k).
";

/// A value shorter than this is stored inline, so an update always prints it.
const TOAST_MIN: u64 = 2000;
/// PostgreSQL's limit on one field.
const MAX_VALUE_BYTES: u64 = (1 << 30) - 1;
const MAX_TABLES: u64 = 1_000_000;
const FIRST_XID: u64 = 1000;

// Microseconds since 1970-01-01 of 2026-01-01 00:00:00 UTC.
const EPOCH_2026_US: i64 = 1_767_225_600_000_000;

// The PRNG, the writer and its formatters: capture_text/mod.rs.

// ---------------------------------------------------------------------------------------------
// Options.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Wide,
    Toast,
    Tables,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Wide => "wide",
            Shape::Toast => "toast",
            Shape::Tables => "tables",
        }
    }

    fn default_changes(self) -> u64 {
        match self {
            Shape::Wide => 100_000,
            Shape::Toast => 200,
            Shape::Tables => 10_000,
        }
    }
}

struct Opts {
    shape: Shape,
    changes: u64,
    seed: u64,
    tables: u64,
    value_bytes: u64,
    quiet: bool,
}

fn parse_num(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let t = v.replace('_', "").to_ascii_lowercase();
    let (digits, mul) = if let Some(d) = t.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = t.strip_suffix('m') {
        (d, 1_000_000)
    } else if let Some(d) = t.strip_suffix('g') {
        (d, 1_000_000_000)
    } else {
        (t.as_str(), 1)
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("{flag}: not a number: {v:?}"))
}

fn parse_shape(v: Option<String>) -> Result<Shape, String> {
    match v.as_deref() {
        Some("wide") => Ok(Shape::Wide),
        Some("toast") => Ok(Shape::Toast),
        Some("tables") => Ok(Shape::Tables),
        Some(other) => Err(format!(
            "--shape: unknown shape {other:?} (wide, toast or tables)"
        )),
        None => Err("--shape needs a value".to_string()),
    }
}

/// `Ok(None)`: `--help` was printed.
fn parse_args() -> Result<Option<Opts>, String> {
    let (mut shape, mut changes, mut tables, mut value_bytes) = (None, None, None, None);
    let (mut seed, mut quiet) = (1, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--shape" => shape = Some(parse_shape(val())?),
            "--changes" => changes = Some(parse_num(&flag, val())?),
            "--seed" => seed = parse_num(&flag, val())?,
            "--tables" => tables = Some(parse_num(&flag, val())?),
            "--value-bytes" => value_bytes = Some(parse_num(&flag, val())?),
            "--quiet" | "-q" => quiet = true,
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(None);
            }
            _ => return Err(format!("unknown argument {a:?} (see --help)")),
        }
    }
    let shape = shape.ok_or("--shape is required: wide, toast or tables (see --help)")?;
    if tables.is_some() && shape != Shape::Tables {
        return Err("--tables only applies to --shape tables".to_string());
    }
    if value_bytes.is_some() && shape != Shape::Toast {
        return Err("--value-bytes only applies to --shape toast".to_string());
    }
    let tables = tables.unwrap_or(1000);
    if !(1..=MAX_TABLES).contains(&tables) {
        return Err(format!("--tables must be between 1 and {MAX_TABLES}"));
    }
    let value_bytes = value_bytes.unwrap_or(1 << 20);
    if value_bytes > MAX_VALUE_BYTES {
        return Err(format!("--value-bytes must be at most {MAX_VALUE_BYTES}"));
    }
    Ok(Some(Opts {
        shape,
        changes: changes.unwrap_or_else(|| shape.default_changes()),
        seed,
        tables,
        value_bytes,
        quiet,
    }))
}

// ---------------------------------------------------------------------------------------------
// Generator: transactions and the counts for the summary.

#[derive(Default)]
struct Stats {
    inserts: u64,
    updates: u64,
    deletes: u64,
    unchanged_toast: u64,
    txns: u64,
    tables: u64,
}

struct Gen<W: Write> {
    o: Out<W>,
    r: Rng,
    xid: u64,
    /// Changes still to write in the open transaction; `None` between transactions.
    txn_left: Option<u64>,
    clock_us: i64,
    st: Stats,
}

impl<W: Write> Gen<W> {
    fn new(sink: W, seed: u64) -> Self {
        Gen {
            o: Out::new(sink),
            r: Rng::new(seed),
            xid: FIRST_XID,
            txn_left: None,
            clock_us: EPOCH_2026_US + 40 * DAY_US,
            st: Stats::default(),
        }
    }

    /// Before the change numbered `done` of `total`: closes a full transaction and opens a new
    /// one of `lo..=hi` changes (fewer at the end) when needed.
    fn slot(&mut self, done: u64, total: u64, lo: u64, hi: u64) -> io::Result<()> {
        if self.txn_left == Some(0) {
            self.commit()?;
        }
        if self.txn_left.is_none() {
            let size = lo + self.r.below(hi - lo + 1);
            self.txn_left = Some(size.clamp(1, total - done));
            self.st.txns += 1;
            self.clock_us += self.r.below(500_000) as i64;
            self.o.s("BEGIN ");
            self.o.u(self.xid);
            self.o.end_line()?;
        }
        self.txn_left = self.txn_left.map(|n| n - 1);
        Ok(())
    }

    fn commit(&mut self) -> io::Result<()> {
        self.o.s("COMMIT ");
        self.o.u(self.xid);
        self.xid += 1;
        self.txn_left = None;
        self.o.end_line()
    }

    /// Closes the last transaction and flushes everything to the sink.
    fn finish(&mut self) -> io::Result<()> {
        if self.txn_left.is_some() {
            self.commit()?;
        }
        self.o.flush()?;
        self.o.sink.flush()
    }

    fn run(&mut self, opts: &Opts) -> io::Result<()> {
        match opts.shape {
            Shape::Wide => self.run_wide(opts.changes)?,
            Shape::Toast => self.run_toast(opts.changes, opts.value_bytes)?,
            Shape::Tables => self.run_tables(opts.changes, opts.tables)?,
        }
        self.finish()
    }

    /// Index into a non-empty live set.
    fn pick(&mut self, len: usize) -> usize {
        self.r.below(len as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Shape `wide`: public.wide, id and 99 columns of 6 types.

const WIDE_COLUMNS: usize = 99;
/// (column name prefix, type) in the order the columns cycle through.
const WIDE_TYPES: [(&str, &str); 6] = [
    ("int", "integer"),
    ("txt", "text"),
    ("num", "numeric"),
    ("flag", "boolean"),
    ("ts", "timestamp with time zone"),
    ("dbl", "double precision"),
];

/// ` int_01[integer]:` ... for each column after `id`.
fn wide_headers() -> Vec<String> {
    (0..WIDE_COLUMNS)
        .map(|c| {
            let (prefix, typ) = WIDE_TYPES[c % WIDE_TYPES.len()];
            format!(" {prefix}_{:02}[{typ}]:", c + 1)
        })
        .collect()
}

const LETTERS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl<W: Write> Gen<W> {
    fn run_wide(&mut self, changes: u64) -> io::Result<()> {
        self.st.tables = u64::from(changes > 0);
        let headers = wide_headers();
        let mut live: Vec<u64> = Vec::new();
        let mut next_id = 1u64;
        for done in 0..changes {
            self.slot(done, changes, 1, 50)?;
            let roll = self.r.below(100);
            self.o.s("table public.wide: ");
            if live.is_empty() || roll < 60 {
                live.push(next_id);
                self.st.inserts += 1;
                self.o.s("INSERT: ");
                self.wide_tuple(next_id, &headers);
                next_id += 1;
            } else if roll < 90 {
                let id = live[self.pick(live.len())];
                self.st.updates += 1;
                self.o.s("UPDATE: ");
                self.wide_tuple(id, &headers);
            } else {
                let i = self.pick(live.len());
                let id = live.swap_remove(i);
                self.st.deletes += 1;
                self.o.s("DELETE: id[bigint]:");
                self.o.u(id);
            }
            self.o.end_line()?;
        }
        Ok(())
    }

    fn wide_tuple(&mut self, id: u64, headers: &[String]) {
        self.o.s("id[bigint]:");
        self.o.u(id);
        for (c, header) in headers.iter().enumerate() {
            self.o.s(header);
            if self.r.percent(5) {
                self.o.s("null");
                continue;
            }
            match c % WIDE_TYPES.len() {
                0 => self.o.i(self.r.range(-2_147_483_648, 2_147_483_647)),
                1 => self.wide_text(),
                2 => self.o.fixed(self.r.range(-10_000_000, 1_000_000_000), 2),
                3 => self.o.s(if self.r.percent(50) { "true" } else { "false" }),
                4 => self.o.ts(
                    EPOCH_2026_US + self.r.below(365 * DAY_US as u64) as i64,
                    true,
                ),
                _ => {
                    // 1 <= |x| < 1e6 with a full 53-bit mantissa.
                    let x = 1.0 + (self.r.next() >> 11) as f64 / (1u64 << 53) as f64 * 999_998.0;
                    self.o.float(if self.r.percent(20) { -x } else { x });
                }
            }
        }
    }

    /// A short quoted text of 5-30 characters, now and then with a quote, a comma or an `é`.
    fn wide_text(&mut self) {
        let n = self.r.range(5, 30);
        let o = &mut self.o;
        o.buf.push(b'\'');
        for _ in 0..n {
            match self.r.below(100) {
                0 => o.s("''"),
                1 => o.buf.push(b','),
                2 => o.s("é"),
                _ => {
                    let c = LETTERS[self.r.below(LETTERS.len() as u64) as usize];
                    o.buf.push(c);
                }
            }
        }
        o.buf.push(b'\'');
    }
}

// ---------------------------------------------------------------------------------------------
// Shape `toast`: public.docs with big text bodies.

/// 64 printable ASCII characters for body text (6 random bits each).
const BODY_CHARS: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";

const TITLES: &[&str] = &[
    "Quarterly report",
    "Release notes",
    "Meeting minutes, draft",
    "Ann's notes",
    "Café menu",
    "Design doc",
];

impl<W: Write> Gen<W> {
    fn run_toast(&mut self, changes: u64, value_bytes: u64) -> io::Result<()> {
        self.st.tables = u64::from(changes > 0);
        let toastable = value_bytes >= TOAST_MIN;
        let mut live: Vec<(u64, u32)> = Vec::new(); // (id, version)
        let mut next_id = 1u64;
        for done in 0..changes {
            self.slot(done, changes, 1, 1)?;
            let roll = self.r.below(100);
            self.o.s("table public.docs: ");
            if live.is_empty() || roll < 40 {
                live.push((next_id, 1));
                self.st.inserts += 1;
                self.o.s("INSERT: ");
                self.doc_tuple(next_id, 1, Some(value_bytes));
                next_id += 1;
            } else if roll < 95 {
                let i = self.pick(live.len());
                live[i].1 += 1;
                let (id, version) = live[i];
                let new_body = !toastable || self.r.percent(50);
                self.st.updates += 1;
                self.st.unchanged_toast += u64::from(!new_body);
                self.o.s("UPDATE: ");
                self.doc_tuple(id, version, new_body.then_some(value_bytes));
            } else {
                let i = self.pick(live.len());
                let (id, _) = live.swap_remove(i);
                self.st.deletes += 1;
                self.o.s("DELETE: id[bigint]:");
                self.o.u(id);
            }
            self.o.end_line()?;
        }
        Ok(())
    }

    /// `body`: a new body of that many bytes, or `None` for `unchanged-toast-datum`.
    fn doc_tuple(&mut self, id: u64, version: u32, body: Option<u64>) {
        self.o.s("id[bigint]:");
        self.o.u(id);
        self.o.s(" title[text]:");
        let title = TITLES[self.r.below(TITLES.len() as u64) as usize];
        self.o.q(&format!("{title} #{id} v{version}"));
        self.o.s(" body[text]:");
        match body {
            Some(n) => {
                self.o.buf.push(b'\'');
                self.body_text(n as usize);
                self.o.buf.push(b'\'');
            }
            None => self.o.s("unchanged-toast-datum"),
        }
        self.o.s(" version[integer]:");
        self.o.u(u64::from(version));
    }

    /// `n` bytes of random printable text (random, so it does not compress and a value of 2 KB
    /// or more stays TOASTed), with two quotes (printed doubled) and a newline at random places
    /// once `n` >= 16.
    fn body_text(&mut self, n: usize) {
        let mut specials: Vec<(usize, &[u8])> = Vec::new();
        if n >= 16 {
            for s in [&b"\n"[..], b"''", b"''"] {
                specials.push((self.r.below(n as u64) as usize, s));
            }
            specials.sort_unstable();
        }
        self.o.buf.reserve(n + 8);
        let mut at = 0;
        for (pos, s) in specials {
            if pos < at {
                continue; // two specials drew the same place
            }
            self.random_text(pos - at);
            self.o.buf.extend_from_slice(s);
            at = pos + 1;
        }
        self.random_text(n - at);
    }

    fn random_text(&mut self, mut n: usize) {
        while n > 0 {
            let mut x = self.r.next();
            for _ in 0..n.min(10) {
                self.o.buf.push(BODY_CHARS[(x & 63) as usize]);
                x >>= 6;
            }
            n -= n.min(10);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shape `tables`: many small tables, changes interleaved across them.

/// Changes still to write for one table, and its live ids.
struct Tab {
    inserts: u64,
    updates: u64,
    deletes: u64,
    next_id: u64,
    live: Vec<u64>,
}

impl Tab {
    /// `c` changes: 10% deletes (at least one from 3 changes), 30% updates, the rest inserts,
    /// always more inserts than deletes.
    fn new(c: u64) -> Tab {
        let deletes = if c >= 3 { (c / 10).max(1) } else { 0 };
        let updates = c * 3 / 10;
        Tab {
            inserts: c - updates - deletes,
            updates,
            deletes,
            next_id: 1,
            live: Vec::new(),
        }
    }

    fn left(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

#[derive(Clone, Copy)]
enum Op {
    Insert(u64),
    Update(u64),
    Delete(u64),
}

/// The order of the changes: rounds in which every table with changes left writes one, in a
/// shuffled order, so that any run of consecutive changes touches that many different tables.
struct Plan {
    tabs: Vec<Tab>,
    round: Vec<u32>,
    pos: usize,
}

impl Plan {
    /// `changes` spread evenly over `tables` (the first `changes % tables` get one more).
    fn new(changes: u64, tables: u64) -> Plan {
        let tabs: Vec<Tab> = (0..tables)
            .map(|t| Tab::new(changes / tables + u64::from(t < changes % tables)))
            .collect();
        Plan {
            tabs,
            round: Vec::new(),
            pos: 0,
        }
    }

    fn next(&mut self, r: &mut Rng) -> Option<(usize, Op)> {
        if self.pos == self.round.len() {
            self.round = (0..self.tabs.len() as u32)
                .filter(|&t| self.tabs[t as usize].left() > 0)
                .collect();
            for i in (1..self.round.len()).rev() {
                let j = r.below(i as u64 + 1) as usize;
                self.round.swap(i, j);
            }
            self.pos = 0;
        }
        let t = *self.round.get(self.pos)? as usize;
        self.pos += 1;
        let tab = &mut self.tabs[t];
        let op = if tab.inserts > 0 {
            tab.inserts -= 1;
            tab.live.push(tab.next_id);
            tab.next_id += 1;
            Op::Insert(tab.next_id - 1)
        } else {
            // Inserts outnumber deletes, so some id is always live here.
            let i = r.below(tab.live.len() as u64) as usize;
            if r.below(tab.updates + tab.deletes) < tab.deletes {
                tab.deletes -= 1;
                Op::Delete(tab.live.swap_remove(i))
            } else {
                tab.updates -= 1;
                Op::Update(tab.live[i])
            }
        };
        Some((t, op))
    }
}

const NAMES: &[&str] = &[
    "alpha",
    "O'Brien",
    "café",
    "north, east",
    "Zoë",
    "plain name",
];

impl<W: Write> Gen<W> {
    fn run_tables(&mut self, changes: u64, tables: u64) -> io::Result<()> {
        let width = tables.to_string().len();
        let mut plan = Plan::new(changes, tables);
        self.st.tables = tables.min(changes);
        for done in 0..changes {
            let Some((t, op)) = plan.next(&mut self.r) else {
                break; // cannot happen: the plan holds exactly `changes` changes
            };
            self.slot(done, changes, 90, 110)?;
            self.o.s("table public.t");
            self.o.pad(t as u64, width);
            match op {
                Op::Insert(id) => {
                    self.st.inserts += 1;
                    self.o.s(": INSERT: ");
                    self.small_tuple(id);
                }
                Op::Update(id) => {
                    self.st.updates += 1;
                    self.o.s(": UPDATE: ");
                    self.small_tuple(id);
                }
                Op::Delete(id) => {
                    self.st.deletes += 1;
                    self.o.s(": DELETE: id[bigint]:");
                    self.o.u(id);
                }
            }
            self.o.end_line()?;
        }
        Ok(())
    }

    fn small_tuple(&mut self, id: u64) {
        self.o.s("id[bigint]:");
        self.o.u(id);
        self.o.s(" name[text]:");
        let name = NAMES[self.r.below(NAMES.len() as u64) as usize];
        self.o.q(&format!("{name} {id}"));
        self.o.s(" n[integer]:");
        self.o.i(self.r.range(-1000, 1_000_000));
        self.o.s(" updated_at[timestamp with time zone]:");
        let at = self.clock_us + self.r.below(1_000_000) as i64;
        self.o.ts(at, true);
    }
}

// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_shapes: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut g = Gen::new(io::stdout().lock(), opts.seed);
    if let Err(e) = g.run(&opts) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS; // e.g. `| head`
        }
        eprintln!("gen_shapes: writing stdout: {e}");
        return ExitCode::FAILURE;
    }
    if !opts.quiet {
        let st = &g.st;
        let secs = started.elapsed().as_secs_f64();
        let unchanged = if opts.shape == Shape::Toast {
            format!(" ({} with unchanged-toast-datum)", st.unchanged_toast)
        } else {
            String::new()
        };
        eprintln!(
            "gen_shapes: shape {}: {} changes ({} inserts, {} updates{unchanged}, {} deletes) \
             in {} transactions, {} bytes, {} table(s), {secs:.2} s",
            opts.shape.name(),
            st.inserts + st.updates + st.deletes,
            st.inserts,
            st.updates,
            st.deletes,
            st.txns,
            g.o.written,
            st.tables,
        );
    }
    ExitCode::SUCCESS
}
