//! Property tests for the test_decoding parser and framer: random messages rendered exactly the
//! way PostgreSQL's test_decoding prints them, pushed in random chunks, must come back as the
//! messages that were rendered; and no input whatsoever may make the parser or framer panic.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use re_dms::source::decoding::{
    parse_message, parse_message_utf8, Body, FramedChunk, Framer, Message, MessageStream,
    ParseError, Side, Tuple, Value,
};
use re_dms::source::filter::TableFilter;
use re_dms::wal::digest::{from_parse_tree, Digester};

// ---------------------------------------------------------------------------------------------
// The model: what a message means, independent of how it is printed.

#[derive(Debug, Clone, PartialEq)]
enum MVal {
    Null,
    Toast,
    /// Printed as is: numbers, NaN/Infinity, true/false.
    Unquoted(String),
    /// Printed as `B'...'`.
    Bits(String),
    /// The value's text; printed in `'...'` with `'` doubled and nothing else escaped.
    Quoted(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
struct MCol {
    name: String,
    type_name: String,
    value: MVal,
}

#[derive(Debug, Clone, PartialEq)]
enum MMsg {
    Begin {
        xid: Option<u32>,
        at: Option<String>,
    },
    Commit {
        xid: Option<u32>,
        at: Option<String>,
    },
    Insert {
        table: (String, String),
        new: Option<Vec<MCol>>,
    },
    Update {
        table: (String, String),
        old_key: Option<Vec<MCol>>,
        new: Option<Vec<MCol>>,
    },
    Delete {
        table: (String, String),
        old: Option<Vec<MCol>>,
    },
    Truncate {
        tables: Vec<(String, String)>,
        restart_seqs: bool,
        cascade: bool,
    },
    Logical {
        transactional: bool,
        prefix: String,
        content: Vec<u8>,
    },
}

// ---------------------------------------------------------------------------------------------
// Rendering, following contrib/test_decoding/test_decoding.c (PostgreSQL 15).

/// A few reserved words: quote_identifier quotes these even though they look bare.
const KEYWORDS: &[&str] = &["select", "table", "from", "user", "order", "group", "all"];

/// PostgreSQL's quote_identifier.
fn quote_ident(id: &str) -> String {
    let mut bytes = id.bytes();
    let safe = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
        && !KEYWORDS.contains(&id);
    if safe {
        id.to_owned()
    } else {
        format!("\"{}\"", id.replace('"', "\"\""))
    }
}

fn render_table(out: &mut Vec<u8>, (schema, name): &(String, String)) {
    out.extend_from_slice(quote_ident(schema).as_bytes());
    out.push(b'.');
    out.extend_from_slice(quote_ident(name).as_bytes());
}

fn render_tuple(out: &mut Vec<u8>, cols: &[MCol]) {
    for c in cols {
        out.push(b' ');
        out.extend_from_slice(quote_ident(&c.name).as_bytes());
        out.push(b'[');
        out.extend_from_slice(c.type_name.as_bytes());
        out.extend_from_slice(b"]:");
        match &c.value {
            MVal::Null => out.extend_from_slice(b"null"),
            MVal::Toast => out.extend_from_slice(b"unchanged-toast-datum"),
            MVal::Unquoted(s) => out.extend_from_slice(s.as_bytes()),
            MVal::Bits(s) => {
                out.extend_from_slice(b"B'");
                out.extend_from_slice(s.as_bytes());
                out.push(b'\'');
            }
            MVal::Quoted(v) => {
                out.push(b'\'');
                for &b in v {
                    if b == b'\'' {
                        out.push(b);
                    }
                    out.push(b);
                }
                out.push(b'\'');
            }
        }
    }
}

fn render_new(out: &mut Vec<u8>, tuple: &Option<Vec<MCol>>) {
    match tuple {
        None => out.extend_from_slice(b" (no-tuple-data)"),
        Some(cols) => render_tuple(out, cols),
    }
}

fn render(m: &MMsg) -> Vec<u8> {
    let mut out = Vec::new();
    match m {
        MMsg::Begin { xid, at } | MMsg::Commit { xid, at } => {
            out.extend_from_slice(if matches!(m, MMsg::Begin { .. }) {
                b"BEGIN"
            } else {
                b"COMMIT"
            });
            if let Some(xid) = xid {
                out.extend_from_slice(format!(" {xid}").as_bytes());
            }
            if let Some(at) = at {
                out.extend_from_slice(format!(" (at {at})").as_bytes());
            }
        }
        MMsg::Insert { table, new } => {
            out.extend_from_slice(b"table ");
            render_table(&mut out, table);
            out.extend_from_slice(b": INSERT:");
            render_new(&mut out, new);
        }
        MMsg::Update {
            table,
            old_key,
            new,
        } => {
            out.extend_from_slice(b"table ");
            render_table(&mut out, table);
            out.extend_from_slice(b": UPDATE:");
            if let Some(old_key) = old_key {
                out.extend_from_slice(b" old-key:");
                render_tuple(&mut out, old_key);
                out.extend_from_slice(b" new-tuple:");
            }
            render_new(&mut out, new);
        }
        MMsg::Delete { table, old } => {
            out.extend_from_slice(b"table ");
            render_table(&mut out, table);
            out.extend_from_slice(b": DELETE:");
            render_new(&mut out, old);
        }
        MMsg::Truncate {
            tables,
            restart_seqs,
            cascade,
        } => {
            out.extend_from_slice(b"table ");
            for (i, t) in tables.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                render_table(&mut out, t);
            }
            out.extend_from_slice(b": TRUNCATE:");
            if *restart_seqs || *cascade {
                if *restart_seqs {
                    out.extend_from_slice(b" restart_seqs");
                }
                if *cascade {
                    out.extend_from_slice(b" cascade");
                }
            } else {
                out.extend_from_slice(b" (no-flags)");
            }
        }
        MMsg::Logical {
            transactional,
            prefix,
            content,
        } => {
            out.extend_from_slice(
                format!(
                    "message: transactional: {} prefix: {prefix}, sz: {} content:",
                    u8::from(*transactional),
                    content.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(content);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsed messages back to the model.

fn model_value(v: &Value<'_>) -> MVal {
    match v {
        Value::Null => MVal::Null,
        Value::UnchangedToast => MVal::Toast,
        Value::Unquoted(b) => MVal::Unquoted(String::from_utf8_lossy(b).into_owned()),
        Value::Bits(b) => MVal::Bits(String::from_utf8_lossy(b).into_owned()),
        Value::Quoted(_) => MVal::Quoted(v.text().unwrap().into_owned()),
    }
}

fn model_tuple(t: &Option<Tuple<'_>>) -> Option<Vec<MCol>> {
    t.as_ref().map(|t| {
        t.columns
            .iter()
            .map(|c| MCol {
                name: c.name.to_string(),
                type_name: c.type_name.to_owned(),
                value: model_value(&c.value),
            })
            .collect()
    })
}

/// The model of a parsed message; timestamps are not kept by the parser, so `at` comes from the
/// expected message.
fn model(m: &Message<'_>, expected: &MMsg) -> MMsg {
    let at = match expected {
        MMsg::Begin { at, .. } | MMsg::Commit { at, .. } => at.clone(),
        _ => None,
    };
    let table =
        |t: &re_dms::source::decoding::TableName<'_>| (t.schema.to_string(), t.name.to_string());
    match m {
        Message::Begin { xid } => MMsg::Begin { xid: *xid, at },
        Message::Commit { xid } => MMsg::Commit { xid: *xid, at },
        Message::Insert { table: t, new } => MMsg::Insert {
            table: table(t),
            new: model_tuple(new),
        },
        Message::Update {
            table: t,
            old_key,
            new,
        } => MMsg::Update {
            table: table(t),
            old_key: model_tuple(old_key),
            new: model_tuple(new),
        },
        Message::Delete { table: t, old } => MMsg::Delete {
            table: table(t),
            old: model_tuple(old),
        },
        Message::Truncate {
            tables,
            restart_seqs,
            cascade,
        } => MMsg::Truncate {
            tables: tables.iter().map(table).collect(),
            restart_seqs: *restart_seqs,
            cascade: *cascade,
        },
        Message::Logical {
            transactional,
            prefix,
            content,
        } => MMsg::Logical {
            transactional: *transactional,
            prefix: prefix.to_string(),
            content: content.to_vec(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_][a-z0-9_$]{0,10}",
        1 => prop::sample::select(KEYWORDS).prop_map(str::to_owned),
        1 => prop::sample::select(&["new-tuple", "old-key", "(no-tuple-data)", "Quantity",
                                    "Order Items", "a.b", "x\"y", "\"\"", "c[1]", "it's", "k:v"][..])
            .prop_map(str::to_owned),
        3 => "[a-zA-Z0-9 .\"\\[\\]:',$é日\n_-]{1,12}",
    ]
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Number,
    Bool,
    Bits,
    Quoted,
}

const TYPES: &[(&str, Kind)] = &[
    ("integer", Kind::Number),
    ("bigint", Kind::Number),
    ("smallint", Kind::Number),
    ("oid", Kind::Number),
    ("numeric", Kind::Number),
    ("real", Kind::Number),
    ("double precision", Kind::Number),
    ("boolean", Kind::Bool),
    ("bit", Kind::Bits),
    ("bit varying", Kind::Bits),
    ("text", Kind::Quoted),
    ("character varying", Kind::Quoted),
    ("character", Kind::Quoted),
    ("timestamp with time zone", Kind::Quoted),
    ("integer[]", Kind::Quoted),
    ("text[]", Kind::Quoted),
    ("public.colour", Kind::Quoted),
    ("public.\"My Type\"", Kind::Quoted),
    ("\"MyType\"[]", Kind::Quoted),
    ("\"my]:type\"", Kind::Quoted),
    ("sales.\"a \"\"q\"\" [x]\"", Kind::Quoted),
    ("\"char\"", Kind::Quoted),
    ("jsonb", Kind::Quoted),
    ("bytea", Kind::Quoted),
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "-?[0-9]{1,3}(\\.[0-9]{1,4})?e[+-][0-9]{2}",
        "-?[0-9]{1,30}\\.[0-9]{0,20}",
        prop::sample::select(&["NaN", "Infinity", "-Infinity", "0", "-0"][..])
            .prop_map(str::to_owned),
    ]
}

const SPECIAL_BYTES: &[&[u8]] = &[
    b"'",
    b"''",
    b"\n",
    b"\r\n",
    b"\r",
    b"\t",
    b"\\",
    b"\\'",
    b"\"",
    b"\xc3\xa9",
    b"\xe6\x97\xa5",
    b"\xf0\x9f\x98\x80",
    b"\xff",
    b"\x80\xfe",
    b" new-tuple: x[int]:1",
    b"]:",
    b"\x01",
];

/// Text with the characters that matter: quotes, newlines, CR, tabs, backslashes, non-ASCII and
/// bytes that are not UTF-8 at all (never NUL: PostgreSQL text cannot hold it).
fn text_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => "[ -~]{1,8}".prop_map(String::into_bytes),
        1 => prop::sample::select(SPECIAL_BYTES)
        .prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn column() -> impl Strategy<Value = MCol> {
    (ident(), prop::sample::select(TYPES), 0..10u8).prop_flat_map(|(name, (ty, kind), null)| {
        let value = match (null, kind) {
            (0, _) => Just(MVal::Null).boxed(),
            (1, _) => Just(MVal::Toast).boxed(),
            (_, Kind::Number) => number().prop_map(MVal::Unquoted).boxed(),
            (_, Kind::Bool) => prop::bool::ANY
                .prop_map(|b| MVal::Unquoted(b.to_string()))
                .boxed(),
            (_, Kind::Bits) => "[01]{0,12}".prop_map(MVal::Bits).boxed(),
            (_, Kind::Quoted) => text_bytes().prop_map(MVal::Quoted).boxed(),
        };
        value.prop_map(move |value| MCol {
            name: name.clone(),
            type_name: ty.to_owned(),
            value,
        })
    })
}

fn tuple() -> impl Strategy<Value = Vec<MCol>> {
    prop::collection::vec(column(), 0..8)
}

fn table() -> impl Strategy<Value = (String, String)> {
    (ident(), ident())
}

fn at() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        "20[0-9]{2}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?\\+00",
    )
}

fn message() -> impl Strategy<Value = MMsg> {
    prop_oneof![
        2 => (prop::option::of(any::<u32>()), at()).prop_map(|(xid, at)| MMsg::Begin { xid, at }),
        2 => (prop::option::of(any::<u32>()), at()).prop_map(|(xid, at)| MMsg::Commit { xid, at }),
        4 => (table(), prop::option::weighted(0.9, tuple()))
            .prop_map(|(table, new)| MMsg::Insert { table, new }),
        3 => (table(), prop::option::of(tuple()), prop::option::weighted(0.9, tuple()))
            .prop_map(|(table, old_key, new)| MMsg::Update { table, old_key, new }),
        2 => (table(), prop::option::weighted(0.9, tuple()))
            .prop_map(|(table, old)| MMsg::Delete { table, old }),
        1 => (prop::collection::vec(table(), 1..4), any::<bool>(), any::<bool>())
            .prop_map(|(tables, restart_seqs, cascade)| MMsg::Truncate { tables, restart_seqs, cascade }),
        1 => (any::<bool>(), "[a-zA-Z0-9 _:.\n'\"]{0,12}", prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(transactional, prefix, content)| MMsg::Logical { transactional, prefix, content }),
    ]
}

/// Messages, with 0..2 blank lines before each, and whether the input ends with a newline.
fn input() -> impl Strategy<Value = (Vec<(u8, MMsg)>, bool)> {
    (
        prop::collection::vec(
            (prop::sample::select(&[0u8, 0, 0, 0, 1, 2][..]), message()),
            1..30,
        ),
        any::<bool>(),
    )
}

// ---------------------------------------------------------------------------------------------
// Driving the stream.

/// What came out of the stream for one message.
#[derive(Debug)]
struct Out {
    line: u64,
    raw: Vec<u8>,
    result: Result<MMsg, ParseError>,
}

/// Pushes `chunks` into a stream, draining frames after each push and after `finish`. Every
/// frame's raw bytes must parse again to the same message. Asserts the stream makes progress on
/// every call that does not ask for more input, and ends empty.
fn run(chunks: &[&[u8]], expected: &[MMsg]) -> Vec<Out> {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut s = MessageStream::new();
    let mut out = Vec::new();
    let mut calls = 0usize;
    let mut drain = |s: &mut MessageStream, out: &mut Vec<Out>| loop {
        calls += 1;
        assert!(
            calls <= total + chunks.len() + 2,
            "the stream is not making progress"
        );
        let before = s.buffered_len();
        match s.next_frame() {
            Ok(Some(f)) => {
                let again = parse_message(f.raw, f.line).unwrap();
                assert_eq!(again, f.message);
                let exp = expected.get(out.len()).cloned().unwrap_or(MMsg::Begin {
                    xid: None,
                    at: None,
                });
                out.push(Out {
                    line: f.line,
                    raw: f.raw.to_vec(),
                    result: Ok(model(&f.message, &exp)),
                });
            }
            Ok(None) => break,
            Err(e) => {
                assert!(s.buffered_len() < before, "an error must skip input");
                out.push(Out {
                    line: e.line,
                    raw: Vec::new(),
                    result: Err(e),
                });
            }
        }
    };
    for chunk in chunks {
        s.push(chunk);
        drain(&mut s, &mut out);
    }
    s.finish();
    drain(&mut s, &mut out);
    assert_eq!(s.buffered_len(), 0);
    out
}

/// Splits `bytes` into chunks whose sizes cycle through `sizes`.
fn chunked<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.clamp(1, rest.len()));
        chunks.push(a);
        rest = b;
    }
    chunks
}

proptest! {
    // 512 cases unless PROPTEST_CASES says otherwise. Failures are kept next to this file
    // (decoding_props.proptest-regressions) and replayed first; proptest's default would put
    // them under proptest-regressions/ beside tests/, the directory holding main.rs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Rendered messages, concatenated and pushed in random chunks, parse back to themselves,
    /// with the right raw bytes and starting line numbers.
    #[test]
    fn rendered_messages_round_trip(
        (msgs, final_newline) in input(),
        sizes in prop::collection::vec(prop_oneof![1..8usize, 1..300usize, 1..5000usize], 1..10),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut line = 1u64;
        for (i, (blank, m)) in msgs.iter().enumerate() {
            bytes.extend(std::iter::repeat_n(b'\n', usize::from(*blank)));
            line += u64::from(*blank);
            let raw = render(m);
            expected.push((line, raw.clone(), m.clone()));
            line += raw.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            bytes.extend_from_slice(&raw);
            if i + 1 < msgs.len() || final_newline {
                bytes.push(b'\n');
            }
        }
        let models: Vec<MMsg> = msgs.iter().map(|(_, m)| m.clone()).collect();
        // Each row, then the same row with its values moved one column on (quoted, NULL,
        // TOAST... where other kinds were): read with its own headers, then with those kept.
        let revalued: Vec<Vec<u8>> = models.iter().map(|m| render(&revalued(m))).collect();
        let raws = expected.iter().map(|(_, raw, _)| raw.as_slice());
        digests_agree(raws.zip(&revalued).flat_map(|(a, b)| [a, b.as_slice()]));
        let out = run(&chunked(&bytes, &sizes), &models);
        framer_agrees(&chunked(&bytes, &sizes));
        prop_assert_eq!(out.len(), expected.len());
        for (got, (line, raw, m)) in out.iter().zip(&expected) {
            match &got.result {
                Ok(g) => prop_assert_eq!(g, m),
                Err(e) => prop_assert!(false, "{} in {:?}", e, String::from_utf8_lossy(raw)),
            }
            prop_assert_eq!(got.line, *line);
            prop_assert_eq!(&got.raw, raw);
            // And parse_message alone agrees.
            let direct = parse_message(raw, *line).unwrap();
            prop_assert_eq!(&model(&direct, m), m);
            // Its UTF-8 flag is the standard library's verdict (messages up to 8 KiB).
            let (_, utf8) = parse_message_utf8(raw, *line).unwrap();
            prop_assert_eq!(utf8, raw.len() <= 8 * 1024 && std::str::from_utf8(raw).is_ok());
        }
    }

    /// Arbitrary bytes never panic, whether parsed directly or framed in two chunks split at the
    /// first byte's value (like the fuzz target), and framing does not depend on chunking.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        no_panic(&bytes);
    }

