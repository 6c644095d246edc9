#!/usr/bin/env python3
"""Check that a file is well-formed PostgreSQL test_decoding output (what `pg_recvlogical -f -`
prints), as a sanity check of examples/gen_capture.rs and of captures in general.

    python3 benches/check_capture.py CAPTURE [--expect-changes N]

Checks: every record is BEGIN / COMMIT / `table s.t: OP: ...`; quotes balance per record (a quoted
value may span physical lines); BEGIN/COMMIT alternate with matching, increasing xids; unquoted
values are numbers / booleans / null / NaN / ±Infinity / unchanged-toast-datum; quoted values have
the shape their type prints (dates, timestamps, uuid, bytea, valid JSON, arrays); a column keeps
its type; for tables with a known key (the generator's five, or a column `id`): no INSERT of a live
key, no UPDATE / DELETE of a missing one, DELETE and old-key print exactly the key columns, and
`unchanged-toast-datum` only where the row's last value was big enough to be TOASTed.
Prints the mix and exits 1 on the first few errors.
"""
import json
import re
import sys
from collections import Counter

IDENT = rb'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
BEGIN = re.compile(rb"BEGIN(?: (\d+))?\n")
COMMIT = re.compile(rb"COMMIT(?: (\d+))?(?: \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?[+-]\d\d\))?\n")
TABLE = re.compile(rb"table (" + IDENT + rb"\." + IDENT + rb"): (INSERT|UPDATE|DELETE|TRUNCATE): ")
TRUNC_TAIL = re.compile(rb"(?:\(no-flags\)|restart_seqs|cascade|restart_seqs cascade)\n")
COL = re.compile(rb"(" + IDENT + rb")\[([^\]\n]+?(?:\[\])?)\]:")
QUOTED = re.compile(rb"'(?:[^']++|'')*+'")
BARE = re.compile(rb"[^ \n']+")
BARE_OK = re.compile(
    rb"null|true|false|NaN|-?Infinity|unchanged-toast-datum|-?\d+(?:\.\d+)?(?:e[+-]\d+)?"
)

D = r"\d{4}-\d\d-\d\d"
T = r"\d\d:\d\d:\d\d(?:\.\d{1,6})?"
SHAPES = {
    "date": re.compile(D + "$"),
    "time without time zone": re.compile(T + "$"),
    "timestamp without time zone": re.compile(D + " " + T + "$"),
    "timestamp with time zone": re.compile(D + " " + T + r"[+-]\d\d(?::\d\d)?$"),
    "uuid": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "bytea": re.compile(r"\\x(?:[0-9a-f]{2})*$"),
    "interval": re.compile(
        r"(?:[+-]?\d+ (?:years?|mons?|days?)(?: |$))*(?:[+-]?\d+:\d\d:\d\d(?:\.\d{1,6})?)?$"
    ),
}
UNQUOTED_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean"}

# Key columns of the tables examples/gen_capture.rs writes; other tables: `id` when present.
KEYS = {
    "public.users": ("id",),
    "public.orders": ("id",),
    "public.articles": ("id",),
    "inventory.stock": ("warehouse", "sku"),
    'sales."Order Items"': ('"Order Id"', "line_no"),
}
TOAST_MIN = 2000  # a value shorter than this cannot have been TOASTed out of line


class Bad(Exception):
    pass


def line_of(data, pos):
    return data.count(b"\n", 0, pos) + 1


