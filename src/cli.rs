//! The command line (clap, derive): `re_dms [--stdin]` runs the pipeline; subcommands check and
//! inspect. Every subcommand has its own `--help`. Exit codes: 0 done, 1 runtime failure, 2 usage
//! or config error (clap's own exit code for usage errors is 2 as well).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{CONFIG_ENV, DEFAULT_CONFIG_PATH};

#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "re_dms",
    version,
    about = "Stream a PostgreSQL database into Amazon Redshift, continuously, without losing a row",
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 done, 1 runtime failure, 2 usage or config error."
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = CONFIG_ENV,
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,

    /// Replay test_decoding text (what `pg_recvlogical -f -` prints) from standard input through
    /// the pipeline, load everything, exit. Without it re_dms streams from the replication slot.
    #[arg(long)]
    pub stdin: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check the config and the endpoints it names (one line per check).
    Validate {
        /// Print JSON: an array of `{check, ok, warning, detail}`.
        #[arg(long)]
        json: bool,
        /// Before a start (systemd's ExecStartPre): an endpoint that cannot be reached now
        /// warns instead of failing (the daemon retries); everything else still fails.
        #[arg(long)]
        startup: bool,
    },
    /// Local state: WAL segments waiting, known tables.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare source and warehouse tables (not available yet).
    Verify {
        /// A table to verify (repeatable); all tables when absent.
        #[arg(long = "table", value_name = "S.T")]
        tables: Vec<String>,
        /// Repair the differences found.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reload one table from the source (not available yet).
    Resync {
        /// The table, `schema.table`.
        #[arg(value_name = "S.T")]
        table: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn p(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("re_dms").chain(args.iter().copied()))
    }

    #[test]
    fn run_forms() {
        let c = p(&["--config", "x.toml", "--stdin"]).unwrap();
        assert!(c.stdin && c.command.is_none());
        assert_eq!(c.config, PathBuf::from("x.toml"));
        assert_eq!(
            p(&["--config=y.toml"]).unwrap().config,
            PathBuf::from("y.toml")
        );
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            p(&["validate"]).unwrap().command,
            Some(Command::Validate {
                json: false,
                startup: false
            })
        );
        assert_eq!(
            p(&["status", "--json", "--config", "c.toml"])
                .unwrap()
                .command,
            Some(Command::Status { json: true })
        );
        assert_eq!(
            p(&["verify", "--table", "a.b", "--repair"])
                .unwrap()
                .command,
            Some(Command::Verify {
                tables: vec!["a.b".into()],
                repair: true,
                json: false
            })
        );
        assert_eq!(
            p(&["resync", "a.b"]).unwrap().command,
            Some(Command::Resync {
                table: "a.b".into()
            })
        );
        assert_eq!(
            p(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
        assert_eq!(
            p(&["status", "--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn errors_name_the_argument_and_exit_2() {
        for (args, named) in [
            (&["--bogus"][..], "--bogus"),
            (&["--config"][..], "--config"),
            (&["validate", "--stdin"][..], "--stdin"),
            (&["extra"][..], "extra"),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.to_string().contains(named), "{args:?}: {e}");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        assert!(p(&["resync"]).is_err());
    }
}