    /// Valid messages with random damage never panic either.
    #[test]
    fn mutated_messages_never_panic(
        msgs in prop::collection::vec(message(), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..6u8, any::<u8>()), 1..6),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend_from_slice(&render(m));
            bytes.push(b'\n');
        }
        let intact = bytes.clone();
        for (at, op, b) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => bytes.insert(i, b"'\"\n "[usize::from(b % 4)]),
                2 => { bytes.remove(i); }
                3 => bytes.truncate(i),
                4 => { let tail = bytes[i..].to_vec(); bytes.extend_from_slice(&tail); }
                _ => bytes.insert(i, b),
            }
        }
        no_panic(&bytes);
        // Damaged rows read with the intact rows' headers kept.
        digests_agree(intact.split(|&b| b == b'\n').chain(bytes.split(|&b| b == b'\n')));
    }
}

/// `m` with each new tuple's values moved one column on (the last to the first): the same
/// table and column headers, other values under them.
fn revalued(m: &MMsg) -> MMsg {
    let mut m = m.clone();
    if let MMsg::Insert {
        new: Some(cols), ..
    }
    | MMsg::Update {
        new: Some(cols), ..
    } = &mut m
    {
        let mut values: Vec<MVal> = cols.iter().map(|c| c.value.clone()).collect();
        if !values.is_empty() {
            values.rotate_right(1);
        }
        for (c, v) in cols.iter_mut().zip(values) {
            c.value = v;
        }
    }
    m
}

