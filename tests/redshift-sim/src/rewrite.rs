//! Turns the SQL text a client sends into what the sim does with it: pass (possibly rewritten)
//! SQL to the backend, run a Redshift `COPY ... FROM 's3://...'` itself, or handle `TRUNCATE`'s
//! implicit commit. Statements Redshift refuses become a `DO` block that raises the error in the
//! backend, so the backend's own transaction state (aborted block, implicit transaction) stays
//! exactly what it would be after a real error.

use crate::copycmd::{self, CopySpec};
use crate::ddl;
use crate::lexer::{self, dollar_quote, quote_literal, Kind, Token};
use thiserror::Error;

/// A statement Redshift would refuse, with the SQLSTATE the backend raises it with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Reject {
    /// 0A000 feature_not_supported
    #[error("{0}")]
    Unsupported(String),
    /// 42601 syntax_error
    #[error("{0}")]
    Syntax(String),
    /// 25001 active_sql_transaction
    #[error("{0}")]
    InTransaction(String),
    /// 22023 invalid_parameter_value
    #[error("{0}")]
    InvalidValue(String),
}

impl Reject {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Reject::Unsupported(_) => "0A000",
            Reject::Syntax(_) => "42601",
            Reject::InTransaction(_) => "25001",
            Reject::InvalidValue(_) => "22023",
        }
    }

    /// A statement that makes the backend raise this error.
    pub fn to_sql(&self) -> String {
        raise_sql(self.sqlstate(), &self.to_string())
    }
}

pub fn raise_sql(sqlstate: &str, message: &str) -> String {
    let body = format!(
        "BEGIN RAISE EXCEPTION USING ERRCODE = {}, MESSAGE = {}; END",
        quote_literal(sqlstate),
        quote_literal(message)
    );
    format!("DO {}", dollar_quote(&body))
}

/// What to do with one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send this SQL to the backend (it may be a rewrite, or a `DO` block raising a rejection).
    Pass(String),
    /// A Redshift COPY from S3, run by the sim.
    Copy(Box<CopySpec>),
    /// A TRUNCATE: inside a transaction block the sim commits first, as Redshift does.
    Truncate(String),
}

/// One statement of a query string: its original text and the plan for it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub original: String,
    pub plan: Plan,
}

/// Plan every statement of a query string. `in_block` is whether the session is inside a
/// transaction block when the string starts; BEGIN/COMMIT inside the string update it.
/// A string that does not tokenize is passed through untouched (the backend reports the error).
pub fn plan_query(sql: &str, mut in_block: bool) -> Vec<Planned> {
    let tokens = match lexer::tokenize(sql) {
        Ok(t) => t,
        Err(_) => {
            return vec![Planned {
                original: sql.to_string(),
                plan: Plan::Pass(sql.to_string()),
            }]
        }
    };
    let mut out = Vec::new();
    for stmt in lexer::split_statements(tokens) {
        let original = lexer::render(&stmt).trim().to_string();
        let st = Stmt::new(fold_identifiers(stmt));
        in_block = track_block(&st, in_block);
        let plan = plan_statement(&st, in_block);
        out.push(Planned { original, plan });
    }
    out
}

/// Rejoin planned statements that are all `Pass` into one query string.
pub fn join_pass(planned: &[Planned]) -> Option<String> {
    let mut parts = Vec::new();
    for p in planned {
        match &p.plan {
            Plan::Pass(s) => parts.push(s.as_str()),
            _ => return None,
        }
    }
    Some(parts.join(";\n"))
}

/// Replace every call `pg_last_copy_id()` (optionally `pg_catalog.`-qualified) by `id` as an
/// integer literal: the query id of the session's last COPY, -1 when it ran none (Redshift's
/// leader-node function, which the backend lacks). Strings, quoted identifiers and comments are
/// left alone; text that does not tokenize is returned unchanged.
pub fn substitute_last_copy_id(sql: &str, id: i64) -> String {
    substitute_call(sql, "pg_last_copy_id", id)
}

/// Replace every call `pg_last_copy_count()` by `rows`: the rows the session's last COPY loaded
/// (0 before any, or after one that failed), as [`substitute_last_copy_id`] does.
pub fn substitute_last_copy_count(sql: &str, rows: i64) -> String {
    substitute_call(sql, "pg_last_copy_count", rows)
}

