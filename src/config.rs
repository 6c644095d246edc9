//! Configuration: the TOML file described in README.md and config.example.toml.
//!
//! Every section is optional and every key has a documented default (the `DEFAULT_*` constants).
//! Unknown keys are rejected by serde (`deny_unknown_fields`) with the key's name and line;
//! `validate()` checks values and names the offending key (`wal.segment_max_bytes`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the config is read from when neither `--config` nor `$RE_DMS_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/re_dms/re_dms.toml";
pub const CONFIG_ENV: &str = "RE_DMS_CONFIG";

pub const DEFAULT_WAL_DIRECTORY: &str = "/var/lib/re_dms/wal";
/// 256 MiB: rotate (= flush a batch to the target) at this WAL segment size...
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// ... or at this age, whichever comes first.
pub const DEFAULT_SEGMENT_MAX_AGE_SECS: u64 = 60;
/// 512 MiB: the batcher never holds more; it rotates early instead.
pub const DEFAULT_BATCH_MAX_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_TARGET_DIRECTORY: &str = "./re_dms_out";
pub const DEFAULT_S3_PREFIX: &str = "re_dms/";
pub const DEFAULT_S3_REGION: &str = "us-east-1";
pub const DEFAULT_REDSHIFT_MAX_CONNECTIONS: u32 = 8;
/// Segments whose table loads may be unfinished at once: the lanes of fast tables run a few
/// segments ahead of a slow one, and the spool on disk holds at most this many segments' files.
pub const DEFAULT_REDSHIFT_SEGMENTS_IN_FLIGHT: usize = 4;
/// Per table lane, uploaded jobs that may wait for the merge: with 1, a table's next segment
/// uploads to S3 while its current one merges.
pub const DEFAULT_REDSHIFT_UPLOADS_AHEAD: usize = 1;
/// Upper bound of both (each segment in flight keeps its CSV files on disk).
pub const MAX_REDSHIFT_PIPELINE_DEPTH: usize = 64;
/// The replication slot re_dms streams from.
pub const DEFAULT_SOURCE_SLOT: &str = "re_dms";
/// Seconds between standby status updates to the source (the server also asks when it wants
/// one; PostgreSQL's `wal_sender_timeout` defaults to 60 s).
pub const DEFAULT_SOURCE_STATUS_INTERVAL_SECS: u64 = 10;
/// 30 minutes: Redshift cancels a statement running longer (`SET statement_timeout`), and
/// re_dms stops waiting for any answer 30 s after that; both retry the table-segment.
pub const DEFAULT_REDSHIFT_STATEMENT_TIMEOUT_SECS: u64 = 1800;

/// `/healthz` fails when the oldest WAL segment not loaded yet was sealed longer ago than this.
pub const DEFAULT_HEALTHZ_MAX_SEGMENT_AGE_SECS: u64 = 900;
/// `/healthz` fails when the live source read nothing (not even a keepalive) for this long.
pub const DEFAULT_SOURCE_SILENT_SECS: u64 = 300;

/// The CloudWatch agent's StatsD listener, where `[metrics] cloudwatch_namespace` sends by default.
pub const DEFAULT_CLOUDWATCH_STATSD: &str = "127.0.0.1:8125";

/// Smallest segment size accepted (tests use tiny segments; production wants MiBs).
pub const MIN_SEGMENT_MAX_BYTES: u64 = 4 * 1024;
/// Smallest batch memory accepted.
pub const MIN_BATCH_MAX_MEMORY_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub wal: WalConfig,
    pub batch: BatchConfig,
    pub target: TargetConfig,
    pub s3: S3Config,
    pub redshift: RedshiftConfig,
    /// Per-table settings keyed by exact `schema.table` (unquoted).
    pub tables: BTreeMap<String, TableConfig>,
    pub metrics: MetricsConfig,
    /// Not supported yet (Sentry).
    pub sentry: SentryConfig,
    pub log: LogConfig,
}

/// `[sentry]`: where panics, fatal errors and stopped tables are reported (`crate::report`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentryConfig {
    /// The project's DSN; empty: `$SENTRY_DSN`; both empty: off.
    pub dsn: String,
    /// The Sentry environment (e.g. `production`); empty: Sentry's default.
    pub environment: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub connection: String,
    /// The test_decoding replication slot.
    pub slot: String,
    /// Create the slot when it does not exist (never re-created when it was dropped or lost:
    /// see `source::live`).
    pub create_slot: bool,
    /// When a source position is confirmed to the slot.
    pub ack: Ack,
    pub status_interval_secs: u64,
    /// `schema.table` globs of the tables to take (`source::filter`); exclude wins.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            connection: String::new(),
            slot: DEFAULT_SOURCE_SLOT.to_string(),
            create_slot: true,
            ack: Ack::Wal,
            status_interval_secs: DEFAULT_SOURCE_STATUS_INTERVAL_SECS,
            include: vec!["*.*".to_string()],
            exclude: Vec::new(),
        }
    }
}

