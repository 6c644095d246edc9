//! The generator's tuples: each table's columns and values, written in the order and with the
//! draws of the random generator that the capture's bytes depend on (the same seed gives the
//! same capture as before the generator was split: keep the order of the draws).
use super::*;

impl<W: Write> Gen<W> {
    // -- public.users ---------------------------------------------------------------------

    pub(super) fn user_tuple(&mut self, id: u32) {
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

        user_documents(o, r);
        user_dates(o, r);
        user_created_and_ids(o, r, id, h);
    }

    // -- public.orders --------------------------------------------------------------------

    pub(super) fn order_tuple(&mut self, off: u32, user: u32) {
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
    pub(super) fn article_tuple(&mut self, id: u32, rev: u32, keep_body: bool) -> bool {
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

    pub(super) fn stock_key(&mut self, (warehouse, sku): (u8, u32)) {
        let o = &mut self.o;
        o.s("warehouse[text]:");
        o.q(WAREHOUSES[warehouse as usize]);
        o.s(" sku[text]:'");
        o.qtext(SKU_PREFIXES[sku as usize % SKU_PREFIXES.len()]);
        o.pad(u64::from(sku), 6);
        o.buf.push(b'\'');
    }

    pub(super) fn stock_qty(&mut self) {
        self.o.s(" qty[integer]:");
        if self.r.per_mille(10) {
            self.o.s("null");
        } else {
            self.o.i(self.r.range(-5, 1000));
        }
    }

    // -- sales."Order Items" --------------------------------------------------------------

    pub(super) fn item_key(&mut self, (order, line): (u32, u16)) {
        self.o.s("\"Order Id\"[bigint]:");
        self.o.u(ITEM_ORDER_BASE + u64::from(order));
        self.o.s(" line_no[integer]:");
        self.o.u(u64::from(line));
    }

    pub(super) fn item_tuple(&mut self, key: (u32, u16)) {
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
pub(super) fn interval<W: Write>(o: &mut Out<W>, years: i64, mons: i64, days: i64, time_us: i64) {
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

/// `public.users`, from `bio` through `avatar`: text, arrays, JSON and bytes.
fn user_documents<W: Write>(o: &mut Out<W>, r: &mut Rng) {
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
}

/// `public.users`, from `fav` through `seen`: an enum, a date, a time and a timestamp.
fn user_dates<W: Write>(o: &mut Out<W>, r: &mut Rng) {
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
}

/// `public.users`, from `created` on: a timestamp and a uuid stable per user (`h` is the user's
/// hash), and an interval.
fn user_created_and_ids<W: Write>(o: &mut Out<W>, r: &mut Rng, id: u32, h: u64) {
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