/// Replace every call `<name>()` (optionally `pg_catalog.`-qualified) by `value`.
fn substitute_call(sql: &str, name: &str, value: i64) -> String {
    if !sql
        .as_bytes()
        .windows(name.len())
        .any(|w| w.eq_ignore_ascii_case(name.as_bytes()))
    {
        return sql.to_string();
    }
    let Ok(toks) = lexer::tokenize(sql) else {
        return sql.to_string();
    };
    let st = Stmt::new(toks);
    let literal = if value < 0 {
        format!("({value})")
    } else {
        value.to_string()
    };
    let mut edits = Vec::new();
    for k in 0..st.len() {
        if !(st.kw(k, name) && st.punct(k + 1, "(") && st.punct(k + 2, ")")) {
            continue;
        }
        // A call qualified by another schema is someone else's function.
        let mut first = k;
        if k >= 2 && st.punct(k - 1, ".") {
            if !st.kw(k - 2, "pg_catalog") {
                continue;
            }
            first = k - 2;
        }
        edits.push(Edit {
            from: st.at(first),
            to: st.at(k + 2) + 1,
            text: literal.clone(),
        });
    }
    if edits.is_empty() {
        return sql.to_string();
    }
    // Stmt::apply trims; keep the text around the edits byte for byte instead.
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    for e in edits {
        out.push_str(&lexer::render(st.toks.get(i..e.from).unwrap_or(&[])));
        out.push_str(&e.text);
        i = e.to;
    }
    out.push_str(&lexer::render(st.toks.get(i..).unwrap_or(&[])));
    out
}

fn track_block(st: &Stmt, in_block: bool) -> bool {
    if st.kw(0, "begin") || st.kw(0, "start") {
        true
    } else if st.kw(0, "commit") || st.kw(0, "end") || st.kw(0, "abort") {
        false
    } else if st.kw(0, "rollback") {
        // ROLLBACK TO [SAVEPOINT] x stays in the block.
        st.kw(1, "to") && in_block
    } else {
        in_block
    }
}

/// Redshift folds identifiers to lower case even when they are quoted.
fn fold_identifiers(mut toks: Vec<Token>) -> Vec<Token> {
    for t in &mut toks {
        if t.kind == Kind::QuotedIdent && !t.text.starts_with(['U', 'u']) {
            t.text = t.text.to_lowercase();
        }
    }
    toks
}

fn plan_statement(st: &Stmt, in_block: bool) -> Plan {
    let result: Result<Plan, Reject> = if st.kw(0, "copy") {
        copycmd::parse(st).map(|spec| Plan::Copy(Box::new(spec)))
    } else if st.kw(0, "truncate") {
        Ok(Plan::Truncate(st.render()))
    } else if st.kw(0, "create") {
        plan_create(st)
    } else if st.kw(0, "alter") && st.kw(1, "table") {
        ddl::alter_table(st, in_block).map(Plan::Pass)
    } else if st.kw(0, "insert") || st.kw(0, "with") {
        check_on_conflict(st).map(|()| Plan::Pass(st.render()))
    } else if st.kw(0, "merge") {
        check_merge(st).map(|()| Plan::Pass(st.render()))
    } else {
        Ok(Plan::Pass(st.render()))
    };
    result.unwrap_or_else(|r| Plan::Pass(r.to_sql()))
}

fn plan_create(st: &Stmt) -> Result<Plan, Reject> {
    let mut k = 1;
    if st.kw(k, "or") && st.kw(k + 1, "replace") {
        k += 2;
    }
    if st.kw(k, "unique") {
        k += 1;
    }
    if st.kw(k, "index") {
        return Err(Reject::Unsupported("CREATE INDEX is not supported".into()));
    }
    if st.kw(k, "sequence") {
        return Err(Reject::Unsupported(
            "CREATE SEQUENCE is not supported".into(),
        ));
    }
    for _ in 0..2 {
        if ["local", "global", "temp", "temporary", "unlogged"]
            .iter()
            .any(|w| st.kw(k, w))
        {
            k += 1;
        }
    }
    if st.kw(k, "table") {
        return ddl::create_table(st, k + 1).map(Plan::Pass);
    }
    Ok(Plan::Pass(st.render()))
}

fn check_on_conflict(st: &Stmt) -> Result<(), Reject> {
    let mut depth = 0i32;
    for k in 0..st.len() {
        let t = st.tok(k);
        if t.is_some_and(|t| t.is_punct("(")) {
            depth += 1;
        } else if t.is_some_and(|t| t.is_punct(")")) {
            depth -= 1;
        } else if depth == 0 && st.kw(k, "on") && st.kw(k + 1, "conflict") {
            return Err(Reject::Syntax("syntax error at or near \"ON\"".into()));
        }
    }
    Ok(())
}

const MERGE_RULE: &str =
    "Redshift MERGE takes a table as source and exactly one WHEN MATCHED THEN \
     UPDATE or DELETE followed by one WHEN NOT MATCHED THEN INSERT, without AND conditions";

