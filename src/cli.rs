//! Command line (interface.md: "Command line"). Hand-parsed: the surface is small and every
//! error must say exactly which argument is wrong.

use std::path::PathBuf;

pub const USAGE: &str = "\
re_dms — stream a PostgreSQL database into Amazon Redshift

usage:
  re_dms [--config PATH] [--stdin]    run the pipeline: live from the replication slot, or
                                      (with --stdin) replay test_decoding text from standard
                                      input, load everything, exit
  re_dms validate [--config PATH]     check the config and the endpoints it names
  re_dms status [--config PATH] [--json]
                                      local state: WAL segments waiting, known tables
  re_dms verify [--config PATH] [--table S.T ...] [--repair] [--json]
  re_dms resync [--config PATH] S.T
  re_dms --version | --help

The config is --config, else $RE_DMS_CONFIG, else /etc/re_dms/re_dms.toml.
Exit codes: 0 done, 1 runtime failure, 2 usage or config error.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        stdin: bool,
    },
    Validate,
    Status {
        json: bool,
    },
    Verify {
        tables: Vec<String>,
        repair: bool,
        json: bool,
    },
    Resync {
        table: String,
    },
    Version,
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    pub config: Option<PathBuf>,
    pub command: Command,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}\n(run `re_dms --help` for usage)")]
pub struct UsageError(String);

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, UsageError> {
    let mut args = args.into_iter().peekable();
    let sub = match args.peek().map(String::as_str) {
        Some(s @ ("validate" | "status" | "verify" | "resync")) => {
            let s = s.to_string();
            args.next();
            Some(s)
        }
        _ => None,
    };
    let mut config = None;
    let (mut stdin, mut json, mut repair) = (false, false, false);
    let mut tables = Vec::new();
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                return Ok(Cli {
                    config,
                    command: Command::Help,
                })
            }
            "--version" | "-V" => {
                return Ok(Cli {
                    config,
                    command: Command::Version,
                })
            }
            "--config" => {
                let v = args
                    .next()
                    .ok_or_else(|| UsageError("--config needs a path".into()))?;
                config = Some(PathBuf::from(v));
            }
            s if s.starts_with("--config=") => {
                config = Some(PathBuf::from(&s["--config=".len()..]))
            }
            "--stdin" if sub.is_none() => stdin = true,
            "--json" if matches!(sub.as_deref(), Some("status" | "verify")) => json = true,
            "--repair" if sub.as_deref() == Some("verify") => repair = true,
            "--table" if sub.as_deref() == Some("verify") => {
                tables.push(
                    args.next()
                        .ok_or_else(|| UsageError("--table needs schema.table".into()))?,
                );
            }
            s if s.starts_with('-') => return Err(UsageError(format!("unknown option {s:?}"))),
            _ => positional.push(arg),
        }
    }
    let command = match sub.as_deref() {
        None => Command::Run { stdin },
        Some("validate") => Command::Validate,
        Some("status") => Command::Status { json },
        Some("verify") => Command::Verify {
            tables,
            repair,
            json,
        },
        Some(_) => {
            let table = positional
                .pop()
                .ok_or_else(|| UsageError("resync needs a table: re_dms resync S.T".into()))?;
            return if positional.is_empty() {
                Ok(Cli {
                    config,
                    command: Command::Resync { table },
                })
            } else {
                Err(UsageError(format!(
                    "unexpected argument {:?}",
                    positional[0]
                )))
            };
        }
    };
    if let Some(p) = positional.first() {
        return Err(UsageError(format!("unexpected argument {p:?}")));
    }
    Ok(Cli { config, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn run_forms() {
        assert_eq!(p(&[]).unwrap().command, Command::Run { stdin: false });
        let c = p(&["--config", "x.toml", "--stdin"]).unwrap();
        assert_eq!(c.command, Command::Run { stdin: true });
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        assert_eq!(
            p(&["--config=y.toml"]).unwrap().config,
            Some(PathBuf::from("y.toml"))
        );
    }

    #[test]
    fn subcommands() {
        assert_eq!(p(&["validate"]).unwrap().command, Command::Validate);
        assert_eq!(
            p(&["status", "--json"]).unwrap().command,
            Command::Status { json: true }
        );
        assert_eq!(
            p(&["verify", "--table", "a.b", "--repair"])
                .unwrap()
                .command,
            Command::Verify {
                tables: vec!["a.b".into()],
                repair: true,
                json: false
            }
        );
        assert_eq!(
            p(&["resync", "a.b"]).unwrap().command,
            Command::Resync {
                table: "a.b".into()
            }
        );
        assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(p(&["--bogus"]).unwrap_err().to_string().contains("--bogus"));
        assert!(p(&["--config"])
            .unwrap_err()
            .to_string()
            .contains("--config"));
        assert!(p(&["validate", "--stdin"])
            .unwrap_err()
            .to_string()
            .contains("--stdin"));
        assert!(p(&["resync"]).is_err());
        assert!(p(&["extra"]).unwrap_err().to_string().contains("extra"));
    }
}