def parse_cols(data, pos, stop_at_new_tuple=False):
    """Parse `name[type]:value` pairs from pos; returns (cols, pos after them, ended_by)."""
    cols = []
    while True:
        m = COL.match(data, pos)
        if not m:
            raise Bad("expected name[type]:value")
        name, typ = m.group(1).decode(), m.group(2).decode()
        pos = m.end()
        if data.startswith(b"'", pos):
            v = QUOTED.match(data, pos)
            if not v:
                raise Bad(f"unterminated quoted value of {name}")
            raw, quoted = v.group(0)[1:-1], True
        else:
            v = BARE.match(data, pos)
            if not v or not BARE_OK.fullmatch(v.group(0)):
                raise Bad(f"bad unquoted value of {name}: {data[pos:pos + 40]!r}")
            raw, quoted = v.group(0), False
        pos = v.end()
        cols.append((name, typ, raw, quoted))
        if data.startswith(b"\n", pos):
            return cols, pos + 1, "eol"
        if stop_at_new_tuple and data.startswith(b" new-tuple: ", pos):
            return cols, pos + len(b" new-tuple: "), "new-tuple"
        if not data.startswith(b" ", pos):
            raise Bad(f"expected space or end of line after {name}")
        pos += 1


def check_value(table, name, typ, raw, quoted):
    if not quoted:
        if typ not in UNQUOTED_TYPES and raw not in (b"null", b"unchanged-toast-datum"):
            raise Bad(f"{table}.{name} [{typ}] unquoted {raw[:40]!r}")
        return
    if typ in UNQUOTED_TYPES:
        raise Bad(f"{table}.{name} [{typ}] quoted")
    text = raw.replace(b"''", b"'").decode("utf-8")  # raises on invalid UTF-8
    if "'" in raw.replace(b"''", b"").decode("utf-8"):
        raise Bad(f"{table}.{name}: lone quote")
    shape = SHAPES.get(typ)
    if shape and not shape.match(text):
        raise Bad(f"{table}.{name} [{typ}] bad shape {text[:60]!r}")
    if typ in ("json", "jsonb"):
        try:
            json.loads(text)
        except ValueError as e:
            raise Bad(f"{table}.{name} [{typ}] invalid JSON {text[:60]!r}: {e}") from None
    if typ.endswith("[]") and not (text.startswith("{") and text.endswith("}")):
        raise Bad(f"{table}.{name} [{typ}] not an array literal {text[:60]!r}")