/// Redshift's MERGE: `MERGE INTO t USING src ON ... WHEN MATCHED THEN UPDATE|DELETE
/// WHEN NOT MATCHED THEN INSERT ...` and nothing more elaborate.
fn check_merge(st: &Stmt) -> Result<(), Reject> {
    let unsupported = |what: &str| Reject::Unsupported(format!("{what}: {MERGE_RULE}"));
    let using = (0..st.len())
        .find(|&k| st.kw(k, "using"))
        .ok_or_else(|| Reject::Syntax("syntax error: MERGE without USING".into()))?;
    if st.tok(using + 1).is_some_and(|t| t.is_punct("(")) {
        return Err(unsupported("MERGE source must be a table, not a subquery"));
    }
    // WHEN clauses at parenthesis depth 0.
    let mut clauses = Vec::new();
    let mut depth = 0i32;
    for k in using..st.len() {
        match st.tok(k) {
            Some(t) if t.is_punct("(") => depth += 1,
            Some(t) if t.is_punct(")") => depth -= 1,
            _ if depth == 0 && st.kw(k, "when") => clauses.push(k),
            _ if depth == 0 && st.kw(k, "remove") && st.kw(k + 1, "duplicates") => {
                return Err(unsupported("MERGE ... REMOVE DUPLICATES is not emulated"));
            }
            _ => {}
        }
    }
    if clauses.len() != 2 {
        return Err(unsupported("unsupported MERGE form"));
    }
    let (m, n) = (clauses[0], clauses[1]);
    let matched_ok = st.kw(m + 1, "matched")
        && st.kw(m + 2, "then")
        && (st.kw(m + 3, "update") || st.kw(m + 3, "delete"));
    let not_matched_ok = st.kw(n + 1, "not")
        && st.kw(n + 2, "matched")
        && st.kw(n + 3, "then")
        && st.kw(n + 4, "insert");
    if matched_ok && not_matched_ok {
        Ok(())
    } else {
        Err(unsupported("unsupported MERGE form"))
    }
}

/// A statement's tokens with an index of the significant (non-trivia) ones.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub toks: Vec<Token>,
    pub sig: Vec<usize>,
}

/// Replace tokens `from..to` (token indices) with `text`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub from: usize,
    pub to: usize,
    pub text: String,
}

