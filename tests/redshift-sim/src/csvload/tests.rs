//! Unit tests of the CSV conversion (`csvload.rs`).
use super::*;
use crate::rewrite::{plan_query, Plan};

fn spec(opts: &str) -> CopySpec {
    match plan_query(
        &format!("copy t from 's3://b/k' iam_role default csv {opts}"),
        false,
    )
    .remove(0)
    .plan
    {
        Plan::Copy(s) => *s,
        other => panic!("{other:?}"),
    }
}

fn col(name: &str, kind: ColKind) -> Column {
    Column {
        name: name.into(),
        type_name: "t".into(),
        kind,
    }
}

const VC5: ColKind = ColKind::Char {
    max_bytes: Some(5),
    fixed: false,
};

fn run(opts: &str, cols: &[Column], data: &[u8]) -> Result<(String, Vec<u64>), LoadError> {
    let conv = convert(opts, cols, data, &[], 0)?;
    let lines = conv.sent.iter().map(|s| s.line).collect();
    Ok((String::from_utf8(conv.out).unwrap(), lines))
}

fn convert(
    opts: &str,
    cols: &[Column],
    data: &[u8],
    leave_out: &[u64],
    allowed: usize,
) -> Result<Converted, LoadError> {
    let spec = spec(opts);
    let conv = Converter { spec: &spec, cols };
    let mut out = Converted::default();
    conv.convert(data, leave_out, allowed, &mut out)?;
    Ok(out)
}

fn err(opts: &str, cols: &[Column], data: &[u8]) -> RecordError {
    match run(opts, cols, data) {
        Err(LoadError::Record(e)) => *e,
        Ok(o) => panic!("loaded: {o:?}"),
    }
}

#[test]
fn quoting_nulls_and_empties() {
    let cols = [col("a", VC5), col("n", ColKind::Other)];
    let (out, lines) = run(
        "",
        &cols,
        b"\"x\"\"y\",1\n,\n\\N,\\N\n\"\\N\",\"\"\n\"a\nb\",2\r\nlast,3",
    )
    .unwrap();
    assert_eq!(
        out,
        "\"x\"\"y\",\"1\"\n\"\",\n,\n\"\\N\",\n\"a\nb\",\"2\"\n\"last\",\"3\"\n"
    );
    assert_eq!(lines, vec![1, 2, 3, 4, 5, 7]);
}

#[test]
fn emptyasnull_and_blanksasnull() {
    let cols = [col("a", VC5), col("b", VC5)];
    let (out, _) = run("emptyasnull blanksasnull", &cols, b",\"  \"\n").unwrap();
    assert_eq!(out, ",\n");
}

#[test]
fn varchar_counts_bytes() {
    let cols = [col("a", VC5)];
    let e = err("", &cols, b"ok\n\"\xc3\xa9\xc3\xa9\xc3\xa9\"\n");
    assert_eq!(e.reason, "String length exceeds DDL length");
    assert_eq!((e.line, e.code, e.colname.as_str()), (2, 1204, "a"));
    let (out, _) = run("truncatecolumns", &cols, "ééé\n".as_bytes()).unwrap();
    assert_eq!(out, "\"éé\"\n");
    let (out, _) = run("truncatecolumns", &cols, b"abcdefg\n").unwrap();
    assert_eq!(out, "\"abcde\"\n");
}

#[test]
fn char_is_single_byte() {
    let cols = [col(
        "c",
        ColKind::Char {
            max_bytes: Some(4),
            fixed: true,
        },
    )];
    assert!(err("", &cols, "é\n".as_bytes())
        .reason
        .contains("Multibyte"));
}

#[test]
fn invalid_utf8() {
    let cols = [col(
        "a",
        ColKind::Char {
            max_bytes: None,
            fixed: false,
        },
    )];
    assert_eq!(err("", &cols, b"a\xffb\n").code, 1220);
    let (out, _) = run("acceptinvchars as '^'", &cols, b"a\xffb\n").unwrap();
    assert_eq!(out, "\"a^b\"\n");
}

#[test]
fn field_count_errors() {
    let cols = [col("a", VC5), col("b", VC5)];
    assert_eq!(err("", &cols, b"1\n").reason, "Delimiter not found");
    assert_eq!(err("", &cols, b"1,2,3\n").reason, "Extra column(s) found");
    assert_eq!(err("", &cols, b"\"1\"x,2\n").code, 1216);
    assert_eq!(err("", &cols, b"\"1,2\n").code, 1214);
}