/// A digester given `lines` one after the other (so later rows of a table are read with the
/// headers kept from earlier ones) digests exactly the rows the parse trees say it should, into
/// exactly the table names, WAL prefixes and UTF-8 flags the trees give.
fn digests_agree<'a>(lines: impl Iterator<Item = &'a [u8]>) {
    use re_dms::source::decoding::Digest;
    let mut digester = Digester::new(TableFilter::default());
    for raw in lines {
        let mut side = Side::default();
        let got = digester.digest(raw, &mut side).map(|(d, utf8)| {
            let name = side.name(&d).unwrap().to_owned();
            (name, side.prefix(&d).unwrap().to_vec(), utf8)
        });
        let want = from_parse_tree(raw, &TableFilter::default()).map(|(name, prefix)| {
            let (_, utf8) = parse_message_utf8(raw, 1).unwrap();
            (name, prefix, utf8)
        });
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(raw));
        if got.is_none() {
            assert!(
                side.names.is_empty() && side.bytes.is_empty(),
                "a refused row left bytes behind"
            );
        }
    }
}

/// What the fuzz target checks, for the plain test runner.
fn no_panic(bytes: &[u8]) {
    let _ = parse_message(bytes, 1);
    let split = usize::from(bytes.first().copied().unwrap_or(0)).min(bytes.len());
    let (a, b) = bytes.split_at(split);
    let two = run(&[a, b], &[]);
    let whole = run(&[bytes], &[]);
    let one_by_one = run(&chunked(bytes, &[1]), &[]);
    for other in [&two, &one_by_one] {
        assert_eq!(other.len(), whole.len());
        for (x, y) in other.iter().zip(&whole) {
            assert_eq!(x.line, y.line);
            assert_eq!(x.raw, y.raw);
            assert_eq!(x.result.is_ok(), y.result.is_ok());
        }
    }
    framer_agrees(&[a, b]);
    framer_agrees(&chunked(bytes, &[1]));
}

