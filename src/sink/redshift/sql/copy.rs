//! The COPY statement (pure, no I/O): how a staged file reaches Redshift, with its credentials
//! (never logged: see [`redact`]).

use std::fmt;

use super::naming::{copy_literal, quote_ident, SqlError};

/// How COPY reaches S3.
#[derive(Clone, PartialEq, Eq)]
pub enum CopyAuth {
    /// `IAM_ROLE 'arn:...'` (`default` is passed as the keyword).
    IamRole(String),
    /// `ACCESS_KEY_ID '..' SECRET_ACCESS_KEY '..' [SESSION_TOKEN '..']`.
    Keys {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
}

impl fmt::Debug for CopyAuth {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyAuth::IamRole(r) => f.debug_tuple("IamRole").field(r).finish(),
            CopyAuth::Keys {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("Keys")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"***")
                .field("session_token", &session_token.as_ref().map(|_| "***"))
                .finish(),
        }
    }
}

/// The rows the session's last COPY loaded (rows it skipped under MAXERROR not counted).
pub const LAST_COPY_COUNT_SQL: &str = "SELECT pg_last_copy_count()::bigint";

/// COPY's format options. No `NULL AS`: Redshift's default null string is `\N`, what the CSV
/// stage writes unquoted, and leaving it out avoids a backslash in a literal (read differently
/// by Redshift and PostgreSQL, see `naming`). A quoted `"\N"` is the two-character text: the
/// CSV stage quotes every string so it is never taken for NULL (the simulator does so; real
/// Redshift is documented to match `NULL AS` on the field, which we believe applies to the
/// unquoted form only - verify with `re_dms verify`). No EMPTYASNULL / BLANKSASNULL (`""` stays
/// an empty string), no ACCEPTINVCHARS (input is valid UTF-8), no TRUNCATECOLUMNS (the CSV
/// stage already cut strings to the column's bytes; an overflow should fail loudly).
pub const COPY_FORMAT: &str =
    "CSV GZIP TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF";

/// The COPY of one file into a staging table (`columns` are its target column names, in the
/// file's order). `table` names the source table in errors.
pub fn copy_sql(
    table: &str,
    staging: &str,
    columns: &[String],
    url: &str,
    auth: &CopyAuth,
    region: &str,
) -> Result<String, SqlError> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let mut sql = format!(
        "COPY {} ({}) FROM {} ",
        quote_ident(staging),
        cols.join(", "),
        copy_literal(table, "the S3 URL", url)?
    );
    match auth {
        CopyAuth::IamRole(role) if role.eq_ignore_ascii_case("default") => {
            sql.push_str("IAM_ROLE default");
        }
        CopyAuth::IamRole(role) => {
            sql.push_str("IAM_ROLE ");
            sql.push_str(&copy_literal(table, "redshift.iam_role", role)?);
        }
        CopyAuth::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            sql.push_str("ACCESS_KEY_ID ");
            sql.push_str(&copy_literal(table, "the access key id", access_key_id)?);
            sql.push_str(" SECRET_ACCESS_KEY ");
            sql.push_str(&copy_literal(
                table,
                "the secret access key",
                secret_access_key,
            )?);
            if let Some(token) = session_token {
                sql.push_str(" SESSION_TOKEN ");
                sql.push_str(&copy_literal(table, "the session token", token)?);
            }
        }
    }
    if !region.is_empty() {
        sql.push_str(" REGION ");
        sql.push_str(&copy_literal(table, "s3.region", region)?);
    }
    sql.push(' ');
    sql.push_str(COPY_FORMAT);
    Ok(sql)
}

/// `sql` with the secret key and session token of `auth` replaced by `***`, for logs.
pub fn redact(sql: &str, auth: &CopyAuth) -> String {
    let CopyAuth::Keys {
        secret_access_key,
        session_token,
        ..
    } = auth
    else {
        return sql.to_string();
    };
    let mut out = sql.to_string();
    for secret in std::iter::once(secret_access_key).chain(session_token) {
        if !secret.is_empty() {
            out = out.replace(&format!("'{}'", secret.replace('\'', "''")), "'***'");
        }
    }
    out
}