/// When the live source confirms a transaction to the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// Once its COMMIT is fsynced in the local WAL.
    #[default]
    Wal,
    /// Once the target holds it: every segment up to its COMMIT is loaded (the slot keeps
    /// what the target lacks, so the WAL directory can be lost without losing a change).
    Loaded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    pub directory: PathBuf,
    pub segment_max_bytes: u64,
    pub segment_max_age_secs: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from(DEFAULT_WAL_DIRECTORY),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age_secs: DEFAULT_SEGMENT_MAX_AGE_SECS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_memory_bytes: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: DEFAULT_BATCH_MAX_MEMORY_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    #[default]
    Redshift,
    Local,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    pub kind: TargetKind,
    pub directory: PathBuf,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            kind: TargetKind::Redshift,
            directory: PathBuf::from(DEFAULT_TARGET_DIRECTORY),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub endpoint: String,
    pub force_path_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: DEFAULT_S3_PREFIX.to_string(),
            region: DEFAULT_S3_REGION.to_string(),
            endpoint: String::new(),
            force_path_style: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedshiftConfig {
    pub connection: String,
    pub iam_role: String,
    pub max_connections: u32,
    pub schema_map: BTreeMap<String, String>,
    pub statement_timeout_secs: u64,
    pub segments_in_flight: usize,
    pub uploads_ahead: usize,
}