/// A frame or error as (line, raw, the message's debug form or the error).
type Seen = (u64, Vec<u8>, Result<String, ParseError>);

/// The framer (input framed ahead of ingest) gives the stream's frames for the same chunks, up
/// to and including the first error (where ingest stops); returns them.
fn framer_agrees(chunks: &[&[u8]]) -> Vec<Seen> {
    let mut s = MessageStream::new();
    let mut by_stream: Vec<Seen> = Vec::new();
    let drain = |s: &mut MessageStream, out: &mut Vec<Seen>| loop {
        match s.next_frame() {
            Ok(Some(f)) => out.push((f.line, f.raw.to_vec(), Ok(format!("{:?}", f.message)))),
            Ok(None) => return true,
            Err(e) => {
                out.push((e.line, Vec::new(), Err(e)));
                return false;
            }
        }
    };
    let mut failed = false;
    for chunk in chunks {
        s.push(chunk);
        if !drain(&mut s, &mut by_stream) {
            failed = true;
            break;
        }
    }
    if !failed {
        s.finish();
        drain(&mut s, &mut by_stream);
    }
    let mut framer = Framer::new();
    let mut by_framer: Vec<Seen> = Vec::new();
    let take = |c: Option<FramedChunk>, out: &mut Vec<Seen>| {
        let Some(c) = c else { return };
        for f in c.frames() {
            let message = f
                .body
                .message()
                .expect("no digest: every frame keeps its tree");
            out.push((f.line, f.raw.to_vec(), Ok(format!("{message:?}"))));
        }
        if let Some(e) = c.error() {
            out.push((e.line, Vec::new(), Err(e.clone())));
        }
    };
    for chunk in chunks {
        take(framer.push(chunk.to_vec()), &mut by_framer);
    }
    take(framer.finish(), &mut by_framer);
    assert_eq!(by_framer, by_stream);
    // Read in place (`--stdin`): the same frames. Room for at least 64 bytes, so that both the
    // copied and the grown-in-place unfinished message are taken.
    let mut framer = Framer::new();
    let mut by_reader: Vec<Seen> = Vec::new();
    for chunk in chunks {
        let (mut buf, at) = framer.read_buffer(chunk.len().max(64));
        buf[at..at + chunk.len()].copy_from_slice(chunk);
        buf.truncate(at + chunk.len());
        take(framer.push_read(buf), &mut by_reader);
    }
    // End of input as `--stdin` meets it: a read of nothing, handed back, then the end.
    let (mut buf, at) = framer.read_buffer(64);
    buf.truncate(at);
    take(framer.push_read(buf), &mut by_reader);
    take(framer.finish(), &mut by_reader);
    assert_eq!(by_reader, by_stream);
    digesting_framer_agrees(chunks, &by_stream);
    by_framer
}

