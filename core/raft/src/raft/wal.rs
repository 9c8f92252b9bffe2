//! The Raft log's bytes: segment files of checksummed records, appended at the end and made
//! durable with one fdatasync per group of appends, read back by index through a table of
//! where each record starts. One job: records in files. What a record holds (an encoded
//! openraft entry), the group commit and the vote live in `log_store.rs`.
//!
//! A segment `<first index, 20 digits>.seg` is created zero-filled (`SEGMENT_BYTES`), so an
//! append overwrites blocks that already exist and its fdatasync flushes data alone, not the
//! file's size or extents (redb's commit of the same append wrote and synced 4-6 pages). A
//! record is `len: u32, crc32: u32, index: u64, payload`; the checksum covers index and
//! payload; a zero length ends a segment's records (every write leaves one after its last
//! record). At open, records are read back in order (and fdatasynced: a process killed during
//! a flush leaves them in the page cache only): a record that does not check out ends the log
//! if nothing valid follows it in the last segment (a write torn by a power cut, most likely
//! never acknowledged since acknowledgement waits for the fdatasync; damage to the very last
//! record looks the same), and is damage otherwise. A write torn across pages that reached the
//! disk out of order, valid records after the bad one, is refused as damage too: the server
//! does not start, it loses nothing.
//!
//! Truncation and purge are whole-segment deletions plus, for a truncation, a terminator
//! written over the first removed record; both leave every state a crash can stop at a prefix
//! of the log as it was (later segments are deleted first).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The bytes a new segment is given up front. A batch larger than what is left of the current
/// segment starts a new one (which grows past this if the batch alone is larger).
pub const SEGMENT_BYTES: u64 = 4 << 20;

/// len, crc32, index.
const HEADER: usize = 16;

/// Why a log cannot be opened: the file, and what is wrong.
#[derive(Debug)]
pub struct Damaged {
    pub path: PathBuf,
    pub detail: String,
}

#[derive(Debug)]
pub enum OpenError {
    Io(PathBuf, io::Error),
    Damaged(Damaged),
}

/// A segment's bytes: a file, or memory (`-dev` without a data dir, tests).
#[derive(Debug)]
enum Bytes {
    File(File),
    Memory(Mutex<Vec<u8>>),
}

impl Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Bytes::File(f) => f.read_exact_at(buf, offset),
            Bytes::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                let src = m
                    .get(offset as usize..offset as usize + buf.len())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        match self {
            Bytes::File(f) => f.write_all_at(data, offset),
            Bytes::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let end = offset as usize + data.len();
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[offset as usize..end].copy_from_slice(data);
                Ok(())
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        match self {
            Bytes::File(f) => f.sync_data(),
            Bytes::Memory(_) => Ok(()),
        }
    }
}

/// One segment as the index sees it.
#[derive(Debug)]
struct Segment {
    /// The index of its first record.
    first: u64,
    bytes: Arc<Bytes>,
    path: Option<PathBuf>,
    /// Where each record starts: record `k` holds index `first + k`.
    starts: Vec<u64>,
    /// Where the next record goes (the terminator's place).
    end: u64,
    /// The bytes it was given (its file's length; records fill it up to its end).
    capacity: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.starts.len() as u64
    }
}

/// The segments, shared by the writer and the readers.
#[derive(Debug, Default)]
struct Segments {
    list: VecDeque<Segment>,
}

impl Segments {
    /// The segment holding `index` and the record's place in it.
    fn locate(&self, index: u64) -> Option<(usize, usize)> {
        let s = self.list.partition_point(|s| s.first <= index).checked_sub(1)?;
        let k = (index - self.list[s].first) as usize;
        (k < self.list[s].starts.len()).then_some((s, k))
    }
}

/// A record read back: its index and payload.
pub type Record = (u64, Vec<u8>);

/// The log's files. Written by one thread (the log writer); `reader()` hands out readers.
pub struct Wal {
    dir: Option<PathBuf>,
    segments: Arc<Mutex<Segments>>,
    /// The bytes of the segments written since the last `sync`.
    dirty: Vec<Arc<Bytes>>,
    /// Records written but not yet synced, published to readers by `sync`: (segment first, starts, end).
    pending: Vec<(u64, Vec<u64>, u64)>,
    /// The index the next record is to have, written or pending (None: no segment).
    next: Option<u64>,
    segment_bytes: u64,
    /// The next segment's file being prepared: its capacity and the thread preparing it.
    spare: Option<(u64, std::thread::JoinHandle<io::Result<File>>)>,
}

