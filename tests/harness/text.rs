//! Hand-written test_decoding text over `public.cust (id integer, name text)`.

/// `BEGIN`, the given change lines of `public.cust`, `COMMIT`.
pub fn txn(xid: u32, changes: &[&str]) -> String {
    let mut t = format!("BEGIN {xid}\n");
    for c in changes {
        t.push_str(&format!("table public.cust: {c}\n"));
    }
    t.push_str(&format!("COMMIT {xid}\n"));
    t
}

/// An `INSERT:` change of `public.cust`, for [`txn`].
pub fn insert(id: u32, name: &str) -> String {
    format!("INSERT: id[integer]:{id} name[text]:'{name}'")
}