/// With `--stdin`'s digest hook, the framer gives the same frames (lines, bytes and, up to the
/// first error, results); a digested frame is what its parse tree says, and every one-line row
/// to digest is digested.
fn digesting_framer_agrees(chunks: &[&[u8]], by_stream: &[Seen]) {
    let mut framer = Framer::new().with_digest(Box::new(Digester::new(TableFilter::default())));
    let mut seen: Vec<Seen> = Vec::new();
    let mut take = |c: Option<FramedChunk>, finishing: bool| {
        let Some(c) = c else { return };
        for f in c.frames() {
            let (parsed, utf8) = parse_message_utf8(f.raw, f.line).expect("a frame parses");
            let want = from_parse_tree(f.raw, &TableFilter::default());
            match &f.body {
                Body::Parsed(m) => {
                    assert_eq!(m, &parsed);
                    // Only a row the hook was not shown (one that spans lines, or the input's
                    // last without a newline) is left undigested.
                    let last = finishing && std::ptr::eq(f, c.frames().last().unwrap());
                    assert!(
                        want.is_none() || f.raw.contains(&b'\n') || last,
                        "{:?}",
                        String::from_utf8_lossy(f.raw)
                    );
                }
                Body::Digested(d) => {
                    let (name, prefix) = (c.side().name(d), c.side().prefix(d));
                    assert_eq!(
                        want,
                        Some((name.unwrap().to_owned(), prefix.unwrap().to_vec()))
                    );
                    assert_eq!(f.utf8, utf8);
                }
            }
            seen.push((f.line, f.raw.to_vec(), Ok(format!("{parsed:?}"))));
        }
        if let Some(e) = c.error() {
            seen.push((e.line, Vec::new(), Err(e.clone())));
        }
    };
    for chunk in chunks {
        take(framer.push(chunk.to_vec()), false);
    }
    take(framer.finish(), true);
    assert_eq!(seen, by_stream);
}

