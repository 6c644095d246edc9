//! `re_dms validate` and `re_dms status`: what an operator checks before and while running.
//! `checks`: validate's checks of the live source.

pub mod checks;

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Mode, TargetKind};
use crate::error_chain;
use crate::wal::load_state;
use crate::wal::segment::parse_segment_file_name;

/// Checks whose failure can be an endpoint that is down for now (the source, S3, Redshift),
/// which the daemon waits out with retries: with `--startup` they warn instead of failing.
const REACHABILITY_CHECKS: &[&str] = &["source", "source.catalog", "s3", "redshift"];

/// Prints one line per check (or, with `json`, one JSON array of `{check, ok, detail}`); exit
/// 0 when all pass, 1 otherwise (2 for a config error). With `startup` (systemd's
/// `ExecStartPre`), an endpoint that cannot be reached is a `WARN` line, not a failure: a
/// Redshift maintenance window must not keep the daemon from starting (it retries), while a
/// wrong `wal_level`, a missing privilege or a lost slot still does.
pub fn validate(config: &Config, json: bool, startup: bool) -> ExitCode {
    let mode = if config.source.connection.is_empty() {
        Mode::Replay
    } else {
        Mode::Live
    };
    let mut checks: checks::Checks = Vec::new();
    if let Err(e) = config.validate(mode) {
        checks.push(("config".into(), Err(e.to_string())));
        print_checks(&checks, json, &|_| false);
        return ExitCode::from(2);
    }
    checks.push(("config".into(), Ok("parsed and checked".into())));
    checks.push(("wal.directory".into(), writable_dir(&config.wal.directory)));
    if !config.source.connection.trim().is_empty() {
        checks.extend(checks::source_checks(config));
        checks.push(("source.catalog".into(), catalog_check(config)));
    }
    if config.target.kind == TargetKind::Local {
        checks.push((
            "target.directory".into(),
            writable_dir(&config.target.directory),
        ));
    } else {
        for (name, result) in crate::sink::preflight(config) {
            checks.push((name.to_string(), result));
        }
    }
    let waived = |name: &str| startup && REACHABILITY_CHECKS.contains(&name);
    print_checks(&checks, json, &waived);
    if checks.iter().all(|(name, r)| r.is_ok() || waived(name)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_checks(checks: &checks::Checks, json: bool, waived: &dyn Fn(&str) -> bool) {
    if json {
        let v: Vec<_> = checks
            .iter()
            .map(|(name, r)| {
                let (ok, detail) = match r {
                    Ok(d) => (true, d),
                    Err(d) => (false, d),
                };
                let warn = !ok && waived(name);
                serde_json::json!({"check": name, "ok": ok, "warning": warn, "detail": detail})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    for (name, r) in checks {
        match r {
            Ok(detail) => println!("ok    {name}: {detail}"),
            Err(why) if waived(name) => {
                println!("WARN  {name}: {why} (not reachable now: re_dms starts and retries)")
            }
            Err(why) => println!("FAIL  {name}: {why}"),
        }
    }
}

/// The source's catalog can be read (what the Redshift target takes typmods, partition roots
/// and keys from).
fn catalog_check(config: &Config) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let c = rt
        .block_on(crate::source::catalog::load(&config.source.connection))
        .map_err(|e| error_chain(&e))?;
    let partitions = c.tables.values().filter(|t| t.parent.is_some()).count();
    Ok(format!(
        "catalog read: {} tables ({partitions} partitions)",
        c.tables.len()
    ))
}

fn writable_dir(dir: &std::path::Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join(".re_dms_probe");
    std::fs::write(&probe, b"").map_err(|e| format!("{}: not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(format!("{} is writable", dir.display()))
}

/// How long `status` waits for the source before it reports it unreachable.
pub const SOURCE_STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The replication slot as the source shows it, with the lag behind the server's WAL.
#[derive(Debug, serde::Serialize)]
pub struct SlotStatus {
    pub slot: String,
    pub active: bool,
    pub wal_status: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    pub source_wal_lsn: String,
    /// Bytes of source WAL after the slot's confirmed position.
    pub lag_bytes: Option<i64>,
}

/// The slot's state (`None`: no such slot), or why the source could not tell.
fn slot_status(config: &Config) -> Result<Option<SlotStatus>, String> {
    ask(&config.source.connection, |c| async move {
        let row = c
            .query_opt(
                "SELECT active, wal_status, confirmed_flush_lsn::text, \
                 pg_current_wal_lsn()::text, \
                 pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                &[&config.source.slot],
            )
            .await
            .map_err(|e| crate::connection::pg_detail(&e))?;
        Ok(row.map(|r| SlotStatus {
            slot: config.source.slot.clone(),
            active: r.get(0),
            wal_status: r.get(1),
            confirmed_flush_lsn: r.get(2),
            source_wal_lsn: r.get(3),
            lag_bytes: r.get(4),
        }))
    })
}

/// Connects to `conn` and runs `query` on a runtime of its own, all within
/// [`SOURCE_STATUS_TIMEOUT`]; any failure as one line.
fn ask<T, F, Fut>(conn: &str, query: F) -> Result<T, String>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let work = async {
            let c = crate::connection::connect(conn)
                .await
                .map_err(|e| error_chain(&e))?;
            query(c).await
        };
        tokio::time::timeout(SOURCE_STATUS_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {SOURCE_STATUS_TIMEOUT:?}")))
    })
}

/// One target table's last load by this WAL directory, as the ledger records it.
#[derive(Debug, serde::Serialize)]
pub struct TableLoaded {
    pub target_table: String,
    pub segment: i64,
    pub last_lsn: String,
    pub applied_at: String,
}

/// Each target table's newest ledger row of this lineage (binds: `$1` the lineage).
pub const LAST_LOADED_SQL: &str = "SELECT target_table::text, segment, last_lsn::text, \
     applied_at::text FROM (SELECT target_table, segment, last_lsn, applied_at, ROW_NUMBER() \
     OVER (PARTITION BY target_table ORDER BY segment DESC) AS n FROM re_dms.applied \
     WHERE lineage = $1) t WHERE n = 1 ORDER BY 1";

/// The ledger's last load per target table for `lineage`, or why Redshift could not tell.
fn last_loaded(config: &Config, lineage: &str) -> Result<Vec<TableLoaded>, String> {
    ask(&config.redshift.connection, |c| async move {
        let rows = c
            .query(LAST_LOADED_SQL, &[&lineage])
            .await
            .map_err(|e| crate::connection::pg_detail(&e))?;
        Ok(rows
            .iter()
            .map(|r| TableLoaded {
                target_table: r.get(0),
                segment: r.get(1),
                last_lsn: r.get::<_, Option<String>>(2).unwrap_or_default(),
                applied_at: r.get::<_, Option<String>>(3).unwrap_or_default(),
            })
            .collect())
    })
}

/// Local state: WAL segments waiting for the target, and the tables known so far; with a
/// source connection, the slot's position and lag; with Redshift, each target table's last
/// load from the ledger.
pub fn status(config: &Config, json: bool) -> ExitCode {
    let dir = &config.wal.directory;
    let mut segments = Vec::new();
    let mut bytes = 0u64;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Some(id) = e.file_name().to_str().and_then(parse_segment_file_name) {
                segments.push(id);
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    segments.sort_unstable();
    let state = load_state(dir).unwrap_or_default();
    let lineage = state.lineage.map(|l| l.to_string()).unwrap_or_default();
    let schema = state.schema;
    let slot = (!config.source.connection.trim().is_empty()).then(|| slot_status(config));
    let loaded = (config.target.kind == TargetKind::Redshift
        && !config.redshift.connection.trim().is_empty()
        && !lineage.is_empty())
    .then(|| last_loaded(config, &lineage));
    if json {
        let (loaded_json, loaded_error) = match &loaded {
            Some(Ok(t)) => (serde_json::json!(t), None),
            Some(Err(e)) => (serde_json::Value::Null, Some(e.clone())),
            None => (serde_json::Value::Null, None),
        };
        let (slot_json, slot_error) = match &slot {
            Some(Ok(s)) => (serde_json::json!(s), None),
            Some(Err(e)) => (serde_json::Value::Null, Some(e.clone())),
            None => (serde_json::Value::Null, None),
        };
        let v = serde_json::json!({
            "wal_directory": dir,
            "wal_lineage": lineage,
            "wal_last_commit_lsn": state.last_commit_lsn.to_string(),
            "slot": slot_json,
            "slot_error": slot_error,
            "loaded": loaded_json,
            "loaded_error": loaded_error,
            "segments_waiting": segments,
            "wal_bytes": bytes,
            "tables": schema.tables.values().map(|t| serde_json::json!({
                "table": t.qualified(), "columns": t.columns.len(), "key": t.key,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!("wal directory:     {}", dir.display());
        println!("wal lineage:       {lineage}");
        println!(
            "segments waiting:  {} ({} bytes){}",
            segments.len(),
            bytes,
            match (segments.first(), segments.last()) {
                (Some(a), Some(b)) => format!(", {a}..{b}"),
                _ => String::new(),
            }
        );
        println!("wal last commit:   {}", state.last_commit_lsn);
        print_slot(config, slot.as_ref());
        print_loaded(loaded.as_ref());
        println!("tables known:      {}", schema.tables.len());
        for t in schema.tables.values() {
            println!(
                "  {:<40} {} columns, key {:?}",
                t.qualified(),
                t.columns.len(),
                t.key.as_deref().unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

fn print_slot(config: &Config, slot: Option<&Result<Option<SlotStatus>, String>>) {
    let name = &config.source.slot;
    match slot {
        None => {}
        Some(Err(e)) => println!("slot {name}:  source unreachable: {e}"),
        Some(Ok(None)) => println!("slot {name}:  does not exist (yet)"),
        Some(Ok(Some(s))) => {
            println!(
                "slot {name}:  {}, wal_status {}",
                if s.active { "active" } else { "inactive" },
                s.wal_status.as_deref().unwrap_or("-")
            );
            println!(
                "  confirmed {} / source WAL {}: {} bytes behind",
                s.confirmed_flush_lsn.as_deref().unwrap_or("-"),
                s.source_wal_lsn,
                s.lag_bytes.map_or("-".to_string(), |b| b.to_string())
            );
        }
    }
}

fn print_loaded(loaded: Option<&Result<Vec<TableLoaded>, String>>) {
    match loaded {
        None => {}
        Some(Err(e)) => println!("ledger:            Redshift unreachable: {e}"),
        Some(Ok(tables)) => {
            println!("loaded (ledger):   {} tables", tables.len());
            for t in tables {
                println!(
                    "  {:<40} segment {}, lsn {}, at {}",
                    t.target_table, t.segment, t.last_lsn, t.applied_at
                );
            }
        }
    }
}
