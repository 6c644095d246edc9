//! `re_dms`: parse the command line, load the config, run. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use re_dms::cli::{Cli, Command};
use re_dms::config::{Config, LogFormat, Mode};
use re_dms::service::NotRestarted;
use re_dms::shutdown::Shutdown;
use re_dms::{error_chain, pipeline, status};

fn main() -> ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = re_dms::failpoints::setup();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // Usage errors exit 2; --help and --version print and exit 0.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("re_dms: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log.format);
    // Sentry (when a DSN is set): panics from here on, fatal errors, stopped tables.
    let _report = re_dms::report::init(&config.sentry);
    match cli.command {
        None => {
            let mode = if cli.stdin { Mode::Replay } else { Mode::Live };
            if let Err(e) = config.validate(mode) {
                eprintln!("re_dms: {e}");
                return ExitCode::from(2);
            }
            if cli.stdin {
                run_replay(&config)
            } else {
                run_live(&config)
            }
        }
        Some(Command::Validate { json, startup }) => status::validate(&config, json, startup),
        Some(Command::Status { json }) => status::status(&config, json),
        Some(Command::Verify { .. } | Command::Resync { .. }) => {
            eprintln!("re_dms: verify and resync are not available in this build yet");
            ExitCode::from(1)
        }
    }
}

/// Runs `run` on a runtime of its own, with SIGTERM/SIGINT requesting `stop` ([`Shutdown::request`]).
fn with_runtime<F, Fut>(
    stop: &Shutdown,
    run: F,
) -> Result<Result<pipeline::Summary, pipeline::PipelineError>, ExitCode>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<pipeline::Summary, pipeline::PipelineError>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("re_dms: cannot start the runtime: {e}");
            return Err(ExitCode::from(1));
        }
    };
    let result = runtime.block_on(async {
        let s = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: finishing what is in flight");
            re_dms::service::stopping();
            s.request();
        });
        run(stop.clone()).await
    });
    runtime.shutdown_background();
    Ok(result)
}

/// The daemon: until a signal (exit 0) or a fatal error (exit 1, one line saying why); after an
/// error only a new start recovers from, it starts again in this process (`exec_again`).
fn run_live(config: &Config) -> ExitCode {
    re_dms::service::watch_stop_signals();
    let stop = Shutdown::new();
    let result = match with_runtime(&stop, |stop| pipeline::run_live(config, stop)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match result {
        Ok(pipeline::Summary {
            restart_in_place: Some(n),
            ..
        }) => {
            // A signal after the wait: stop instead (recovery runs at the next start).
            if stop.is_requested() {
                return ExitCode::SUCCESS;
            }
            match re_dms::service::exec_again(n) {
                NotRestarted::StopSignalled => ExitCode::SUCCESS,
                NotRestarted::Failed(error) => {
                    eprintln!("re_dms: restarting in place failed: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Ok(summary) => {
            tracing::info!(
                segments_loaded = summary.segments_loaded,
                segments_left = summary.segments_left,
                "stopped; segments not loaded yet stay in the WAL and load at the next start"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let error = error_chain(&e);
            re_dms::report::fatal(&error);
            eprintln!("re_dms: {error}");
            ExitCode::from(1)
        }
    }
}

fn run_replay(config: &Config) -> ExitCode {
    let stop = Shutdown::new();
    let result = match with_runtime(&stop, |stop| {
        pipeline::run_replay(config, std::io::stdin(), stop)
    }) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match result {
        Ok(pipeline::Summary {
            interrupted: Some(at),
            ..
        }) => {
            eprintln!("re_dms: {}", interrupted_message(at));
            ExitCode::from(1)
        }
        Ok(summary) if summary.segments_left > 0 => {
            eprintln!(
                "re_dms: stopped by a signal after reading the whole input; {} segment(s) not \
                 loaded yet stay in the WAL and load at the next start (e.g. `re_dms --stdin \
                 < /dev/null`)",
                summary.segments_left
            );
            ExitCode::from(1)
        }
        Ok(summary) => {
            tracing::info!(segments = summary.segments_loaded, "replay finished");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("re_dms: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// What to tell the user when a stop request came before the end of `--stdin`.
fn interrupted_message(at: re_dms::wal::ingest::Interrupted) -> String {
    let resume = at.durable_through_line + 1;
    format!(
        "stopped by a signal before the end of the input, after reading {} line(s); the \
         transactions through line {} are in the WAL (loaded now, or at the next start). To \
         resume, run again on the input from line {resume} on, e.g. `tail -n +{resume} INPUT | \
         re_dms --stdin`; running again on the whole input is also safe (loading a transaction \
         twice changes nothing)",
        at.lines_read, at.durable_through_line
    )
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No listener: in live mode the handler's record (`service::watch_stop_signals`) is
        // all there is to look at; otherwise this never ends, as before.
        let mut every = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            every.tick().await;
            if re_dms::service::stop_signalled() {
                return;
            }
        }
    };
    // A signal after `service::watch_stop_signals` and before the listeners above existed was
    // only recorded there (its default action, ending the process, no longer applies).
    if re_dms::service::stop_signalled() {
        return;
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Dependencies whose debug and trace lines carry SQL text (a COPY's credentials), HTTP headers
/// or signing material: never more verbose than info, whatever `RE_DMS_LOG` asks for (these
/// directives come last and are more specific than a bare level).
const QUIET_DEPENDENCIES: &str = "tokio_postgres=info,postgres_protocol=info,aws_sigv4=info,\
    aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_smithy_http_client=info,\
    aws_smithy_types=info,aws_config=info,aws_credential_types=info,aws_sdk_s3=info,\
    aws_sdk_sts=info,aws_sdk_sso=info,hyper=info,hyper_util=info,h2=info,rustls=info";

fn init_logging(format: LogFormat) {
    let wanted = std::env::var("RE_DMS_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{wanted},{QUIET_DEPENDENCIES}"))
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("info,{QUIET_DEPENDENCIES}"))
        });
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