#[test]
fn header_delimiter_custom_null() {
    let cols = [col("a", ColKind::Other), col("b", VC5)];
    let (out, lines) = run(
        "ignoreheader 1 delimiter '|' null as 'NULL'",
        &cols,
        b"a|b\n1|NULL\n",
    )
    .unwrap();
    assert_eq!(out, "\"1\",\n");
    assert_eq!(lines, vec![2]);
}

#[test]
fn numeric_scale_and_bytea() {
    let cols = [
        col("n", ColKind::Numeric { scale: Some(2) }),
        col("b", ColKind::Bytea),
    ];
    let (out, _) = run("", &cols, b"-1.239,0aff\n5,\n").unwrap();
    assert_eq!(out, "\"-1.23\",\"\\x0aff\"\n\"5\",\n");
    let (out, _) = run("roundec", &cols, b"1.239,00\n").unwrap();
    assert_eq!(out, "\"1.239\",\"\\x00\"\n");
    assert_eq!(scale_prefix(b"7.9", 0), 1);
    assert_eq!(scale_prefix(b"1e5", 0), 3);
}

/// A field's bytes and whether it was quoted.
type RefField = (Vec<u8>, bool);

/// The record reader as it was before it scanned with memchr: one byte at a time, a vector
/// per field. The reference for `record`.
fn reference_record(
    spec: &CopySpec,
    data: &[u8],
    pos: &mut usize,
    line: &mut u64,
) -> Result<Vec<RefField>, (String, i32)> {
    let (delim, quote) = (spec.delimiter, spec.quote);
    let (mut fields, mut cur, mut quoted, mut at_start) = (vec![], vec![], false, true);
    loop {
        let Some(&c) = data.get(*pos) else {
            fields.push((cur, quoted));
            return Ok(fields);
        };
        if at_start && c == quote {
            quoted = true;
            *pos += 1;
            loop {
                let Some(&b) = data.get(*pos) else {
                    return Err(("Missing end quote for a quoted field".into(), 1214));
                };
                *pos += 1;
                if b == quote {
                    if data.get(*pos) == Some(&quote) {
                        cur.push(quote);
                        *pos += 1;
                    } else {
                        break;
                    }
                } else {
                    *line += u64::from(b == b'\n');
                    cur.push(b);
                }
            }
            match data.get(*pos) {
                None | Some(b'\n') | Some(b'\r') => {}
                Some(&d) if d == delim => {}
                Some(_) => {
                    skip_line(data, pos, line);
                    return Err(("Invalid quote formatting for CSV".into(), 1216));
                }
            }
            at_start = false;
            continue;
        }
        at_start = false;
        if c == delim {
            fields.push((std::mem::take(&mut cur), quoted));
            quoted = false;
            at_start = true;
            *pos += 1;
        } else if c == b'\n' || (c == b'\r' && data.get(*pos + 1) == Some(&b'\n')) {
            *pos += if c == b'\r' { 2 } else { 1 };
            *line += 1;
            fields.push((cur, quoted));
            return Ok(fields);
        } else {
            cur.push(c);
            *pos += 1;
        }
    }
}

/// Pseudo-random files made of CSV's special bytes, quotes doubled or not, CR and CRLF,
/// multi-byte and (unless `utf8`) invalid UTF-8.
fn random_files(utf8: bool) -> impl Iterator<Item = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"a",
        b"7",
        b",",
        b"\"",
        b"\"\"",
        b"\n",
        b"\r",
        b"\r\n",
        b" ",
        b"|",
        b"\\N",
        b"\xc3\xa9",
        b"\xff",
        b"\xc3",
    ];
    let pieces = if utf8 { &PIECES[..12] } else { PIECES };
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    (0..4000).map(move |_| {
        let len = next(40);
        (0..len)
            .flat_map(|_| pieces[next(pieces.len())].iter().copied())
            .collect()
    })
}

#[test]
fn records_read_as_the_byte_at_a_time_reader_reads_them() {
    for opts in ["", "delimiter '|'"] {
        let spec = spec(opts);
        let conv = Converter {
            spec: &spec,
            cols: &[],
        };
        let mut record = Record::default();
        for data in random_files(false) {
            let (mut pos, mut line, mut ref_pos, mut ref_line) = (0, 1, 0, 1);
            while pos < data.len() {
                let got = conv
                    .record(&data, &mut pos, &mut line, &mut record)
                    .map(|()| record.iter().map(|(b, q)| (b.to_vec(), q)).collect());
                let want = reference_record(&spec, &data, &mut ref_pos, &mut ref_line);
                assert_eq!((got, pos, line), (want, ref_pos, ref_line), "{data:?}");
            }
        }
    }
}