impl Default for RedshiftConfig {
    fn default() -> Self {
        Self {
            connection: String::new(),
            iam_role: String::new(),
            max_connections: DEFAULT_REDSHIFT_MAX_CONNECTIONS,
            schema_map: BTreeMap::new(),
            statement_timeout_secs: DEFAULT_REDSHIFT_STATEMENT_TIMEOUT_SECS,
            segments_in_flight: DEFAULT_REDSHIFT_SEGMENTS_IN_FLIGHT,
            uploads_ahead: DEFAULT_REDSHIFT_UPLOADS_AHEAD,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableConfig {
    pub primary_key: Vec<String>,
    pub load_into: Option<String>,
    pub on_reject: OnReject,
}

/// What a row the warehouse rejects (e.g. a date it cannot parse) does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnReject {
    /// The table stops loading (its segments stay in the WAL) until the cause is fixed.
    #[default]
    Stop,
    /// The rest of the batch loads; the rejected rows go to a dead-letter object in S3 and to
    /// the `re_dms.rejected` table, counted and logged.
    Quarantine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `[metrics]`: where the figures go (METRICS.md). Everything off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` serving `GET /metrics` (Prometheus text) and `GET /healthz`; empty: off.
    pub listen: String,
    /// `host:port` of a StatsD listener (the CloudWatch agent's) to send the same figures to,
    /// with labels as DogStatsD tags; empty: off.
    pub statsd: String,
    /// Tags added to every StatsD metric, `key:value` (e.g. `instance:orders`).
    pub statsd_tags: Vec<String>,
    /// When set, the figures go to CloudWatch through the CloudWatch agent's StatsD listener:
    /// `statsd` defaults to [`DEFAULT_CLOUDWATCH_STATSD`], and every line is tagged
    /// `namespace:<this>`. The CloudWatch namespace itself is the agent's setting (the ansible
    /// role writes the same value there).
    pub cloudwatch_namespace: String,
    /// `/healthz` fails when the oldest unloaded segment was sealed longer ago than this.
    pub healthz_max_segment_age_secs: u64,
    /// `/healthz` fails when the live source read nothing for this long.
    pub source_silent_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            statsd: String::new(),
            statsd_tags: Vec::new(),
            cloudwatch_namespace: String::new(),
            healthz_max_segment_age_secs: DEFAULT_HEALTHZ_MAX_SEGMENT_AGE_SECS,
            source_silent_secs: DEFAULT_SOURCE_SILENT_SECS,
        }
    }
}

impl MetricsConfig {
    /// Where StatsD lines go: `statsd`, else the CloudWatch agent's default listener when
    /// `cloudwatch_namespace` is set; empty: nowhere.
    pub fn statsd_address(&self) -> &str {
        if self.statsd.is_empty() && !self.cloudwatch_namespace.is_empty() {
            DEFAULT_CLOUDWATCH_STATSD
        } else {
            &self.statsd
        }
    }

    /// `statsd_tags`, plus `namespace:<cloudwatch_namespace>` when set.
    pub fn all_statsd_tags(&self) -> Vec<String> {
        let mut tags = self.statsd_tags.clone();
        if !self.cloudwatch_namespace.is_empty() {
            tags.push(format!("namespace:{}", self.cloudwatch_namespace));
        }
        tags
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self
            .cloudwatch_namespace
            .contains(['|', ',', '#', ' ', ':'])
        {
            return Err(invalid(
                "metrics.cloudwatch_namespace",
                "must not hold `|`, `,`, `#`, `:` or spaces",
            ));
        }
        for (key, addr) in [
            ("metrics.listen", &self.listen),
            ("metrics.statsd", &self.statsd),
        ] {
            if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    key,
                    "expected host:port with an IP address, e.g. 127.0.0.1:9187",
                ));
            }
        }
        if let Some(t) = self
            .statsd_tags
            .iter()
            .find(|t| !t.contains(':') || t.contains(['|', ',', '#', ' ']))
        {
            return Err(invalid(
                "metrics.statsd_tags",
                format!("{t:?}: expected key:value without `|`, `,`, `#` or spaces"),
            ));
        }
        for (key, v) in [
            (
                "metrics.healthz_max_segment_age_secs",
                self.healthz_max_segment_age_secs,
            ),
            ("metrics.source_silent_secs", self.source_silent_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A connection string the connection code cannot use is an error naming its key (the message
/// never holds the password).
fn check_connection(key: &str, conn: &str) -> Result<(), ConfigError> {
    crate::connection::parse_connection(conn)
        .map(|_| ())
        .map_err(|e| invalid(key, e.to_string()))
}

/// What the process is about to do, so that `validate` only insists on what that needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `re_dms --stdin`: no source connection needed.
    Replay,
    /// Live from the replication slot.
    Live,
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks values; the error names the key.
    pub fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        if mode == Mode::Live && self.source.connection.trim().is_empty() {
            return Err(invalid(
                "source.connection",
                "required to stream from a replication slot",
            ));
        }
        if !self.sentry.dsn.is_empty() && !cfg!(feature = "sentry") {
            return Err(invalid(
                "sentry.dsn",
                "this build has no Sentry support (cargo feature `sentry`)",
            ));
        }
        self.metrics.validate()?;
        if !self.source.connection.trim().is_empty() {
            check_connection("source.connection", &self.source.connection)?;
        }
        self.validate_slot()?;
        self.validate_wal_and_batch()?;
        self.validate_target()?;
        for (name, table) in &self.tables {
            let key = format!("tables.\"{name}\"");
            if !name.contains('.') {
                return Err(invalid(key, "table keys are `schema.table`"));
            }
            if table.primary_key.iter().any(|c| c.is_empty()) {
                return Err(invalid(
                    format!("{key}.primary_key"),
                    "column names must not be empty",
                ));
            }
        }
        Ok(())
    }

    /// `[wal]` and `[batch]`.
    fn validate_wal_and_batch(&self) -> Result<(), ConfigError> {
        if self.wal.directory.as_os_str().is_empty() {
            return Err(invalid("wal.directory", "must not be empty"));
        }
        if self.wal.segment_max_bytes < MIN_SEGMENT_MAX_BYTES {
            return Err(invalid(
                "wal.segment_max_bytes",
                format!("must be at least {MIN_SEGMENT_MAX_BYTES}"),
            ));
        }
        if self.wal.segment_max_age_secs == 0 {
            return Err(invalid("wal.segment_max_age_secs", "must be at least 1"));
        }
        if self.batch.max_memory_bytes < MIN_BATCH_MAX_MEMORY_BYTES {
            return Err(invalid(
                "batch.max_memory_bytes",
                format!("must be at least {MIN_BATCH_MAX_MEMORY_BYTES}"),
            ));
        }
        Ok(())
    }

    /// `[target]` and, for Redshift, `[s3]` and `[redshift]`.
    fn validate_target(&self) -> Result<(), ConfigError> {
        match self.target.kind {
            TargetKind::Local => {
                if self.target.directory.as_os_str().is_empty() {
                    return Err(invalid(
                        "target.directory",
                        "required when target.kind = \"local\"",
                    ));
                }
            }
            TargetKind::Redshift => {
                if self.s3.bucket.is_empty() {
                    return Err(invalid(
                        "s3.bucket",
                        "required when target.kind = \"redshift\"",
                    ));
                }
                if self.redshift.connection.trim().is_empty() {
                    return Err(invalid(
                        "redshift.connection",
                        "required when target.kind = \"redshift\"",
                    ));
                }
                check_connection("redshift.connection", &self.redshift.connection)?;
                if self.redshift.max_connections == 0 {
                    return Err(invalid("redshift.max_connections", "must be at least 1"));
                }
                if self.redshift.statement_timeout_secs == 0 {
                    return Err(invalid(
                        "redshift.statement_timeout_secs",
                        "must be at least 1",
                    ));
                }
                for (key, v) in [
                    (
                        "redshift.segments_in_flight",
                        self.redshift.segments_in_flight,
                    ),
                    ("redshift.uploads_ahead", self.redshift.uploads_ahead),
                ] {
                    if !(1..=MAX_REDSHIFT_PIPELINE_DEPTH).contains(&v) {
                        return Err(invalid(
                            key,
                            format!("must be 1 to {MAX_REDSHIFT_PIPELINE_DEPTH}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_slot(&self) -> Result<(), ConfigError> {
        let slot = &self.source.slot;
        // PostgreSQL's rule for slot names.
        let valid = !slot.is_empty()
            && slot.len() <= 63
            && slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(invalid(
                "source.slot",
                "a slot name is 1 to 63 characters: lower-case letters, digits and underscores",
            ));
        }
        for (key, patterns) in [
            ("source.include", &self.source.include),
            ("source.exclude", &self.source.exclude),
        ] {
            if patterns.iter().any(|p| p.trim().is_empty()) {
                return Err(invalid(key, "patterns must not be empty"));
            }
        }
        if self.source.status_interval_secs == 0 {
            return Err(invalid("source.status_interval_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// Whether rows the warehouse rejects are quarantined for `schema.table` (else they stop it).
    pub fn quarantines(&self, qualified: &str) -> bool {
        self.tables
            .get(qualified)
            .is_some_and(|t| t.on_reject == OnReject::Quarantine)
    }

    /// The configured primary key of `schema.table`, if any.
    pub fn primary_key(&self, qualified: &str) -> Option<&[String]> {
        self.tables
            .get(qualified)
            .map(|t| t.primary_key.as_slice())
            .filter(|k| !k.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_config_has_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.wal.segment_max_bytes, DEFAULT_SEGMENT_MAX_BYTES);
        assert_eq!(c.wal.segment_max_age_secs, DEFAULT_SEGMENT_MAX_AGE_SECS);
        assert_eq!(c.batch.max_memory_bytes, DEFAULT_BATCH_MAX_MEMORY_BYTES);
        assert_eq!(c.target.kind, TargetKind::Redshift);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[wal]\nsegment_bytes = 5\n").unwrap_err().to_string();
        assert!(err.contains("segment_bytes"), "{err}");
    }

    #[test]
    fn unknown_section_is_named() {
        let err = parse("[walx]\n").unwrap_err().to_string();
        assert!(err.contains("walx"), "{err}");
    }

    #[test]
    fn invalid_value_names_key() {
        let c = parse("[target]\nkind = \"local\"\n[wal]\nsegment_max_bytes = 10\n").unwrap();
        let err = c.validate(Mode::Replay).unwrap_err().to_string();
        assert!(err.contains("wal.segment_max_bytes"), "{err}");
    }

    #[test]
    fn redshift_target_needs_bucket() {
        let c = parse("").unwrap();
        let err = c.validate(Mode::Replay).unwrap_err().to_string();
        assert!(err.contains("s3.bucket"), "{err}");
    }

    #[test]
    fn the_load_pipeline_depth_is_bounded_and_named() {
        let base = "[s3]\nbucket = \"b\"\n[redshift]\nconnection = \"host=h\"\n";
        let c = parse(base).unwrap();
        c.validate(Mode::Replay).unwrap();
        assert_eq!(
            (c.redshift.segments_in_flight, c.redshift.uploads_ahead),
            (
                DEFAULT_REDSHIFT_SEGMENTS_IN_FLIGHT,
                DEFAULT_REDSHIFT_UPLOADS_AHEAD
            )
        );
        for (key, value) in [
            ("segments_in_flight", 0),
            ("uploads_ahead", 0),
            ("segments_in_flight", 65),
        ] {
            let c = parse(&format!("{base}{key} = {value}\n")).unwrap();
            let err = c.validate(Mode::Replay).unwrap_err().to_string();
            assert!(err.contains(&format!("redshift.{key}")), "{err}");
        }
    }

    #[test]
    fn live_mode_needs_source_connection() {
        let c = parse("[target]\nkind = \"local\"\n").unwrap();
        c.validate(Mode::Replay).unwrap();
        let err = c.validate(Mode::Live).unwrap_err().to_string();
        assert!(err.contains("source.connection"), "{err}");
    }

    #[test]
    fn table_primary_key_is_read() {
        let c =
            parse("[tables.\"sales.Order Items\"]\nprimary_key = [\"order_id\", \"line_no\"]\n")
                .unwrap();
        assert_eq!(
            c.primary_key("sales.Order Items").unwrap(),
            &["order_id".to_string(), "line_no".to_string()]
        );
        assert!(c.primary_key("sales.other").is_none());
    }

    #[test]
    fn a_bad_connection_string_names_its_key_not_its_password() {
        let c = parse(
            "[s3]\nbucket = \"b\"\n[redshift]\nconnection = \"host=h password=hunter2 sslmode=bogus\"\n",
        )
        .unwrap();
        let err = c.validate(Mode::Replay).unwrap_err().to_string();
        assert!(err.contains("redshift.connection"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let c =
            parse("[target]\nkind = \"local\"\n[source]\nconnection = \"host=h port=notaport\"\n")
                .unwrap();
        let err = c.validate(Mode::Replay).unwrap_err().to_string();
        assert!(err.contains("source.connection"), "{err}");
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../config.example.toml");
        let c = parse(text).unwrap();
        // As shipped it names no bucket or warehouse; with them (or the local sink) it is valid.
        let err = c.validate(Mode::Replay).unwrap_err().to_string();
        assert!(err.contains("s3.bucket"), "{err}");
        let local = text.replace("kind = \"redshift\"", "kind = \"local\"");
        parse(&local).unwrap().validate(Mode::Replay).unwrap();
    }

    #[test]
    fn sentry_settings_parse_and_unknown_keys_are_named() {
        let c = parse("[sentry]\ndsn = \"https://k@o1.ingest.sentry.io/2\"\n").unwrap();
        assert_eq!(c.sentry.dsn, "https://k@o1.ingest.sentry.io/2");
        let err = parse("[sentry]\nkey = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("key"), "{err}");
    }

    #[test]
    fn metrics_settings_have_defaults_and_bad_ones_are_named() {
        let c = parse("[target]\nkind = \"local\"\n").unwrap();
        assert_eq!(c.metrics.listen, "");
        assert_eq!(
            c.metrics.healthz_max_segment_age_secs,
            DEFAULT_HEALTHZ_MAX_SEGMENT_AGE_SECS
        );
        let ok = "[target]\nkind = \"local\"\n[metrics]\nlisten = \"127.0.0.1:9187\"\n\
                  statsd = \"127.0.0.1:8125\"\nstatsd_tags = [\"instance:a\"]\n";
        parse(ok).unwrap().validate(Mode::Replay).unwrap();
        for (line, key) in [
            ("listen = \"localhost\"", "metrics.listen"),
            ("statsd = \"nowhere:x\"", "metrics.statsd"),
            ("statsd_tags = [\"no-colon\"]", "metrics.statsd_tags"),
            ("source_silent_secs = 0", "metrics.source_silent_secs"),
        ] {
            let c = parse(&format!("[target]\nkind = \"local\"\n[metrics]\n{line}\n")).unwrap();
            let err = c.validate(Mode::Replay).unwrap_err().to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        let cw = parse("[metrics]\ncloudwatch_namespace = \"re_dms\"\n").unwrap();
        assert_eq!(cw.metrics.statsd_address(), DEFAULT_CLOUDWATCH_STATSD);
        assert_eq!(cw.metrics.all_statsd_tags(), ["namespace:re_dms"]);
        let err = parse("[metrics]\nlisen = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn the_slot_settings_have_defaults_and_a_bad_slot_name_is_named() {
        let c = parse("[target]\nkind = \"local\"\n").unwrap();
        assert_eq!(c.source.slot, DEFAULT_SOURCE_SLOT);
        assert!(c.source.create_slot);
        assert_eq!(c.source.ack, Ack::Wal);
        let loaded = parse("[target]\nkind = \"local\"\n[source]\nack = \"loaded\"\n").unwrap();
        assert_eq!(loaded.source.ack, Ack::Loaded);
        loaded.validate(Mode::Replay).unwrap();
        for (text, key) in [
            ("slot = \"Re-DMS\"", "source.slot"),
            ("slot = \"\"", "source.slot"),
            ("status_interval_secs = 0", "source.status_interval_secs"),
            ("ack = \"sometimes\"", "ack"),
        ] {
            let err = parse(&format!("[target]\nkind = \"local\"\n[source]\n{text}\n"))
                .and_then(|c| c.validate(Mode::Replay))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn wrong_type_names_key() {
        let err = parse("[batch]\nmax_memory_bytes = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_memory_bytes"), "{err}");
    }
}
