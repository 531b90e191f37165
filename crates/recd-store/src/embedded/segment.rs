//! The write log's segment files: naming, the frame format, and reading them back.
//!
//! Segments `DATA_DIR/wal/NNNNNNNNNNNNNNNNNNNN.log`, numbered in creation order. Each
//! starts with the 8 bytes `RECDWAL1`, then frames:
//! ```text
//! len: u32 LE | crc: u32 LE | seq: u64 LE | payload: len bytes
//! ```
//! `crc` is CRC-32 (crc32fast) of `seq` and `payload`; `payload` is a postcard-encoded
//! `record::Op`. A record takes the sequence numbers `seq ..= seq + span - 1`. A reader
//! takes segments in number order and skips any sequence number it has already seen, so a
//! record that appears twice (rewritten after an IO error, see `log`) counts once.
//! [`scan`] stops at the first incomplete or corrupt frame (a torn tail) and reports it
//! instead of failing: a write cut short by a crash was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{StoreError, StoreResult};

/// The first bytes of every segment (format version 1).
pub const MAGIC: &[u8; 8] = b"RECDWAL1";
/// `len`, `crc`, `seq`.
const FRAME_HEADER: usize = 16;
/// A larger length can only be a torn or corrupt header (a request batch is far smaller).
pub const MAX_PAYLOAD: usize = 256 << 20;

/// A segment open for writing.
#[derive(Debug)]
pub struct Segment {
    /// Its number.
    pub no: u64,
    /// Its path.
    pub path: PathBuf,
    /// The file (shared with the `everysec` syncer).
    pub file: Arc<File>,
    /// Bytes in it that hold the header and whole, successfully written frames.
    pub len: u64,
}

/// An IO error as [`StoreError::Unavailable`], saying what failed.
pub fn io_unavailable(what: &str, e: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// The path of segment `no` in `dir`.
pub fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("{no:020}.log"))
}