impl Stmt {
    pub fn new(toks: Vec<Token>) -> Self {
        let sig = toks
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_trivia())
            .map(|(i, _)| i)
            .collect();
        Stmt { toks, sig }
    }

    /// Number of significant tokens.
    pub fn len(&self) -> usize {
        self.sig.len()
    }

    /// The k-th significant token.
    pub fn tok(&self, k: usize) -> Option<&Token> {
        self.sig.get(k).and_then(|&i| self.toks.get(i))
    }

    pub fn kw(&self, k: usize, kw: &str) -> bool {
        self.tok(k).is_some_and(|t| t.is_kw(kw))
    }

    pub fn punct(&self, k: usize, p: &str) -> bool {
        self.tok(k).is_some_and(|t| t.is_punct(p))
    }

    /// Token index of the k-th significant token (or the end).
    pub fn at(&self, k: usize) -> usize {
        self.sig.get(k).copied().unwrap_or(self.toks.len())
    }

    /// Given the significant index of an opening `(` or `[`, the index of its match.
    pub fn matching(&self, k: usize) -> Option<usize> {
        let mut depth = 0i32;
        for j in k..self.len() {
            let t = self.tok(j)?;
            if t.is_punct("(") || t.is_punct("[") {
                depth += 1;
            } else if t.is_punct(")") || t.is_punct("]") {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
        }
        None
    }

    /// Text of significant tokens `from..to` with the trivia between them.
    pub fn text(&self, from: usize, to: usize) -> String {
        if from >= to {
            return String::new();
        }
        let a = self.at(from);
        let b = self.at(to - 1) + 1;
        lexer::render(self.toks.get(a..b).unwrap_or(&[]))
    }

    /// A dotted name starting at significant index k: (folded name text, next index).
    pub fn name(&self, k: usize) -> Option<(String, usize)> {
        let mut j = k;
        let mut parts = Vec::new();
        loop {
            let t = self.tok(j)?;
            if !matches!(t.kind, Kind::Word | Kind::QuotedIdent) {
                return None;
            }
            parts.push(t.text.clone());
            j += 1;
            if self.punct(j, ".") {
                j += 1;
            } else {
                break;
            }
        }
        Some((parts.join("."), j))
    }

    /// The dotted name at significant index k for messages: identifiers folded and unquoted.
    pub fn display_name(&self, k: usize) -> String {
        let Some((_, end)) = self.name(k) else {
            return String::new();
        };
        (k..end)
            .filter_map(|j| self.tok(j).and_then(|t| t.ident()))
            .collect::<Vec<_>>()
            .join(".")
    }

    pub fn render(&self) -> String {
        lexer::render(&self.toks).trim().to_string()
    }

    pub fn apply(&self, mut edits: Vec<Edit>) -> String {
        edits.sort_by_key(|e| e.from);
        let mut out = String::new();
        let mut i = 0;
        for e in edits {
            if e.from < i {
                continue; // overlapping edits: keep the first
            }
            out.push_str(&lexer::render(self.toks.get(i..e.from).unwrap_or(&[])));
            out.push_str(&e.text);
            i = e.to;
        }
        out.push_str(&lexer::render(self.toks.get(i..).unwrap_or(&[])));
        out.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Plan {
        let mut p = plan_query(sql, false);
        assert_eq!(p.len(), 1, "{sql}");
        p.remove(0).plan
    }

    fn one_in_block(sql: &str) -> Plan {
        plan_query(sql, true).remove(0).plan
    }

    /// The rejection's message, or panic.
    fn rejected(plan: Plan) -> String {
        match plan {
            Plan::Pass(s) if s.contains("BEGIN RAISE EXCEPTION USING ERRCODE") => s,
            other => panic!("not rejected: {other:?}"),
        }
    }

    fn passed(plan: Plan) -> String {
        match plan {
            Plan::Pass(s) if !s.contains("BEGIN RAISE EXCEPTION USING ERRCODE") => s,
            other => panic!("not passed: {other:?}"),
        }
    }

    #[test]
    fn plain_statements_pass_unchanged() {
        assert_eq!(passed(one("select 1")), "select 1");
        assert_eq!(
            passed(one("delete from t using s where t.id = s.id")),
            "delete from t using s where t.id = s.id"
        );
    }

    #[test]
    fn quoted_identifiers_are_folded() {
        assert_eq!(
            passed(one(
                r#"SELECT "Id" FROM "Sales"."Order Items" WHERE x = 'KeepMe'"#
            )),
            r#"SELECT "id" FROM "sales"."order items" WHERE x = 'KeepMe'"#
        );
    }

    #[test]
    fn raise_sql_escapes() {
        let s = Reject::Syntax("it's $rss$".into()).to_sql();
        assert!(s.starts_with("DO $rss1$"), "{s}");
        assert!(s.contains("'it''s $rss$'"), "{s}");
        assert!(s.contains("'42601'"), "{s}");
    }

    #[test]
    fn insert_on_conflict_rejected() {
        let s = rejected(one("insert into t values (1) on conflict (id) do nothing"));
        assert!(
            s.contains("syntax error at or near \"\"ON\"\"") || s.contains("\"ON\""),
            "{s}"
        );
        assert_eq!(
            passed(one("insert into t select * from s where a in (select 1)")),
            "insert into t select * from s where a in (select 1)"
        );
        // "on conflict" inside a string is not a clause
        passed(one("insert into t values ('on conflict')"));
    }

    #[test]
    fn create_index_and_sequence_rejected() {
        assert!(rejected(one("create index i on t (a)")).contains("CREATE INDEX"));
        assert!(rejected(one("CREATE UNIQUE INDEX i on t (a)")).contains("CREATE INDEX"));
        assert!(rejected(one("create sequence s")).contains("CREATE SEQUENCE"));
    }

    #[test]
    fn merge_forms() {
        let ok = "merge into t using s on t.id = s.id when matched then update set a = s.a \
                  when not matched then insert values (s.id, s.a)";
        assert_eq!(passed(one(ok)), ok);
        passed(one(
            "merge into t using s on t.id = s.id when matched then delete \
             when not matched then insert values (s.id)",
        ));
        for bad in [
            "merge into t using (select 1 as id) s on t.id = s.id when matched then delete \
             when not matched then insert values (s.id)",
            "merge into t using s on t.id = s.id when matched and s.x then delete \
             when not matched then insert values (s.id)",
            "merge into t using s on t.id = s.id when matched then delete",
            "merge into t using s on t.id = s.id when not matched then insert values (s.id) \
             when matched then delete",
            "merge into t using s on t.id = s.id when matched then update set a = 1 \
             when matched then delete when not matched then insert values (s.id)",
            "merge into t using s on t.id = s.id remove duplicates",
            "merge into t using s on t.id = s.id when matched then do nothing \
             when not matched then insert values (s.id)",
        ] {
            assert!(rejected(one(bad)).contains("MERGE"), "{bad}");
        }
    }

    #[test]
    fn truncate_is_special() {
        assert_eq!(
            one("TRUNCATE \"T\""),
            Plan::Truncate("TRUNCATE \"t\"".into())
        );
    }

    #[test]
    fn copy_from_stdin_rejected() {
        assert!(rejected(one("copy t from stdin")).contains("STDIN"));
        assert!(rejected(one("copy t to stdout")).contains("COPY"));
    }

    #[test]
    fn multi_statement_strings_track_blocks() {
        let p = plan_query(
            "begin; alter table t alter column c type varchar(20); commit",
            false,
        );
        assert_eq!(p.len(), 3);
        assert!(rejected(p[1].plan.clone()).contains("transaction block"));
        let p = plan_query("alter table t alter column c type varchar(20)", false);
        assert!(passed(p[0].plan.clone()).starts_with("DO $rss$"), "{p:?}");
        assert!(
            one_in_block("rollback to savepoint a") == Plan::Pass("rollback to savepoint a".into())
        );
    }

    #[test]
    fn join_pass_only_when_all_pass() {
        let p = plan_query("select 1; select 2", false);
        assert_eq!(join_pass(&p).unwrap(), "select 1;\nselect 2");
        let p = plan_query("select 1; truncate t", false);
        assert!(join_pass(&p).is_none());
    }

    #[test]
    fn untokenizable_passes_through() {
        let p = plan_query("select 'oops", false);
        assert_eq!(p[0].plan, Plan::Pass("select 'oops".into()));
    }

    /// Every prefix of awkward statements plans without panicking (bad clients must not crash
    /// the sim).
    #[test]
    fn truncated_input_never_panics() {
        let corpus = "create table if not exists \"S\".t (a varchar(max) encode zstd distkey, \
            b numeric(39,2), c int identity(1, 1), d int[], primary key (a)) diststyle key \
            compound sortkey(a,b); alter table only s.t alter column \"A\" type varchar(10); \
            alter table t add column if not exists x jsonb, add y int; copy t (a, b) from \
            's3://b/k' credentials as 'aws_access_key_id=x;aws_secret_access_key=y' csv quote \
            as '\"' null as '\\N' ignoreheader as 1 acceptinvchars as '^' gzip manifest; \
            merge into t using s on t.a = s.a when matched then update set b = s.b when not \
            matched then insert values (s.a); insert into t values ($1, E'x\\'y', $$z$$) on \
            conflict do nothing; truncate t; create unique index i on t (a); select U&\"x\" /* c */";
        for (i, _) in corpus.char_indices() {
            for in_block in [false, true] {
                let _ = plan_query(&corpus[..i], in_block);
                let _ = plan_query(&corpus[i..], in_block);
            }
        }
    }

    #[test]
    fn last_copy_count_is_substituted() {
        assert_eq!(
            substitute_last_copy_count("SELECT pg_last_copy_count()", 42),
            "SELECT 42"
        );
        assert_eq!(
            substitute_last_copy_count("SELECT pg_last_copy_id()", 42),
            "SELECT pg_last_copy_id()"
        );
    }

    #[test]
    fn last_copy_id_is_substituted() {
        let q = "SELECT line_number FROM stl_load_errors WHERE query = pg_last_copy_id() \
                 ORDER BY line_number";
        assert_eq!(
            substitute_last_copy_id(q, 1003),
            "SELECT line_number FROM stl_load_errors WHERE query = 1003 ORDER BY line_number"
        );
        assert_eq!(
            substitute_last_copy_id("select PG_LAST_COPY_ID ( )::text, 1-pg_last_copy_id()", -1),
            "select (-1)::text, 1-(-1)"
        );
        assert_eq!(
            substitute_last_copy_id("select pg_catalog.pg_last_copy_id();", 7),
            "select 7;"
        );
        for unchanged in [
            "select 'pg_last_copy_id()', \"pg_last_copy_id\"() -- pg_last_copy_id()",
            "select x.pg_last_copy_id(), pg_last_copy_id_2(), pg_last_copy_id(1)",
            "select pg_last_copy_id() 'oops",
            "select 1",
        ] {
            assert_eq!(substitute_last_copy_id(unchanged, 5), unchanged);
        }
    }

    #[test]
    fn original_text_is_kept_for_the_log() {
        let p = plan_query("  SELECT \"A\" ;  select 2 ", false);
        assert_eq!(p[0].original, "SELECT \"A\"");
        assert_eq!(p[1].original, "select 2");
    }
}