def main():
    args = sys.argv[1:]
    expect = None
    if "--expect-changes" in args:
        i = args.index("--expect-changes")
        expect = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], "rb") as f:
        data = f.read()

    types = {}  # (table, column) -> type
    live = {}  # table -> {key tuple: {column: value length}}
    mix = Counter()
    toast_unchanged = 0
    multiline = 0
    errors = 0
    in_txn = None  # xid (or True without xids) while inside BEGIN ... COMMIT
    last_xid = -1
    pos, n = 0, len(data)
    while pos < n:
        start = pos
        try:
            m = BEGIN.match(data, pos)
            if m:
                if in_txn is not None:
                    raise Bad("BEGIN inside a transaction")
                xid = int(m.group(1)) if m.group(1) else None
                if xid is not None:
                    if xid <= last_xid:
                        raise Bad(f"xid {xid} not increasing (previous {last_xid})")
                    last_xid = xid
                in_txn = xid if xid is not None else True
                mix["txn"] += 1
                pos = m.end()
                continue
            m = COMMIT.match(data, pos)
            if m:
                xid = int(m.group(1)) if m.group(1) else None
                if in_txn is None:
                    raise Bad("COMMIT outside a transaction")
                if xid is not None and xid != in_txn:
                    raise Bad(f"COMMIT {xid} closes BEGIN {in_txn}")
                in_txn = None
                pos = m.end()
                continue
            m = TABLE.match(data, pos)
            if not m:
                raise Bad(f"not a test_decoding message: {data[pos:pos + 60]!r}")
            if in_txn is None:
                raise Bad("change outside a transaction")
            table, op = m.group(1).decode(), m.group(2).decode()
            pos = m.end()
            mix[(table, op)] += 1
            if op == "TRUNCATE":
                t = TRUNC_TAIL.match(data, pos)
                if not t:
                    raise Bad("bad TRUNCATE flags")
                pos = t.end()
                if table in live:
                    live[table].clear()
                continue
            old = None
            if op == "UPDATE" and data.startswith(b"old-key: ", pos):
                old, pos, how = parse_cols(data, pos + len(b"old-key: "), True)
                if how != "new-tuple":
                    raise Bad("old-key: without new-tuple:")
                mix[(table, "UPDATE key change")] += 1
            cols, pos = parse_cols(data, pos)[:2]
            if b"\n" in data[start : pos - 1]:
                multiline += 1
            for name, typ, raw, quoted in cols + (old or []):
                prev = types.setdefault((table, name), typ)
                if prev != typ:
                    raise Bad(f"{table}.{name} changed type {prev} -> {typ}")
                check_value(table, name, typ, raw, quoted)
            names = [c[0] for c in cols]
            key_cols = KEYS.get(table) or (("id",) if "id" in names else None)
            if key_cols is None:
                continue
            rows = live.setdefault(table, {})
            vals = {c[0]: c[2] for c in cols}

            def key_of(cs, what):
                got = tuple(c[0] for c in cs)
                if op != "INSERT" and what != "new tuple" and got != key_cols:
                    raise Bad(f"{table} {op} {what} prints {got}, key is {key_cols}")
                d = {c[0]: c[2] for c in cs}
                if any(k not in d for k in key_cols):
                    raise Bad(f"{table} {op}: key column missing")
                return tuple(d[k] for k in key_cols)

            if op == "INSERT":
                k = key_of(cols, "new tuple")
                if k in rows:
                    raise Bad(f"{table} INSERT of live key {k}")
                rows[k] = {c: len(v) for c, v in vals.items()}
            elif op == "DELETE":
                k = key_of(cols, "key")
                if rows.pop(k, None) is None:
                    raise Bad(f"{table} DELETE of missing key {k}")
            else:
                k_old = key_of(old, "old key") if old else key_of(cols, "new tuple")
                k_new = key_of(cols, "new tuple")
                before = rows.pop(k_old, None)
                if before is None:
                    raise Bad(f"{table} UPDATE of missing key {k_old}")
                if k_new in rows:
                    raise Bad(f"{table} UPDATE onto live key {k_new}")
                after = {}
                for c, v in vals.items():
                    if v == b"unchanged-toast-datum":
                        toast_unchanged += 1
                        if before.get(c, 0) < TOAST_MIN:
                            raise Bad(f"{table}.{c} unchanged-toast-datum but last value was short")
                        after[c] = before[c]
                    else:
                        after[c] = len(v)
                rows[k_new] = after
        except Bad as e:
            errors += 1
            print(f"{args[0]}:{line_of(data, start)}: {e}", file=sys.stderr)
            if errors >= 10:
                break
            nl = data.find(b"\n", pos if pos > start else start)
            pos = n if nl < 0 else nl + 1
    if in_txn is not None and not errors:
        print(f"{args[0]}: ends inside a transaction", file=sys.stderr)
        errors += 1

    changes = sum(v for k, v in mix.items() if isinstance(k, tuple) and not k[1].endswith("change"))
    ops = Counter()
    for k, v in mix.items():
        if isinstance(k, tuple) and not k[1].endswith("change"):
            ops[k[1]] += v
    print(f"{changes} changes in {mix['txn']} transactions, {multiline} records spanning lines, "
          f"{toast_unchanged} unchanged-toast-datum values, "
          f"{sum(v for k, v in mix.items() if isinstance(k, tuple) and k[1].endswith('change'))} "
          f"key-changing updates")
    for op in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        print(f"  {op:<9}{ops[op]:>10}  {100 * ops[op] / max(changes, 1):5.1f}%")
    if expect is not None and changes != expect:
        print(f"expected {expect} changes, found {changes}", file=sys.stderr)
        errors += 1
    print("OK" if not errors else f"FAILED ({errors} errors)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