/// Reads records by index while the writer appends.
#[derive(Clone)]
pub struct WalReader {
    segments: Arc<Mutex<Segments>>,
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn encode(out: &mut Vec<u8>, index: u64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(index, payload).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the record at the start of `buf` if it is whole, checks out and holds `index`:
/// its payload and length on disk.
fn decode(buf: &[u8], index: u64) -> Option<(&[u8], usize)> {
    let header = buf.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let at = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let payload = buf.get(HEADER..HEADER + len)?;
    (len > 0 && at == index && crc(at, payload) == sum).then_some((payload, HEADER + len))
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The next segment's file while it is being prepared (not named `*.seg`: never read as one).
const SPARE: &str = "spare.seg.tmp";

/// A new segment file of `capacity` zero bytes, synced. Zero-filled, not sparse: appends then
/// overwrite allocated blocks, and their fdatasync has no extents to record.
fn zero_filled(path: &Path, capacity: u64) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < capacity {
        let n = (capacity - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// Prepares the next segment on a thread of its own, so that a rollover does not stall the
/// appends behind it while 4 MiB are written and synced.
fn prepare_spare(dir: &Path, capacity: u64) -> (u64, std::thread::JoinHandle<io::Result<File>>) {
    let path = dir.join(SPARE);
    let ready = std::thread::Builder::new()
        .name("raft-log-spare".into())
        .spawn(move || zero_filled(&path, capacity))
        .unwrap_or_else(|e| std::thread::spawn(move || Err(e)));
    (capacity, ready)
}

impl Wal {
    /// An empty log in memory.
    pub fn in_memory() -> Wal {
        Wal::new(None, Segments::default())
    }

    fn new(dir: Option<PathBuf>, segments: Segments) -> Wal {
        Wal {
            dir,
            next: segments.list.back().map(Segment::next_index),
            segments: Arc::new(Mutex::new(segments)),
            dirty: Vec::new(),
            pending: Vec::new(),
            segment_bytes: SEGMENT_BYTES,
            spare: None,
        }
    }

    /// Opens the log in `dir` (created if missing), reading back every segment. Records at or
    /// below `purged` may be gone (whole segments of them are deleted here). The last record's
    /// payload is returned with the log.
    pub fn open(dir: &Path, purged: Option<u64>) -> Result<(Wal, Option<Record>), OpenError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |e| OpenError::Io(p, e)
        };
        let new = !dir.exists();
        legate_types::fs::create_private_dir(dir).map_err(io_err(dir))?;
        if let Some(parent) = dir.parent().filter(|_| new) {
            // The new directory's entry made durable with its parent's.
            sync_dir(parent).map_err(io_err(parent))?;
        }
        match std::fs::remove_file(dir.join(SPARE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(OpenError::Io(dir.join(SPARE), e)),
            _ => {}
        }
        let mut firsts = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name();
            let Some(first) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            // Only the names this module writes (`5.seg` or `+5.seg` are someone else's), and
            // indexes far from the end of u64 (the arithmetic on them stays exact).
            if name.to_str() != Some(segment_name(first).as_str()) || first > u64::MAX / 2 {
                tracing::warn!(file = %e.path().display(), "not a segment of the Raft log: left alone");
                continue;
            }
            firsts.push(first);
        }
        firsts.sort_unstable();
        let mut segments = Segments::default();
        let mut last: Option<Record> = None;
        let count = firsts.len();
        for (n, first) in firsts.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            let damaged = |detail: String| OpenError::Damaged(Damaged { path: path.clone(), detail });
            if let Some(prev) = segments.list.back() {
                if prev.next_index() > first {
                    return Err(damaged(format!(
                        "it starts at index {first}, before the previous segment's end ({})",
                        prev.next_index()
                    )));
                }
                if prev.next_index() < first {
                    // openraft's own appends never leave a gap (only its storage test suite
                    // does, without reopening): records are missing, a segment ends early.
                    return Err(damaged(format!(
                        "it starts at index {first}, the previous segment's records end before {}",
                        prev.next_index()
                    )));
                }
            }
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut data).map_err(io_err(&path))?;
            let mut starts = Vec::new();
            let mut at = 0usize;
            let mut torn = None;
            loop {
                if data.get(at..at + 4).is_none_or(|l| l == [0; 4]) {
                    break;
                }
                let index = first + starts.len() as u64;
                match decode(&data[at..], index) {
                    Some((payload, size)) => {
                        starts.push(at as u64);
                        last = Some((index, payload.to_vec()));
                        at += size;
                    }
                    None => {
                        torn = Some(index);
                        break;
                    }
                }
            }
            // What the records say now may still be only in the page cache (a process killed
            // during a flush): made durable before anything relies on it.
            file.sync_data().map_err(io_err(&path))?;
            if let Some(index) = torn {
                let last_segment = n + 1 == count;
                if !last_segment || valid_record_after(&data, at, index) {
                    return Err(damaged(format!("the record of index {index} at byte {at} does not check out")));
                }
                // A torn write (most likely never acknowledged): the log ends before it.
                tracing::warn!(
                    file = %path.display(),
                    index,
                    offset = at,
                    "the Raft log ends in a record that does not check out, most likely one being written when the server stopped: dropped"
                );
                file.write_all_at(&[0; 4], at as u64).map_err(io_err(&path))?;
                file.sync_data().map_err(io_err(&path))?;
            }
            segments.list.push_back(Segment {
                first,
                bytes: Arc::new(Bytes::File(file)),
                path: Some(path),
                starts,
                end: at as u64,
                capacity: data.len() as u64,
            });
        }
        // Segments whose records are all purged (a purge that stopped before deleting them).
        let keep_from = purged.map_or(0, |p| p.saturating_add(1));
        let mut removed = false;
        while segments.list.front().is_some_and(|s| s.next_index() <= keep_from) {
            let s = segments.list.pop_front().expect("a front segment");
            if let Some(p) = &s.path {
                std::fs::remove_file(p).map_err(io_err(p))?;
            }
            removed = true;
        }
        if removed {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        let last = last.filter(|(i, _)| *i >= keep_from);
        let mut wal = Wal::new(Some(dir.to_path_buf()), segments);
        wal.spare = Some(prepare_spare(dir, wal.segment_bytes));
        Ok((wal, last))
    }

    pub fn reader(&self) -> WalReader {
        WalReader { segments: self.segments.clone() }
    }

    /// Writes `records` (consecutive indexes, following the log's last) after the last record,
    /// not yet durable nor visible to readers: `sync` makes them both.
    pub fn write<B: AsRef<[u8]>>(&mut self, records: &[(u64, B)]) -> io::Result<()> {
        let Some(&(first_index, _)) = records.first() else { return Ok(()) };
        if records.iter().zip(first_index..).any(|((i, _), want)| *i != want) {
            return Err(io::Error::other(format!("an append of non-consecutive indexes from {first_index}")));
        }
        // An append replaces the log from its first index on (as Raft's append does; openraft
        // truncates first, its storage contract allows not to). After a gap (allowed by that
        // contract too, never made by openraft's own appends) it starts a segment.
        if self.next.is_some_and(|next| first_index < next) {
            self.truncate(first_index)?;
        }
        let gap = self.next.is_some_and(|next| first_index != next);
        let mut buf = Vec::with_capacity(records.iter().map(|(_, p)| HEADER + p.as_ref().len()).sum::<usize>() + 4);
        let mut offsets = Vec::with_capacity(records.len());
        for (index, payload) in records {
            offsets.push(buf.len() as u64);
            encode(&mut buf, *index, payload.as_ref());
        }
        let size = buf.len() as u64;
        buf.extend_from_slice(&[0; 4]);
        let (seg_first, bytes, end) = self.tail_for(first_index, size, gap)?;
        bytes.write_at(&buf, end)?;
        let starts: Vec<u64> = offsets.into_iter().map(|o| end + o).collect();
        match self.pending.last_mut() {
            Some((f, s, e)) if *f == seg_first => {
                s.extend(starts);
                *e = end + size;
            }
            _ => self.pending.push((seg_first, starts, end + size)),
        }
        if !self.dirty.iter().any(|b| Arc::ptr_eq(b, &bytes)) {
            self.dirty.push(bytes);
        }
        self.next = Some(first_index + records.len() as u64);
        Ok(())
    }

    /// The segment the next `size` bytes go to (a new one when the current one has no room,
    /// or `fresh`): its first index, bytes and end.
    fn tail_for(&mut self, first_index: u64, size: u64, fresh: bool) -> io::Result<(u64, Arc<Bytes>, u64)> {
        if !fresh {
            let segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = segs.list.back() {
                let end = match self.pending.last() {
                    Some((f, _, e)) if *f == s.first => *e,
                    _ => s.end,
                };
                if end + size + 4 <= s.capacity || s.starts.is_empty() && end == 0 {
                    return Ok((s.first, s.bytes.clone(), end));
                }
            }
        }
        // A new segment: the one before it is synced first (its records must not outlive
        // this one's after a crash), and the new file's entry in the directory too.
        self.sync()?;
        let capacity = self.segment_bytes.max(size + 4);
        let (bytes, path) = match self.dir.clone() {
            Some(dir) => {
                let path = dir.join(segment_name(first_index));
                let file = match self.spare.take() {
                    // Zero-filled ahead by its own thread: a rename here, not 4 MiB of writes.
                    Some((cap, ready)) if cap == capacity => match ready.join() {
                        Ok(Ok(file)) => {
                            std::fs::rename(dir.join(SPARE), &path)?;
                            file
                        }
                        _ => zero_filled(&path, capacity)?,
                    },
                    other => {
                        // Prepared for another size (or none yet): this one is made here.
                        if let Some((_, ready)) = other {
                            let _ = ready.join();
                        }
                        zero_filled(&path, capacity)?
                    }
                };
                sync_dir(&dir)?;
                if self.spare.is_none() {
                    self.spare = Some(prepare_spare(&dir, self.segment_bytes));
                }
                (Arc::new(Bytes::File(file)), Some(path))
            }
            None => (Arc::new(Bytes::Memory(Mutex::new(Vec::new()))), None),
        };
        let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segs.list.push_back(Segment {
            first: first_index,
            bytes: bytes.clone(),
            path,
            starts: Vec::new(),
            end: 0,
            capacity,
        });
        Ok((first_index, bytes, 0))
    }

    /// Makes what `write` wrote durable (one fdatasync per segment written), then readable.
    pub fn sync(&mut self) -> io::Result<()> {
        for b in self.dirty.drain(..) {
            b.sync()?;
        }
        let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        for (first, starts, end) in self.pending.drain(..) {
            if let Some(s) = segs.list.iter_mut().rev().find(|s| s.first == first) {
                s.starts.extend(starts);
                s.end = end;
            }
        }
        Ok(())
    }

    /// Removes the records from `index` on (durably). Later segments go first, so a crash
    /// part way leaves a prefix of the log.
    pub fn truncate(&mut self, index: u64) -> io::Result<()> {
        self.sync()?;
        let mut removed = Vec::new();
        let cut = {
            let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            while segs.list.back().is_some_and(|s| s.first >= index) {
                removed.extend(segs.list.pop_back());
            }
            match segs.list.back_mut() {
                Some(s) if index < s.next_index() => {
                    let k = (index - s.first) as usize;
                    let at = s.starts[k];
                    s.starts.truncate(k);
                    s.end = at;
                    Some((s.bytes.clone(), at))
                }
                _ => None,
            }
        };
        self.next = self.segments.lock().unwrap_or_else(|p| p.into_inner()).list.back().map(Segment::next_index);
        for s in removed {
            if let Some(p) = &s.path {
                std::fs::remove_file(p)?;
            }
        }
        if let Some(dir) = &self.dir {
            sync_dir(dir)?;
        }
        if let Some((bytes, at)) = cut {
            bytes.write_at(&[0; 4], at)?;
            bytes.sync()?;
        }
        Ok(())
    }

    /// Deletes the segments whose records are all at or below `index` (the caller has made the
    /// purge point durable first). The segment holding `index` stays whole; past the last
    /// record every segment goes (a snapshot installed beyond the log), and the next append may
    /// start at any index.
    pub fn purge(&mut self, index: u64) -> io::Result<()> {
        self.sync()?;
        let mut removed = Vec::new();
        {
            let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            while segs.list.front().is_some_and(|s| s.next_index() <= index + 1) {
                removed.extend(segs.list.pop_front());
            }
            self.next = segs.list.back().map(Segment::next_index);
        }
        for s in &removed {
            if let Some(p) = &s.path {
                std::fs::remove_file(p)?;
            }
        }
        if let (Some(dir), false) = (&self.dir, removed.is_empty()) {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Whether a record that checks out starts anywhere in `data` after `from` with an index above
/// `index`: then the bad one is damage, not a torn end.
fn valid_record_after(data: &[u8], from: usize, index: u64) -> bool {
    (from + 1..data.len().saturating_sub(HEADER)).any(|at| {
        let Some(h) = data.get(at..at + HEADER) else { return false };
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
        let i = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        len > 0 && i > index && decode(&data[at..], i).is_some()
    })
}

impl WalReader {
    /// The records of `start..end` that are durable, in order, stopping at the first missing.
    pub fn read(&self, start: u64, end: u64) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut index = start;
        while index < end {
            // The bytes of a run of records in one segment, located under the lock and read
            // outside it.
            let (bytes, from, to, count) = {
                let segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
                // From the first record there is when asked from before it.
                index = index.max(segs.list.front().map_or(index, |s| s.first));
                if index >= end {
                    break;
                }
                let Some((s, k)) = segs.locate(index) else { break };
                let seg = &segs.list[s];
                let last = seg.starts.len().min(k.saturating_add(usize::try_from(end - index).unwrap_or(usize::MAX)));
                let to = seg.starts.get(last).copied().unwrap_or(seg.end);
                (seg.bytes.clone(), seg.starts[k], to, last - k)
            };
            let mut buf = vec![0u8; (to - from) as usize];
            bytes.read_at(&mut buf, from)?;
            let mut at = 0;
            for _ in 0..count {
                // A segment truncated and rewritten since it was located: what is there now
                // is not this index; stop.
                let Some((payload, size)) = decode(&buf[at..], index) else { return Ok(out) };
                out.push((index, payload.to_vec()));
                at += size;
                index += 1;
            }
        }
        Ok(out)
    }

    /// The last durable record's index.
    pub fn last_index(&self) -> Option<u64> {
        let segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segs.list.iter().rev().find(|s| !s.starts.is_empty()).map(|s| s.next_index() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("entry {i} ").repeat((i % 7 + 1) as usize).into_bytes()
    }

    fn records(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, payload(i))).collect()
    }

    fn append(wal: &mut Wal, range: std::ops::Range<u64>) {
        wal.write(&records(range)).unwrap();
        wal.sync().unwrap();
    }

    fn indexes(r: &WalReader, start: u64, end: u64) -> Vec<u64> {
        let got = r.read(start, end).unwrap();
        for (i, p) in &got {
            assert_eq!(p, &payload(*i));
        }
        got.into_iter().map(|(i, _)| i).collect()
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    }

    /// A log of 4 KiB segments holding records 1..=last, appended ten at a time.
    fn small(dir: &Path, last: u64) -> Wal {
        let mut wal = Wal::open(dir, None).unwrap().0;
        wal.segment_bytes = 4096;
        for start in (1..=last).step_by(10) {
            append(&mut wal, start..(start + 10).min(last + 1));
        }
        wal
    }

    #[test]
    fn appends_roll_over_segments_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let wal = small(dir.path(), 400);
        let segments = segment_files(dir.path());
        assert!(segments > 3, "{segments} segments");
        assert!(dir.path().join(SPARE).exists(), "the next segment is prepared ahead");
        assert_eq!(indexes(&wal.reader(), 0, 410), (1..=400).collect::<Vec<_>>());
        drop(wal);
        // Files of other names are not segments (nor do they make the log look damaged).
        std::fs::write(dir.path().join("5.seg"), b"not ours").unwrap();
        let (wal, last) = Wal::open(dir.path(), None).unwrap();
        assert_eq!(last.map(|(i, _)| i), Some(400));
        assert_eq!(indexes(&wal.reader(), 250, 260), (250..260).collect::<Vec<_>>());
        drop(wal);
        // A segment gone from the middle: records are missing, the log is refused.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        names.sort();
        std::fs::remove_file(&names[1]).unwrap();
        assert!(matches!(Wal::open(dir.path(), None), Err(OpenError::Damaged(_))), "a gap opened");
    }

    #[test]
    fn several_writes_before_one_sync_stay_in_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap().0;
        append(&mut wal, 1..20);
        for start in (20..60).step_by(4) {
            wal.write(&records(start..start + 4)).unwrap();
        }
        assert_eq!(indexes(&wal.reader(), 1, 100), (1..20).collect::<Vec<_>>(), "readable once synced");
        wal.sync().unwrap();
        assert_eq!(indexes(&wal.reader(), 1, 100), (1..60).collect::<Vec<_>>());
        assert_eq!(segment_files(dir.path()), 1);
    }

    #[test]
    fn truncate_then_append_and_purge_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = small(dir.path(), 299);
        wal.truncate(120).unwrap();
        assert_eq!(wal.reader().last_index(), Some(119));
        // Shorter records than the ones they replace: the old bytes behind them must not read
        // as records.
        let shorter: Vec<(u64, Vec<u8>)> = (120..130).map(|i| (i, vec![b'x'; 3])).collect();
        wal.write(&shorter).unwrap();
        wal.sync().unwrap();
        wal.purge(100).unwrap();
        drop(wal);
        let (wal, last) = Wal::open(dir.path(), Some(100)).unwrap();
        assert_eq!(last, Some((129, vec![b'x'; 3])));
        assert_eq!(indexes(&wal.reader(), 101, 120), (101..120).collect::<Vec<_>>());
        let first_kept = wal.segments.lock().unwrap().list[0].first;
        assert!(first_kept > 1 && first_kept <= 101, "{first_kept}");
    }

