//! Compression of a segment's CSV files on every core.
//!
//! The plan's pass hands out each file's text in pieces ([`Chunk`]s, about 128 KiB, numbered per
//! file). A pool of workers (one per core) compresses each piece on its own into a complete gzip
//! member (libdeflate, level [`GZIP_LEVEL`](super::GZIP_LEVEL)); one writer appends the members
//! of each file in piece order. A file of concatenated gzip members is one valid gzip file
//! (RFC 1952 §2.2): `gzip -d`, Redshift's COPY ... GZIP and every gzip reader read it whole.
//! Each member starts a fresh 32 KiB window, which costs well under 1% of the size at this
//! piece length.
//!
//! Memory: at most [`QUEUE`] pieces wait for a worker, and members wait for the writer only
//! while an earlier piece of the same file is still being compressed (bounded by the workers).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};

use super::CsvError;

/// Pieces waiting for a worker.
const QUEUE: usize = 8;

/// A piece of one file's CSV text (`data` empty: the file exists but has no more rows).
pub(super) struct Chunk {
    pub(super) file: usize,
    /// The piece's number within its file, from 0.
    pub(super) seq: u32,
    pub(super) name: String,
    pub(super) data: Vec<u8>,
}

/// A piece compressed: one gzip member.
struct Member {
    file: usize,
    seq: u32,
    name: String,
    gz: Result<Vec<u8>, String>,
}

/// The compression side of one segment: send pieces with [`Compressor::sender`], then
/// [`Compressor::finish`] for each file's compressed size.
pub(super) struct Compressor {
    tx: Sender<Chunk>,
    workers: Vec<std::thread::JoinHandle<()>>,
    writer: std::thread::JoinHandle<Result<Vec<u64>, CsvError>>,
}

impl Compressor {
    /// Starts the workers and the writer of files in `dir`.
    pub(super) fn start(dir: &Path, level: u32) -> Result<Self, CsvError> {
        let (tx, rx) = crossbeam_channel::bounded::<Chunk>(QUEUE);
        let workers_n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Member>(QUEUE + workers_n);
        let spawn_err = |source| CsvError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut workers = Vec::with_capacity(workers_n);
        for i in 0..workers_n {
            let (rx, done_tx) = (rx.clone(), done_tx.clone());
            let w = std::thread::Builder::new()
                .name(format!("re_dms-gzip-{i}"))
                .spawn(move || compress_pieces(&rx, &done_tx, level))
                .map_err(spawn_err)?;
            workers.push(w);
        }
        drop(done_tx);
        let out_dir = dir.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("re_dms-gzip-write".into())
            .spawn(move || write_members(&out_dir, &done_rx))
            .map_err(spawn_err)?;
        Ok(Self {
            tx,
            workers,
            writer,
        })
    }

    pub(super) fn sender(&self) -> Sender<Chunk> {
        self.tx.clone()
    }

    /// Waits until every piece sent is written (all senders must be dropped); each file's
    /// compressed size, by file index.
    pub(super) fn finish(self) -> Result<Vec<u64>, CsvError> {
        drop(self.tx);
        let panicked = || CsvError::Io {
            path: PathBuf::from("gzip"),
            source: std::io::Error::other("a compression thread panicked"),
        };
        for w in self.workers {
            w.join().map_err(|_| panicked())?;
        }
        self.writer.join().map_err(|_| panicked())?
    }
}

/// A worker: pieces in, gzip members out, until the pieces end or the writer is gone.
fn compress_pieces(rx: &Receiver<Chunk>, done: &Sender<Member>, level: u32) {
    let level = libdeflater::CompressionLvl::new(level as i32).unwrap_or_default();
    let mut deflater = libdeflater::Compressor::new(level);
    for chunk in rx {
        let mut gz = vec![0u8; deflater.gzip_compress_bound(chunk.data.len())];
        let gz = match deflater.gzip_compress(&chunk.data, &mut gz) {
            Ok(n) => {
                gz.truncate(n);
                Ok(gz)
            }
            Err(e) => Err(format!("{e:?}")),
        };
        let member = Member {
            file: chunk.file,
            seq: chunk.seq,
            name: chunk.name,
            gz,
        };
        if done.send(member).is_err() {
            return;
        }
    }
}

/// One output file being written.
struct OutFile {
    path: PathBuf,
    file: File,
    /// The next piece to append.
    next: u32,
    /// Members that came before an earlier piece of the same file.
    early: BTreeMap<u32, Vec<u8>>,
    bytes: u64,
}

/// The writer: appends each file's members in piece order; returns the sizes by file index.
fn write_members(dir: &Path, done: &Receiver<Member>) -> Result<Vec<u64>, CsvError> {
    let mut files: Vec<Option<OutFile>> = Vec::new();
    for m in done {
        if files.len() <= m.file {
            files.resize_with(m.file + 1, || None);
        }
        let slot = &mut files[m.file];
        if slot.is_none() {
            let path = dir.join(&m.name);
            let file = File::create(&path).map_err(|source| CsvError::Io {
                path: path.clone(),
                source,
            })?;
            *slot = Some(OutFile {
                path,
                file,
                next: 0,
                early: BTreeMap::new(),
                bytes: 0,
            });
        }
        let out = slot.as_mut().expect("created above");
        let gz = m.gz.map_err(|e| CsvError::Io {
            path: out.path.clone(),
            source: std::io::Error::other(format!("gzip: {e}")),
        })?;
        out.early.insert(m.seq, gz);
        while let Some(gz) = out.early.remove(&out.next) {
            out.file.write_all(&gz).map_err(|source| CsvError::Io {
                path: out.path.clone(),
                source,
            })?;
            out.bytes += gz.len() as u64;
            out.next += 1;
        }
    }
    files
        .into_iter()
        .map(|f| match f {
            Some(f) if !f.early.is_empty() => Err(CsvError::Io {
                path: f.path,
                source: std::io::Error::other("a piece of the file was never compressed"),
            }),
            Some(f) => Ok(f.bytes),
            None => Ok(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Pieces sent in any interleaving come out as each file's text, in order, in one gzip
    /// file that a multi-member reader reads whole.
    #[test]
    fn members_are_written_in_piece_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = Compressor::start(dir.path(), 1).unwrap();
        let tx = c.sender();
        let mut expected = [Vec::new(), Vec::new()];
        for seq in 0..200u32 {
            for (file, want) in expected.iter_mut().enumerate() {
                let data = format!("{file},{seq},{}\n", "x".repeat(seq as usize * 37)).into_bytes();
                want.extend_from_slice(&data);
                let name = format!("f{file}.csv.gz");
                tx.send(Chunk {
                    file,
                    seq,
                    name,
                    data,
                })
                .unwrap();
            }
        }
        drop(tx);
        let sizes = c.finish().unwrap();
        for (file, want) in expected.iter().enumerate() {
            let bytes = std::fs::read(dir.path().join(format!("f{file}.csv.gz"))).unwrap();
            assert_eq!(sizes[file], bytes.len() as u64);
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes.as_slice())
                .read_to_end(&mut text)
                .unwrap();
            assert_eq!(&text, want);
        }
    }
}