#[test]
fn fields_of_a_valid_utf8_file_need_no_check_of_their_own() {
    let spec = spec("");
    let conv = Converter {
        spec: &spec,
        cols: &[],
    };
    let mut record = Record::default();
    for data in random_files(true) {
        assert!(std::str::from_utf8(&data).is_ok());
        let (mut pos, mut line) = (0, 1);
        while pos < data.len() {
            if conv.record(&data, &mut pos, &mut line, &mut record).is_ok() {
                for (bytes, _) in record.iter() {
                    assert!(std::str::from_utf8(bytes).is_ok(), "{data:?}");
                }
            }
        }
    }
}

#[test]
fn truncated_files_never_panic() {
    let cols = [
        col("a", VC5),
        col("n", ColKind::Numeric { scale: Some(1) }),
        col("b", ColKind::Bytea),
    ];
    let data = b"\"x\"\"\",-1.25,ff\r\n\"a\nb\",\\N,\n,,\n\"\xc3\xa9\xff\",+.5,00\n";
    for i in 0..data.len() {
        for opts in [
            "",
            "truncatecolumns acceptinvchars emptyasnull ignoreheader 1",
        ] {
            let _ = run(opts, &cols, &data[..i]);
            let _ = run(opts, &cols, &data[i..]);
        }
    }
}

#[test]
fn rejected_records_are_skipped_within_the_budget() {
    let cols = [col("a", VC5), col("b", VC5)];
    let data = b"h,h\n1,ok\n2,toolong\n\"3\nx\",ok\n4\n\"5\"x,y\r\n6,ok\n";
    let conv = convert("ignoreheader 1", &cols, data, &[], 3).unwrap();
    assert_eq!(
        String::from_utf8(conv.out).unwrap(),
        "\"1\",\"ok\"\n\"3\nx\",\"ok\"\n\"6\",\"ok\"\n"
    );
    let sent: Vec<(u64, usize, u64)> = conv
        .sent
        .iter()
        .map(|s| (s.line, s.offset, s.backend_lines))
        .collect();
    assert_eq!(sent, vec![(2, 4, 1), (4, 19, 2), (8, 38, 1)]);
    let rejected: Vec<(u64, &str, i32, &str, &str)> = conv
        .rejected
        .iter()
        .map(|e| {
            let (raw, field) = (e.raw_line.as_str(), e.raw_field.as_str());
            (e.line, e.colname.as_str(), e.code, raw, field)
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (3, "b", 1204, "2,toolong", "toolong"),
            (6, "b", 1214, "4", ""),
            (7, "", 1216, "\"5\"x,y", ""),
        ]
    );
    // One fewer allowed: the third rejected record is the error, with the others kept.
    let spec = spec("ignoreheader 1");
    let c = Converter {
        spec: &spec,
        cols: &cols,
    };
    let mut conv = Converted::default();
    let Err(LoadError::Record(e)) = c.convert(data, &[], 2, &mut conv) else {
        panic!("loaded");
    };
    assert_eq!((e.line, e.code, e.raw_line.as_str()), (7, 1216, "\"5\"x,y"));
    assert_eq!(conv.rejected.len(), 2);
    let (raw, fields) = c.raw_record(data, 19);
    assert_eq!(
        (raw.as_str(), fields),
        ("\"3\nx\",ok", vec!["3\nx".into(), "ok".into()])
    );
}

#[test]
fn left_out_lines_are_not_sent() {
    let cols = [col("a", VC5)];
    let conv = convert("", &cols, b"a\nb\nc\n", &[1, 3], 0).unwrap();
    assert_eq!(String::from_utf8(conv.out).unwrap(), "\"b\"\n");
    assert_eq!(conv.sent.len(), 1);
    assert!(conv.rejected.is_empty());
}

#[test]
fn kinds_from_catalog() {
    assert_eq!(ColKind::from_catalog("varchar", 14, "S"), VC_10);
    assert_eq!(
        ColKind::from_catalog("numeric", (12 << 16 | 4) + 4, "N"),
        ColKind::Numeric { scale: Some(4) }
    );
    assert_eq!(ColKind::from_catalog("int4", -1, "N"), ColKind::Other);
    assert_eq!(
        ColKind::from_catalog("text", -1, "S"),
        ColKind::Char {
            max_bytes: None,
            fixed: false
        }
    );
}

const VC_10: ColKind = ColKind::Char {
    max_bytes: Some(10),
    fixed: false,
};