    #[test]
    fn a_torn_last_write_is_dropped_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap().0;
        append(&mut wal, 1..50);
        append(&mut wal, 50..60);
        let start_of_59 = wal.segments.lock().unwrap().list[0].starts[58];
        drop(wal);
        let path = dir.path().join(segment_name(1));
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        // The last write torn: its last record half there.
        file.write_all_at(&[0xA5; 8], start_of_59 + HEADER as u64 + 2).unwrap();
        let (wal, last) = Wal::open(dir.path(), None).unwrap();
        assert_eq!(last.map(|(i, _)| i), Some(58));
        // Writes go on from there.
        let mut wal = wal;
        append(&mut wal, 59..65);
        assert_eq!(indexes(&wal.reader(), 1, 100), (1..65).collect::<Vec<_>>());
        drop(wal);
        // A record in the middle damaged, valid ones after it: refused, naming the file.
        file.write_all_at(&[0xA5; 8], 100).unwrap();
        match Wal::open(dir.path(), None) {
            Err(OpenError::Damaged(d)) => assert_eq!(d.path, path),
            Err(OpenError::Io(p, e)) => panic!("{}: {e}", p.display()),
            Ok(_) => panic!("a damaged log opened"),
        }
    }

    #[test]
    fn in_memory_log_reads_what_was_synced() {
        let mut wal = Wal::in_memory();
        let records = [(1u64, &b"a"[..]), (2, &b"b"[..])];
        wal.write(&records).unwrap();
        assert!(wal.reader().read(1, 3).unwrap().is_empty(), "not readable before the sync");
        wal.sync().unwrap();
        assert_eq!(wal.reader().read(1, 3).unwrap(), vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        assert!(wal.write(&[(3, &b"c"[..]), (5, &b"e"[..])]).is_err(), "a gap inside an append is refused");
        wal.truncate(2).unwrap();
        wal.write(&[(2, &b"c"[..])]).unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.reader().read(1, 3).unwrap(), vec![(1, b"a".to_vec()), (2, b"c".to_vec())]);
    }
}