const MIXED: &[u8] = b"BEGIN 5\n\ntable public.t: INSERT: id[integer]:1 v[text]:'a\nb'\n\
message: transactional: 1 prefix: p, sz: 3 content:x\nz\n\
table public.t: UPDATE: id[integer]:1 v[text]:'it''s'\nCOMMIT 5\n";

#[test]
fn the_framer_frames_like_the_stream_in_any_chunking() {
    let whole = framer_agrees(&[MIXED]);
    assert_eq!(whole.len(), 5);
    assert!(whole.iter().all(|(_, _, m)| m.is_ok()));
    for n in 1..=MIXED.len() {
        assert_eq!(framer_agrees(&chunked(MIXED, &[n])), whole, "chunks of {n}");
    }
}

#[test]
fn the_framer_stops_at_the_first_error_with_its_line() {
    let input = b"BEGIN 5\ntable public.t: INSERT: id[integer]\nCOMMIT 5\n";
    for n in 1..=input.len() {
        let got = framer_agrees(&chunked(input, &[n]));
        assert_eq!(got.len(), 2, "chunks of {n}: {got:?}");
        assert_eq!(got[1].0, 2);
        assert!(got[1].2.is_err());
    }
}

#[test]
fn the_framer_reports_an_unterminated_last_message_at_the_end() {
    let input = b"BEGIN 5\ntable public.t: INSERT: v[text]:'open";
    let got = framer_agrees(&chunked(input, &[7]));
    assert_eq!(got.len(), 2);
    assert!(got[1].2.is_err());
}
