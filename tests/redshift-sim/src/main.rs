//! redshift-sim: a PostgreSQL wire-protocol relay that behaves like Amazon Redshift in front of a
//! local PostgreSQL database, for re_dms's tests. See README section "Testing" and `--help`.

mod copycmd;
mod copyrun;
mod csvload;
mod ddl;
mod lexer;
mod loaderr;
mod rewrite;
mod s3;
mod session;
mod wire;

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const USAGE: &str = "usage: redshift-sim --listen 127.0.0.1:PORT \
--backend \"host=127.0.0.1 port=P user=postgres dbname=warehouse\" \
--s3-endpoint http://127.0.0.1:PORT [--region us-east-1] [--statement-log FILE] \
[--maintenance-file PATH]";

pub const MAINTENANCE_DROPPED: &str =
    "terminating connection due to administrator command (redshift-sim: cluster maintenance)";
pub const MAINTENANCE_REFUSED: &str =
    "the database system is not accepting connections (redshift-sim: cluster maintenance)";

/// How often the maintenance file is checked.
const MAINTENANCE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
enum MainError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("--backend: {0}")]
    Backend(String),
    #[error("--statement-log {0}: {1}")]
    StatementLog(PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

struct Args {
    listen: String,
    backend: String,
    s3_endpoint: String,
    region: String,
    statement_log: Option<PathBuf>,
    maintenance_file: Option<PathBuf>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, MainError> {
    let (mut listen, mut backend, mut s3_endpoint) = (None, None, None);
    let mut region = "us-east-1".to_string();
    let (mut statement_log, mut maintenance_file) = (None, None);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(MainError::Usage(String::new()));
        }
        let value = it
            .next()
            .ok_or_else(|| MainError::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--backend" => backend = Some(value),
            "--s3-endpoint" => s3_endpoint = Some(value),
            "--region" => region = value,
            "--statement-log" => statement_log = Some(PathBuf::from(value)),
            "--maintenance-file" => maintenance_file = Some(PathBuf::from(value)),
            other => return Err(MainError::Usage(format!("unknown argument {other}"))),
        }
    }
    Ok(Args {
        listen: listen.ok_or_else(|| MainError::Usage("--listen is required".into()))?,
        backend: backend.ok_or_else(|| MainError::Usage("--backend is required".into()))?,
        s3_endpoint: s3_endpoint
            .ok_or_else(|| MainError::Usage("--s3-endpoint is required".into()))?,
        region,
        statement_log,
        maintenance_file,
    })
}

/// What every session shares.
pub struct Shared {
    pub backend_host: String,
    pub backend_port: u16,
    pub default_user: String,
    pub default_db: String,
    pub backend_config: tokio_postgres::Config,
    pub s3: s3::S3Settings,
    statement_log: Option<Mutex<std::fs::File>>,
    pub maintenance: watch::Receiver<bool>,
}

impl Shared {
    pub fn backend_addr(&self) -> (&str, u16) {
        (self.backend_host.as_str(), self.backend_port)
    }

    /// Append one statement, on one line, to the statement log.
    pub fn log_statement(&self, sql: &str) {
        let Some(log) = &self.statement_log else {
            return;
        };
        let mut line: String = sql
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        line.push('\n');
        if let Ok(mut f) = log.lock() {
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!("statement log: {e}");
            }
        }
    }
}

fn backend_target(
    conninfo: &str,
) -> Result<(String, u16, String, String, tokio_postgres::Config), MainError> {
    let conf = tokio_postgres::Config::from_str(conninfo)
        .map_err(|e| MainError::Backend(e.to_string()))?;
    let host = match conf.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(_) => return Err(MainError::Backend("only TCP hosts are supported".into())),
        None => "127.0.0.1".into(),
    };
    let port = conf.get_ports().first().copied().unwrap_or(5432);
    let user = conf.get_user().unwrap_or("postgres").to_string();
    let db = conf.get_dbname().unwrap_or(&user).to_string();
    Ok((host, port, user, db, conf))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run() {
        eprintln!("redshift-sim: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), MainError> {
    let args = parse_args(std::env::args().skip(1))?;
    let (backend_host, backend_port, default_user, default_db, backend_config) =
        backend_target(&args.backend)?;
    let statement_log = match &args.statement_log {
        None => None,
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| MainError::StatementLog(p.clone(), e))?,
        )),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(MainError::Runtime)?;
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        if let Some(path) = args.maintenance_file.clone() {
            tokio::spawn(async move {
                loop {
                    let on = path.exists();
                    tx.send_if_modified(|v| std::mem::replace(v, on) != on);
                    tokio::time::sleep(MAINTENANCE_POLL).await;
                }
            });
        }
        let shared = Arc::new(Shared {
            backend_host,
            backend_port,
            default_user,
            default_db,
            backend_config,
            s3: s3::S3Settings {
                endpoint: args.s3_endpoint.clone(),
                region: args.region.clone(),
            },
            statement_log,
            maintenance: rx,
        });
        let listener = TcpListener::bind(&args.listen)
            .await
            .map_err(|e| MainError::Listen(args.listen.clone(), e))?;
        tracing::info!(
            listen = %args.listen,
            backend = %format!("{}:{}", shared.backend_host, shared.backend_port),
            s3 = %args.s3_endpoint,
            "redshift-sim ready"
        );
        loop {
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                if *shared.maintenance.borrow() {
                    refuse(sock).await;
                    return;
                }
                if let Err(e) = session::serve(sock, shared).await {
                    tracing::debug!(%peer, "session ended: {e}");
                }
            });
        }
    })
}

/// During maintenance: answer an SSL request, then refuse like a rebooting cluster.
async fn refuse(sock: TcpStream) {
    let work = async {
        let (r, mut w) = sock.into_split();
        let mut r = wire::FrameReader::new(r);
        while let Ok(Some(p)) = r.startup().await {
            let code = i32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            if code == wire::SSL_REQUEST || code == wire::GSSENC_REQUEST {
                if w.write_all(b"N").await.is_err() {
                    return;
                }
                continue;
            }
            break;
        }
        let mut out = bytes::BytesMut::new();
        wire::error_response(&mut out, "FATAL", "57P03", MAINTENANCE_REFUSED, None);
        let _ = w.write_all(&out).await;
        let _ = w.shutdown().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), work).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Result<Args, MainError> {
        parse_args(s.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_arguments() {
        let a = args(&[
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "host=127.0.0.1 port=2 user=u dbname=w",
            "--s3-endpoint",
            "http://127.0.0.1:3",
            "--maintenance-file",
            "/tmp/m",
        ])
        .unwrap();
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.maintenance_file, Some(PathBuf::from("/tmp/m")));
        let (h, p, u, d, _) = backend_target(&a.backend).unwrap();
        assert_eq!(
            (h.as_str(), p, u.as_str(), d.as_str()),
            ("127.0.0.1", 2, "u", "w")
        );
        assert!(args(&["--listen"]).is_err());
        assert!(args(&["--bogus", "x"]).is_err());
        assert!(args(&["--listen", "x"]).is_err());
    }
}
