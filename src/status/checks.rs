//! `re_dms validate`'s checks of the live source, over one ordinary connection: the server is
//! reachable, `wal_level` is `logical`, the role may replicate, the slot exists (test_decoding,
//! this database, not lost) or can be created, and a WAL sender is free for re_dms.

use crate::config::Config;
use crate::error_chain;

/// How long the source checks may take together.
pub const SOURCE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// What the source says about replication, in one query (binds: `$1` the slot name).
pub const SOURCE_CHECK_SQL: &str = "SELECT version(), current_setting('wal_level'), \
     current_setting('max_wal_senders')::int, \
     (SELECT count(*) FROM pg_stat_replication)::int, \
     current_setting('max_replication_slots')::int, \
     (SELECT count(*) FROM pg_replication_slots)::int, \
     (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), \
     current_user::text, current_database()::text, \
     (SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1), \
     (SELECT database::text FROM pg_replication_slots WHERE slot_name = $1), \
     (SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1), \
     (SELECT active FROM pg_replication_slots WHERE slot_name = $1)";

/// One line per check: `(name, Ok(detail) | Err(why))`.
pub type Checks = Vec<(String, Result<String, String>)>;

/// The source checks (see the module docs); a source that cannot be reached is one failed
/// `source` line.
pub fn source_checks(config: &Config) -> Checks {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![("source".into(), Err(e.to_string()))],
    };
    rt.block_on(async {
        match tokio::time::timeout(SOURCE_CHECK_TIMEOUT, read(config)).await {
            Ok(Ok(checks)) => checks,
            Ok(Err(why)) => vec![("source".into(), Err(why))],
            Err(_) => vec![(
                "source".into(),
                Err(format!("no answer within {SOURCE_CHECK_TIMEOUT:?}")),
            )],
        }
    })
}

async fn read(config: &Config) -> Result<Checks, String> {
    let c = crate::connection::connect(&config.source.connection)
        .await
        .map_err(|e| error_chain(&e))?;
    let r = c
        .query_one(SOURCE_CHECK_SQL, &[&config.source.slot])
        .await
        .map_err(|e| crate::connection::pg_detail(&e))?;
    let get_i = |i: usize| r.get::<_, i32>(i);
    let version: String = r.get(0);
    let mut checks: Checks = vec![(
        "source".into(),
        Ok(version.split(" on ").next().unwrap_or(&version).to_string()),
    )];
    let wal_level: String = r.get(1);
    checks.push((
        "source.wal_level".into(),
        if wal_level == "logical" {
            Ok("logical".into())
        } else {
            Err(format!("{wal_level}: set wal_level = logical in postgresql.conf (or the RDS parameter group rds.logical_replication = 1) and restart the server"))
        },
    ));
    let (user, database): (String, String) = (r.get(7), r.get(8));
    checks.push((
        "source.replication_privilege".into(),
        if r.get::<_, Option<bool>>(6).unwrap_or(false) {
            Ok(format!("role {user} may replicate"))
        } else {
            Err(format!("role {user} lacks REPLICATION: ALTER ROLE {user} REPLICATION (on RDS: GRANT rds_replication TO {user})"))
        },
    ));
    checks.push(("source.slot".into(), slot_check(config, &r, &database)));
    let (senders, in_use) = (get_i(2), get_i(3));
    // The slot's own sender is in use while re_dms runs: count it as re_dms's.
    let ours = i32::from(r.get::<_, Option<bool>>(12).unwrap_or(false));
    checks.push((
        "source.max_wal_senders".into(),
        if in_use - ours < senders {
            Ok(format!("{in_use} of {senders} in use"))
        } else {
            Err(format!("all {senders} in use: raise max_wal_senders"))
        },
    ));
    Ok(checks)
}

fn slot_check(config: &Config, r: &tokio_postgres::Row, database: &str) -> Result<String, String> {
    let slot = &config.source.slot;
    let plugin: Option<String> = r.get(9);
    let Some(plugin) = plugin else {
        let (max, used) = (r.get::<_, i32>(4), r.get::<_, i32>(5));
        return match (config.source.create_slot, used < max) {
            (false, _) => Err(format!(
                "slot {slot} does not exist and source.create_slot = false: create it with \
                 SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')"
            )),
            (true, false) => Err(format!(
                "slot {slot} does not exist and all {max} replication slots are used: raise \
                 max_replication_slots or drop an unused slot"
            )),
            (true, true) => Ok(format!(
                "slot {slot} does not exist yet: created at the first start ({used} of {max} slots used)"
            )),
        };
    };
    let slot_db: Option<String> = r.get(10);
    let wal_status: Option<String> = r.get(11);
    let active = r.get::<_, Option<bool>>(12).unwrap_or(false);
    if plugin != "test_decoding" {
        return Err(format!("slot {slot} uses {plugin}, not test_decoding"));
    }
    if slot_db.as_deref() != Some(database) {
        return Err(format!(
            "slot {slot} is for database {}, not {database}",
            slot_db.unwrap_or_default()
        ));
    }
    if wal_status.as_deref() == Some("lost") {
        return Err(format!(
            "slot {slot} is lost (the server removed WAL it still needed): changes were skipped; \
             drop it, re-create it and reload the tables"
        ));
    }
    Ok(format!(
        "slot {slot} exists (test_decoding, database {database}, {}, wal_status {})",
        if active { "active" } else { "inactive" },
        wal_status.unwrap_or_else(|| "-".into())
    ))
}
