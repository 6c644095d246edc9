//! `re_dms validate` and `re_dms status`: what an operator checks before and while running.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Mode, TargetKind};
use crate::error_chain;
use crate::wal::load_state;
use crate::wal::segment::parse_segment_file_name;

/// Prints one line per check; exit 0 when all pass, 1 otherwise (2 for a config error).
pub fn validate(config: &Config) -> ExitCode {
    let mut ok = true;
    let mut check = |name: &str, r: Result<String, String>| match r {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(why) => {
            ok = false;
            println!("FAIL  {name}: {why}");
        }
    };
    let mode = if config.source.connection.is_empty() {
        Mode::Replay
    } else {
        Mode::Live
    };
    if let Err(e) = config.validate(mode) {
        println!("FAIL  config: {e}");
        return ExitCode::from(2);
    }
    check("config", Ok("parsed and checked".into()));
    check("wal.directory", writable_dir(&config.wal.directory));
    if !config.source.connection.trim().is_empty() {
        check("source", source_check(config));
    }
    if config.target.kind == TargetKind::Local {
        check("target.directory", writable_dir(&config.target.directory));
    } else {
        for (name, result) in crate::sink::preflight(config) {
            check(name, result);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The source answers and its catalog can be read (what the Redshift target takes typmods,
/// partition roots and keys from).
fn source_check(config: &Config) -> Result<String, String> {
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let query = async {
            let c = crate::connection::connect(&config.source.connection)
                .await
                .map_err(|e| error_chain(&e))?;
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
        };
        tokio::time::timeout(SOURCE_STATUS_TIMEOUT, query)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {SOURCE_STATUS_TIMEOUT:?}")))
    })
}

/// Local state: WAL segments waiting for the target, and the tables known so far; with a
/// source connection, the slot's position and lag.
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
    if json {
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