/// The segments in `dir`, in order (an absent dir has none).
pub fn list_segments(dir: &Path) -> StoreResult<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io_unavailable(
                &format!("cannot list {}", dir.display()),
                &e,
            ));
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_unavailable("cannot list the log", &e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if let (20, Ok(no)) = (stem.len(), stem.parse::<u64>()) {
            out.push((no, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// fsyncs a directory, so that files created (or removed) in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates segment `no` in `dir` with its header.
pub fn create_segment(dir: &Path, no: u64) -> io::Result<Segment> {
    let path = segment_path(dir, no);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    if let Err(e) = file.write_all(MAGIC) {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Segment {
        no,
        path,
        file: Arc::new(file),
        len: MAGIC.len() as u64,
    })
}

/// Encodes one frame into `buf`; `payload_crc` is the CRC hasher fed `payload` alone (so
/// that the bulk of the checksum is computed before the append lock is taken).
pub fn put_frame(buf: &mut Vec<u8>, seq: u64, payload: &[u8], payload_crc: &crc32fast::Hasher) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.combine(payload_crc);
    // The length was checked against MAX_PAYLOAD, which fits a u32.
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// One frame as bytes (tests).
#[cfg(test)]
pub fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(payload);
    let mut out = Vec::new();
    put_frame(&mut out, seq, payload, &crc);
    out
}

/// How far a segment scan got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The offset after the last whole, valid frame read.
    pub end: u64,
    /// Why the scan stopped before the end of the file, if it did: a torn or corrupt record
    /// at `end`.
    pub torn: Option<String>,
}

/// Reads as much of `buf` as the file still has; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Calls `f(seq, payload)` for every valid frame of the segment at `path` from offset
/// `start` (0: the beginning, where the magic is checked) up to offset `limit` (`None`: the
/// end of the file). Stops at the first incomplete or corrupt frame and says so in
/// [`Scan::torn`]; only IO errors (and `f`'s) are errors.
pub fn scan(
    path: &Path,
    start: u64,
    limit: Option<u64>,
    mut f: impl FnMut(u64, &[u8]) -> StoreResult<()>,
) -> StoreResult<Scan> {
    let what = || format!("cannot read the log segment {}", path.display());
    let file = File::open(path).map_err(|e| io_unavailable(&what(), &e))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut pos = start;
    if start == 0 {
        let mut magic = [0u8; 8];
        let n = read_full(&mut r, &mut magic).map_err(|e| io_unavailable(&what(), &e))?;
        if n == 0 {
            // Created, crashed before its header: an empty segment.
            return Ok(Scan { end: 0, torn: None });
        }
        if n < magic.len() {
            return Ok(Scan {
                end: 0,
                torn: Some("incomplete segment header".into()),
            });
        }
        if &magic != MAGIC {
            // Not torn: a whole header of another format (a newer version's, or not ours).
            // Guessing would lose it; refusing keeps it for the version that can read it.
            return Err(StoreError::Internal(format!(
                "{} is not a log segment this version can read (header {:?})",
                path.display(),
                String::from_utf8_lossy(&magic)
            )));
        }
        pos = magic.len() as u64;
    } else {
        r.seek(SeekFrom::Start(start))
            .map_err(|e| io_unavailable(&what(), &e))?;
    }
    let mut payload = Vec::new();
    loop {
        if limit.is_some_and(|l| pos >= l) {
            return Ok(Scan {
                end: pos,
                torn: None,
            });
        }
        let torn = |reason: String| Scan {
            end: pos,
            torn: Some(reason),
        };
        let mut header = [0u8; FRAME_HEADER];
        let n = read_full(&mut r, &mut header).map_err(|e| io_unavailable(&what(), &e))?;
        if n == 0 {
            return Ok(Scan {
                end: pos,
                torn: None,
            });
        }
        if n < FRAME_HEADER {
            return Ok(torn(format!("incomplete frame header ({n} bytes)")));
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3, s @ ..] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let seq = u64::from_le_bytes(s);
        if len > MAX_PAYLOAD {
            return Ok(torn(format!("impossible record length {len}")));
        }
        payload.resize(len, 0);
        let n = read_full(&mut r, &mut payload).map_err(|e| io_unavailable(&what(), &e))?;
        if n < len {
            return Ok(torn(format!("incomplete record ({n} of {len} bytes)")));
        }
        let mut check = crc32fast::Hasher::new();
        check.update(&s);
        check.update(&payload);
        if check.finalize() != crc {
            return Ok(torn(format!("checksum mismatch in record {seq}")));
        }
        f(seq, &payload)?;
        pos += (FRAME_HEADER + len) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, frames: &[Vec<u8>]) -> PathBuf {
        let path = segment_path(dir, 1);
        let mut bytes = MAGIC.to_vec();
        for f in frames {
            bytes.extend_from_slice(f);
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn read(path: &Path) -> (Vec<(u64, Vec<u8>)>, Scan) {
        let mut out = Vec::new();
        let scan = scan(path, 0, None, |seq, p| {
            out.push((seq, p.to_vec()));
            Ok(())
        })
        .unwrap();
        (out, scan)
    }

    #[test]
    fn frames_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, b"one"), frame(2, b""), frame(7, &[9u8; 1000])];
        let path = segment(dir.path(), &frames);
        let (got, scan) = read(&path);
        assert_eq!(
            got,
            [(1, b"one".to_vec()), (2, Vec::new()), (7, vec![9u8; 1000])]
        );
        assert_eq!(scan.torn, None);
        assert_eq!(scan.end, std::fs::metadata(&path).unwrap().len());
        // from an offset, up to a limit
        let second = (MAGIC.len() + frames[0].len()) as u64;
        let mut seqs = Vec::new();
        let s = super::scan(
            &path,
            second,
            Some(second + frames[1].len() as u64),
            |q, _| {
                seqs.push(q);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seqs, [2]);
        assert_eq!(s.torn, None);
    }

    #[test]
    fn a_torn_tail_at_any_byte_keeps_every_whole_record_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let whole = [frame(1, b"first"), frame(2, b"second")];
        let last = frame(3, b"the third record");
        for cut in 0..last.len() {
            let mut frames = whole.to_vec();
            frames.push(last[..cut].to_vec());
            let path = segment(dir.path(), &frames);
            let (got, scan) = read(&path);
            assert_eq!(
                got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                [1, 2],
                "cut {cut}"
            );
            let good = (MAGIC.len() + whole[0].len() + whole[1].len()) as u64;
            assert_eq!(scan.end, good);
            assert_eq!(scan.torn.is_some(), cut > 0, "cut {cut}: {scan:?}");
        }
    }

    #[test]
    fn a_corrupt_record_stops_the_scan_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = frame(2, b"flipped");
        let n = bad.len();
        bad[n - 1] ^= 0x40;
        let path = segment(dir.path(), &[frame(1, b"ok"), bad, frame(3, b"after")]);
        let (got, scan) = read(&path);
        assert_eq!(got.len(), 1);
        assert!(scan.torn.unwrap().contains("checksum"));
        // a length no record can have
        let mut huge = frame(2, b"x");
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let path = segment(dir.path(), &[frame(1, b"ok"), huge]);
        let (got, scan) = read(&path);
        assert_eq!(got.len(), 1);
        assert!(scan.torn.unwrap().contains("length"));
        // a header cut short is torn; a whole unknown header is refused, never truncated;
        // an empty file is an empty segment
        std::fs::write(&path, b"RECD").unwrap();
        assert!(read(&path).1.torn.is_some());
        std::fs::write(&path, b"RECDWAL9 and more").unwrap();
        assert!(super::scan(&path, 0, None, |_, _| Ok(())).is_err());
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read(&path), (Vec::new(), Scan { end: 0, torn: None }));
    }
}
