//! The cost of two stages of `re_dms --stdin` on their own, for `benches/floor.sh`: what the
//! replay could not go below if every other step cost nothing.
//!
//! ```text
//! stage_floors parse < capture.txt      # read every message as --stdin's input thread does
//! stage_floors deflate FILE             # libdeflate gzip members of 128 KiB pieces, as the CSV stage does
//! ```
//!
//! `parse` runs `--stdin`'s own input stage on standard input as the replay has it (its thread
//! reads and frames every message, walks each common row change without a tree and parses the
//! rest; the chunks go back to it to be freed, as they do from ingest), and takes nothing else
//! from the chunks than a count of the messages and row changes, which it prints. `deflate`
//! reads FILE, then compresses it in pieces of the CSV stage's size at re_dms's gzip level on
//! one thread and prints the bytes in and out and the wall and CPU seconds of the compression
//! alone (the read left out: the CSV stage compresses text it holds
//! in memory).

use std::process::ExitCode;

use re_dms::csv::{GZIP_LEVEL, PIECE_BYTES};
use re_dms::shutdown::Shutdown;
use re_dms::source::decoding::{Body, Framer, Message};
use re_dms::source::filter::TableFilter;
use re_dms::wal::digest::Digester;
use re_dms::wal::ingest::Input;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["parse"] => parse(),
        ["deflate", file] => deflate(file),
        _ => Err("usage: stage_floors parse < CAPTURE | stage_floors deflate FILE".into()),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stage_floors: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Messages and row changes on standard input, through `--stdin`'s input stage.
fn parse() -> Result<String, String> {
    let framer = Framer::new().with_digest(Box::new(Digester::new(TableFilter::default())));
    let (_input, chunks) = re_dms::source::stdin::spawn(std::io::stdin(), framer, Shutdown::new());
    let (mut messages, mut changes) = (0u64, 0u64);
    for input in chunks {
        let chunk = match input {
            Input::Text(chunk) => chunk,
            Input::Eof => return Ok(format!("messages {messages} changes {changes}")),
            Input::Failed(e) => return Err(format!("reading standard input: {e}")),
            Input::Sourced(_) => return Err("unexpected replication input".into()),
        };
        for frame in chunk.frames() {
            std::hint::black_box(&frame.body);
            messages += 1;
            if matches!(
                frame.body,
                Body::Digested(_)
                    | Body::Parsed(
                        Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. }
                    )
            ) {
                changes += 1;
            }
        }
        if let Some(e) = chunk.error() {
            return Err(e.to_string());
        }
    }
    Err("the input stage ended without the end of input".into())
}

fn deflate(file: &str) -> Result<String, String> {
    let data = std::fs::read(file).map_err(|e| format!("reading {file}: {e}"))?;
    let level = libdeflater::CompressionLvl::new(GZIP_LEVEL as i32)
        .map_err(|e| format!("gzip level {GZIP_LEVEL}: {e:?}"))?;
    let mut deflater = libdeflater::Compressor::new(level);
    let mut out = vec![0u8; deflater.gzip_compress_bound(PIECE_BYTES)];
    let mut written = 0u64;
    let started = std::time::Instant::now();
    let cpu_before = thread_cpu_ns()?;
    for piece in data.chunks(PIECE_BYTES) {
        let n = deflater
            .gzip_compress(piece, &mut out)
            .map_err(|e| format!("compressing {file}: {e:?}"))?;
        written += n as u64;
    }
    let cpu = (thread_cpu_ns()? - cpu_before) as f64 / 1e9;
    let wall = started.elapsed().as_secs_f64();
    Ok(format!(
        "in {} out {written} wall {wall:.3} cpu {cpu:.3}",
        data.len()
    ))
}

/// Nanoseconds this thread has run on a CPU (Linux: `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Result<u64, String> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_err(|e| format!("reading /proc/thread-self/schedstat: {e}"))?;
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .ok_or_else(|| format!("unexpected /proc/thread-self/schedstat: {stat:?}"))
}
