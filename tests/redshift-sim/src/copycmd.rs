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
}

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
        let mut j = k + 1;
        while j < close {
            let t = st
                .tok(j)
                .ok_or_else(|| CopyParseError::Syntax("(".into()))?;
            if let Some(name) = t.ident() {
                cols.push(name);
            } else if !t.is_punct(",") {
                return Err(CopyParseError::Syntax(t.text.clone()));
            }
            j += 1;
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
    k += 1;

    let mut spec = CopySpec {
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
    };
    let mut csv = false;
    let mut have_creds = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);

    let mut o = Opts { st, k };
    while let Some(t) = st.tok(o.k) {
        let w = t.text.to_ascii_uppercase();
        if t.kind != Kind::Word {
            return Err(CopyParseError::Syntax(t.text.clone()));
        }
        o.k += 1;
        match w.as_str() {
            "WITH" => {}
            "IAM_ROLE" => {
                if !o.st.kw(o.k, "default") {
                    o.string(&w)?;
                } else {
                    o.k += 1;
                }
                have_creds = true;
            }
            "ACCESS_KEY_ID" => key_id = Some(o.string(&w)?),
            "SECRET_ACCESS_KEY" => secret = Some(o.string(&w)?),
            "SESSION_TOKEN" => token = Some(o.string(&w)?),
            "CREDENTIALS" => {
                let s = o.string(&w)?;
                for part in s.split(';') {
                    let (name, value) = part.split_once('=').unwrap_or((part, ""));
                    match name.trim().to_ascii_lowercase().as_str() {
                        "aws_access_key_id" => key_id = Some(value.trim().to_string()),
                        "aws_secret_access_key" => secret = Some(value.trim().to_string()),
                        "token" => token = Some(value.trim().to_string()),
                        "aws_iam_role" => have_creds = true,
                        "" => {}
                        other => {
                            return Err(CopyParseError::Value(w.clone(), format!("'{other}'")))
                        }
                    }
                }
            }
            "CSV" => {
                csv = true;
                if o.st.kw(o.k, "quote") {
                    o.k += 1;
                    spec.quote = o.single_byte("QUOTE")?;
                }
            }
            "QUOTE" => spec.quote = o.single_byte(&w)?,
            "FORMAT" => {
                o.skip_as();
                if o.st.kw(o.k, "csv") {
                    o.k += 1;
                    csv = true;
                    if o.st.kw(o.k, "quote") {
                        o.k += 1;
                        spec.quote = o.single_byte("QUOTE")?;
                    }
                } else {
                    return Err(CopyParseError::Option(format!(
                        "FORMAT {}",
                        word_at(st, o.k)
                    )));
                }
            }
            "GZIP" => spec.gzip = true,
            "DELIMITER" => spec.delimiter = o.single_byte(&w)?,
            "NULL" => {
                o.skip_as();
                spec.null_as = o.string("NULL AS")?.into_bytes();
            }
            "IGNOREHEADER" => {
                o.skip_as();
                let t = o.st.tok(o.k).filter(|t| t.kind == Kind::Number);
                spec.ignore_header = t
                    .and_then(|t| t.text.parse().ok())
                    .ok_or_else(|| CopyParseError::Value(w.clone(), word_at(st, o.k)))?;
                o.k += 1;
            }
            "TIMEFORMAT" => spec.time_format = Some(o.format(&w)?),
            "DATEFORMAT" => spec.date_format = Some(o.format(&w)?),
            "EMPTYASNULL" => spec.empty_as_null = true,
            "BLANKSASNULL" => spec.blanks_as_null = true,
            "TRUNCATECOLUMNS" => spec.truncate_columns = true,
            "ROUNDEC" => spec.round_dec = true,
            "MANIFEST" => spec.manifest = true,
            "ACCEPTINVCHARS" => {
                o.skip_as();
                let mut c = '?';
                if o.st.tok(o.k).is_some_and(|t| t.kind == Kind::Str) {
                    let s = o.string(&w)?;
                    let mut chars = s.chars();
                    c = match (chars.next(), chars.next()) {
                        (Some(c), None) if c.is_ascii() => c,
                        _ => return Err(CopyParseError::Value(w.clone(), format!("'{s}'"))),
                    };
                }
                spec.accept_inv_chars = Some(c);
            }
            "REGION" => spec.region = Some(o.string(&w)?),
            "COMPUPDATE" | "STATUPDATE" => {
                if ["on", "off", "true", "false", "preset"]
                    .iter()
                    .any(|v| o.st.kw(o.k, v))
                {
                    o.k += 1;
                }
            }
            _ => return Err(CopyParseError::Option(w)),
        }
    }

    if !csv {
        return Err(CopyParseError::NotCsv);
    }
    match (key_id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            spec.credentials = Credentials::Keys {
                access_key_id,
                secret_access_key,
                session_token: token,
            };
        }
        (None, None) if have_creds => {}
        _ => return Err(CopyParseError::NoCredentials),
    }
    Ok(spec)
}

struct Opts<'a> {
    st: &'a Stmt,
    k: usize,
}

impl Opts<'_> {
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
        assert!(
            rejected("copy t from 's3://b/k' iam_role default csv maxerror 10")
                .contains("MAXERROR")
        );
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
    fn s3_urls() {
        assert_eq!(parse_s3_url("s3://b/a/b"), Some(("b".into(), "a/b".into())));
        assert_eq!(parse_s3_url("s3://b"), Some(("b".into(), String::new())));
        assert_eq!(parse_s3_url("http://b/a"), None);
        assert_eq!(parse_s3_url("s3:///a"), None);
    }
}
