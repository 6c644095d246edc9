//! Parsing Redshift's `COPY table [(cols)] FROM 's3://...' [options]`.

use crate::lexer::Kind;
use crate::rewrite::{Reject, Stmt};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CopyParseError {
    #[error("COPY from STDIN is not supported")]
    Stdin,
    #[error("COPY ... TO is not supported (Redshift uses UNLOAD)")]
    To,
    #[error("COPY from {0} is not supported by redshift-sim (only Amazon S3)")]
    Source(String),
    #[error("syntax error at or near \"{0}\"")]
    Syntax(String),
    #[error("COPY option {0} is not supported by redshift-sim")]
    Option(String),
    #[error("invalid value for COPY option {0}: {1}")]
    Value(String, String),
    #[error("redshift-sim supports only CSV loads: add CSV (or FORMAT AS CSV) to the COPY")]
    NotCsv,
    #[error("COPY needs credentials: IAM_ROLE, ACCESS_KEY_ID/SECRET_ACCESS_KEY or CREDENTIALS")]
    NoCredentials,
}

impl From<CopyParseError> for Reject {
    fn from(e: CopyParseError) -> Self {
        match e {
            CopyParseError::Syntax(_) => Reject::Syntax(e.to_string()),
            CopyParseError::Value(..) | CopyParseError::NoCredentials => {
                Reject::InvalidValue(e.to_string())
            }
            _ => Reject::Unsupported(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Static keys from the COPY command.
    Keys {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// IAM_ROLE: the sim uses its environment's keys (or test/test).
    Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Table name as SQL text (identifiers folded), e.g. `s."order items"`.
    pub table: String,
    /// The table's own name, unqualified and unquoted, for Redshift's messages.
    pub table_short: String,
    /// Target columns (folded, unquoted); None: all columns.
    pub columns: Option<Vec<String>>,
    pub bucket: String,
    pub key: String,
    pub manifest: bool,
    pub credentials: Credentials,
    pub region: Option<String>,
    pub gzip: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub null_as: Vec<u8>,
    pub ignore_header: u64,
    pub empty_as_null: bool,
    pub blanks_as_null: bool,
    pub truncate_columns: bool,
    pub round_dec: bool,
    /// ACCEPTINVCHARS: replacement for invalid UTF-8 (default `?`).
    pub accept_inv_chars: Option<char>,
    pub time_format: Option<String>,
    pub date_format: Option<String>,
    /// MAXERROR: how many records may be rejected (skipped, recorded in stl_load_errors) before
    /// the COPY fails; 0 (default): the first rejected record fails it.
    pub max_error: u64,
}

/// Redshift's upper limit for MAXERROR.
pub const MAX_MAXERROR: u64 = 100_000;

/// Split `s3://bucket/key`.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_string(), key.to_string()))
}

pub fn parse(st: &Stmt) -> Result<CopySpec, Reject> {
    parse_inner(st).map_err(Reject::from)
}

fn word_at(st: &Stmt, k: usize) -> String {
    st.tok(k)
        .map(|t| t.text.clone())
        .unwrap_or_else(|| "end of input".into())
}

fn parse_inner(st: &Stmt) -> Result<CopySpec, CopyParseError> {
    let (mut spec, k) = parse_head(st)?;
    let mut creds = CredParts::default();
    let mut csv = false;
    let mut o = Opts { st, k };
    while let Some(t) = st.tok(o.k) {
        let w = t.text.to_ascii_uppercase();
        if t.kind != Kind::Word {
            return Err(CopyParseError::Syntax(t.text.clone()));
        }
        o.k += 1;
        if !o.credential_option(&w, &mut creds)? {
            o.data_option(&w, &mut spec, &mut csv)?;
        }
    }
    if !csv {
        return Err(CopyParseError::NotCsv);
    }
    match (creds.key_id, creds.secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            spec.credentials = Credentials::Keys {
                access_key_id,
                secret_access_key,
                session_token: creds.token,
            };
        }
        (None, None) if creds.role => {}
        _ => return Err(CopyParseError::NoCredentials),
    }
    Ok(spec)
}

/// `COPY table [(cols)] FROM 's3://...'`: the spec with default options, and the index of the
/// first option.
fn parse_head(st: &Stmt) -> Result<(CopySpec, usize), CopyParseError> {
    let (table, mut k) = st
        .name(1)
        .ok_or_else(|| CopyParseError::Syntax(word_at(st, 1)))?;
    let table_short = st
        .tok(k.saturating_sub(1))
        .and_then(|t| t.ident())
        .unwrap_or_default();
    let mut columns = None;
    if st.punct(k, "(") {
        let close = st
            .matching(k)
            .ok_or_else(|| CopyParseError::Syntax("(".into()))?;
        let mut cols = Vec::new();
        for j in k + 1..close {
            let t = st
                .tok(j)
                .ok_or_else(|| CopyParseError::Syntax("(".into()))?;
            if let Some(name) = t.ident() {
                cols.push(name);
            } else if !t.is_punct(",") {
                return Err(CopyParseError::Syntax(t.text.clone()));
            }
        }
        columns = Some(cols);
        k = close + 1;
    }
    if st.kw(k, "to") {
        return Err(CopyParseError::To);
    }
    if !st.kw(k, "from") {
        return Err(CopyParseError::Syntax(word_at(st, k)));
    }
    k += 1;
    let src_tok = st
        .tok(k)
        .ok_or_else(|| CopyParseError::Syntax(word_at(st, k)))?;
    if src_tok.is_kw("stdin") {
        return Err(CopyParseError::Stdin);
    }
    let src = src_tok
        .string_value()
        .ok_or_else(|| CopyParseError::Syntax(src_tok.text.clone()))?;
    let (bucket, key) =
        parse_s3_url(&src).ok_or_else(|| CopyParseError::Source(format!("'{src}'")))?;
    let spec = CopySpec {
        table,
        table_short,
        columns,
        bucket,
        key,
        manifest: false,
        credentials: Credentials::Role,
        region: None,
        gzip: false,
        delimiter: b',',
        quote: b'"',
        null_as: b"\\N".to_vec(),
        ignore_header: 0,
        empty_as_null: false,
        blanks_as_null: false,
        truncate_columns: false,
        round_dec: false,
        accept_inv_chars: None,
        time_format: None,
        date_format: None,
        max_error: 0,
    };
    Ok((spec, k + 1))
}

/// Credentials as the options give them.
#[derive(Default)]
struct CredParts {
    key_id: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    /// IAM_ROLE (or `aws_iam_role=` in CREDENTIALS).
    role: bool,
}

struct Opts<'a> {
    st: &'a Stmt,
    k: usize,
}

impl Opts<'_> {
    /// A credentials option (the keyword `w` just read); false if `w` is not one.
    fn credential_option(&mut self, w: &str, c: &mut CredParts) -> Result<bool, CopyParseError> {
        match w {
            "IAM_ROLE" => {
                if !self.st.kw(self.k, "default") {
                    self.string(w)?;
                } else {
                    self.k += 1;
                }
                c.role = true;
            }
            "ACCESS_KEY_ID" => c.key_id = Some(self.string(w)?),
            "SECRET_ACCESS_KEY" => c.secret = Some(self.string(w)?),
            "SESSION_TOKEN" => c.token = Some(self.string(w)?),
            "CREDENTIALS" => {
                let s = self.string(w)?;
                for part in s.split(';') {
                    let (name, value) = part.split_once('=').unwrap_or((part, ""));
                    let value = Some(value.trim().to_string());
                    match name.trim().to_ascii_lowercase().as_str() {
                        "aws_access_key_id" => c.key_id = value,
                        "aws_secret_access_key" => c.secret = value,
                        "token" => c.token = value,
                        "aws_iam_role" => c.role = true,
                        "" => {}
                        other => return Err(CopyParseError::Value(w.into(), format!("'{other}'"))),
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A format or load option (the keyword `w` just read).
    fn data_option(
        &mut self,
        w: &str,
        spec: &mut CopySpec,
        csv: &mut bool,
    ) -> Result<(), CopyParseError> {
        match w {
            "WITH" => {}
            "CSV" => self.csv(spec, csv)?,
            "QUOTE" => spec.quote = self.single_byte(w)?,
            "FORMAT" => {
                self.skip_as();
                if !self.st.kw(self.k, "csv") {
                    let what = word_at(self.st, self.k);
                    return Err(CopyParseError::Option(format!("FORMAT {what}")));
                }
                self.k += 1;
                self.csv(spec, csv)?;
            }
            "GZIP" => spec.gzip = true,
            "DELIMITER" => spec.delimiter = self.single_byte(w)?,
            "NULL" => {
                self.skip_as();
                spec.null_as = self.string("NULL AS")?.into_bytes();
            }
            "IGNOREHEADER" => spec.ignore_header = self.integer(w, u64::MAX)?,
            "MAXERROR" => spec.max_error = self.integer(w, MAX_MAXERROR)?,
            "TIMEFORMAT" => spec.time_format = Some(self.format(w)?),
            "DATEFORMAT" => spec.date_format = Some(self.format(w)?),
            "EMPTYASNULL" => spec.empty_as_null = true,
            "BLANKSASNULL" => spec.blanks_as_null = true,
            "TRUNCATECOLUMNS" => spec.truncate_columns = true,
            "ROUNDEC" => spec.round_dec = true,
            "MANIFEST" => spec.manifest = true,
            "ACCEPTINVCHARS" => {
                self.skip_as();
                let mut c = '?';
                if self.st.tok(self.k).is_some_and(|t| t.kind == Kind::Str) {
                    let s = self.string(w)?;
                    let mut chars = s.chars();
                    c = match (chars.next(), chars.next()) {
                        (Some(c), None) if c.is_ascii() => c,
                        _ => return Err(CopyParseError::Value(w.into(), format!("'{s}'"))),
                    };
                }
                spec.accept_inv_chars = Some(c);
            }
            "REGION" => spec.region = Some(self.string(w)?),
            "COMPUPDATE" | "STATUPDATE" => {
                if ["on", "off", "true", "false", "preset"]
                    .iter()
                    .any(|v| self.st.kw(self.k, v))
                {
                    self.k += 1;
                }
            }
            _ => return Err(CopyParseError::Option(w.into())),
        }
        Ok(())
    }

    /// After `CSV` / `FORMAT [AS] CSV`: an optional `QUOTE [AS] 'c'`.
    fn csv(&mut self, spec: &mut CopySpec, csv: &mut bool) -> Result<(), CopyParseError> {
        *csv = true;
        if self.st.kw(self.k, "quote") {
            self.k += 1;
            spec.quote = self.single_byte("QUOTE")?;
        }
        Ok(())
    }

    fn skip_as(&mut self) {
        if self.st.kw(self.k, "as") {
            self.k += 1;
        }
    }

    /// `[AS] 'string'`
    fn string(&mut self, opt: &str) -> Result<String, CopyParseError> {
        self.skip_as();
        let v = self
            .st
            .tok(self.k)
            .and_then(|t| t.string_value())
            .ok_or_else(|| CopyParseError::Value(opt.into(), word_at(self.st, self.k)))?;
        self.k += 1;
        Ok(v)
    }

    /// `[AS] n` for an integer in `0..=max`.
    fn integer(&mut self, opt: &str, max: u64) -> Result<u64, CopyParseError> {
        self.skip_as();
        let v = self
            .st
            .tok(self.k)
            .filter(|t| t.kind == Kind::Number)
            .and_then(|t| t.text.parse::<u64>().ok())
            .filter(|&n| n <= max)
            .ok_or_else(|| CopyParseError::Value(opt.into(), word_at(self.st, self.k)))?;
        self.k += 1;
        Ok(v)
    }

    /// `[AS] 'c'` for a one-byte character; `'\t'` means a tab as in Redshift.
    fn single_byte(&mut self, opt: &str) -> Result<u8, CopyParseError> {
        let s = self.string(opt)?;
        match s.as_str() {
            "\\t" => Ok(b'\t'),
            _ if s.len() == 1 => Ok(s.as_bytes()[0]),
            _ => Err(CopyParseError::Value(opt.into(), format!("'{s}'"))),
        }
    }

    /// TIMEFORMAT / DATEFORMAT: 'auto' and ISO forms are what the backend parses itself.
    fn format(&mut self, opt: &str) -> Result<String, CopyParseError> {
        let s = self.string(opt)?;
        let ok = [
            "auto",
            "YYYY-MM-DD",
            "YYYY-MM-DD HH:MI:SS",
            "YYYY-MM-DD HH24:MI:SS",
            "YYYY-MM-DDTHH:MI:SS",
        ]
        .iter()
        .any(|f| f.eq_ignore_ascii_case(&s));
        if ok {
            Ok(s)
        } else {
            Err(CopyParseError::Value(
                opt.into(),
                format!("'{s}' (redshift-sim handles 'auto' and ISO formats only)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{plan_query, Plan};

    fn spec(sql: &str) -> CopySpec {
        match plan_query(sql, false).remove(0).plan {
            Plan::Copy(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    fn rejected(sql: &str) -> String {
        match plan_query(sql, false).remove(0).plan {
            Plan::Pass(s) if s.contains("RAISE EXCEPTION") => s,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn full_copy() {
        let s = spec(
            "COPY \"Sales\".\"Order Items\" (\"Id\", name) FROM 's3://b/x/1' \
             ACCESS_KEY_ID 'AK' SECRET_ACCESS_KEY 'SK' SESSION_TOKEN 'T' \
             FORMAT AS CSV DELIMITER AS '|' QUOTE AS '''' NULL AS 'NULL' IGNOREHEADER 1 GZIP \
             TIMEFORMAT 'auto' DATEFORMAT AS 'auto' EMPTYASNULL BLANKSASNULL ACCEPTINVCHARS AS '^' \
             TRUNCATECOLUMNS ROUNDEC REGION 'us-east-1' COMPUPDATE OFF STATUPDATE OFF",
        );
        assert_eq!(
            spec_summary(&s),
            "\"sales\".\"order items\" order items b x/1"
        );
        assert_eq!(s.columns, Some(vec!["id".into(), "name".into()]));
        assert_eq!(
            s.credentials,
            Credentials::Keys {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: Some("T".into())
            }
        );
        assert_eq!((s.delimiter, s.quote), (b'|', b'\''));
        assert_eq!(s.null_as, b"NULL");
        assert_eq!(s.ignore_header, 1);
        assert!(s.gzip && s.empty_as_null && s.blanks_as_null && s.truncate_columns && s.round_dec);
        assert_eq!(s.accept_inv_chars, Some('^'));
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
    }

    fn spec_summary(s: &CopySpec) -> String {
        format!("{} {} {} {}", s.table, s.table_short, s.bucket, s.key)
    }

    #[test]
    fn defaults_and_other_credentials() {
        let s = spec("copy t from 's3://b/k' iam_role 'arn:aws:iam::1:role/r' csv");
        assert_eq!(s.credentials, Credentials::Role);
        assert_eq!((s.delimiter, s.quote), (b',', b'"'));
        assert_eq!(s.null_as, b"\\N");
        assert!(!s.gzip && !s.manifest);
        let s = spec("copy t from 's3://b/m' iam_role default csv manifest");
        assert!(s.manifest);
        let s = spec(
            "copy t from 's3://b/k' with credentials as \
             'aws_access_key_id=A;aws_secret_access_key=S;token=X' csv quote as '\"'",
        );
        assert_eq!(
            s.credentials,
            Credentials::Keys {
                access_key_id: "A".into(),
                secret_access_key: "S".into(),
                session_token: Some("X".into())
            }
        );
        let s = spec("copy t from 's3://b/k' iam_role default csv delimiter '\\t' acceptinvchars");
        assert_eq!(s.delimiter, b'\t');
        assert_eq!(s.accept_inv_chars, Some('?'));
    }

    #[test]
    fn rejections() {
        assert!(rejected("copy t from 's3://b/k' iam_role default").contains("only CSV"));
        assert!(rejected("copy t from 's3://b/k' csv").contains("credentials"));
        assert!(rejected("copy t from 'dynamodb://x' iam_role default csv").contains("dynamodb"));
        assert!(
            rejected("copy t from 's3://b/k' iam_role default csv delimiter 'ab'")
                .contains("DELIMITER")
        );
        assert!(
            rejected("copy t from 's3://b/k' iam_role default csv timeformat 'epochsecs'")
                .contains("TIMEFORMAT")
        );
        assert!(rejected("copy t from 's3://b/k' iam_role default json 'auto'").contains("JSON"));
    }

    #[test]
    fn maxerror() {
        let base = "copy t from 's3://b/k' iam_role default csv";
        assert_eq!(spec(base).max_error, 0);
        assert_eq!(spec(&format!("{base} maxerror 5")).max_error, 5);
        assert_eq!(spec(&format!("{base} MAXERROR AS 5 gzip")).max_error, 5);
        assert_eq!(spec(&format!("{base} maxerror 0")).max_error, 0);
        assert_eq!(
            spec(&format!("{base} maxerror as 100000")).max_error,
            100_000
        );
        for bad in ["100001", "-1", "1.5", "'5'", "", "99999999999999999999999"] {
            let r = rejected(&format!("{base} maxerror {bad}"));
            assert!(
                r.contains("invalid value for COPY option MAXERROR"),
                "{bad}: {r}"
            );
            assert!(r.contains("'22023'"), "{bad}: {r}");
        }
    }

    #[test]
    fn s3_urls() {
        assert_eq!(parse_s3_url("s3://b/a/b"), Some(("b".into(), "a/b".into())));
        assert_eq!(parse_s3_url("s3://b"), Some(("b".into(), String::new())));
        assert_eq!(parse_s3_url("http://b/a"), None);
        assert_eq!(parse_s3_url("s3:///a"), None);
    }
}
