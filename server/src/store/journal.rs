//! The write-ahead journal that makes sled writes durable with one
//! `fdatasync` per group of requests.
//!
//! sled 0.34 makes writes durable only when its log is flushed. The store
//! therefore applies each write to sled as one transaction without a flush,
//! under one write lock, and appends the same change to this journal. sled
//! recovers a transaction whole or not at all, so after `kill -9` it never
//! keeps part of a write, even one the journal on disk lacks. A request is
//! acknowledged once the journal is synced past its change. A checkpoint
//! flushes sled and replaces the journal by a new file with only the records
//! sled does not have yet. Opening the store replays whatever the journal
//! still holds, so every acknowledged change survives `kill -9`.
//!
//! Each journal record is one store write, all or nothing:
//! `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`, where the
//! payload is a sequence of operations
//! `[tree: u8][kind: u8][key length: u32 LE][key][value length: u32 LE][value]`.
//! Values are whole records, never deltas, so replaying a record twice
//! leaves the same state. The archive trees are the exception: a bucket
//! contains many chats, so their operations set or remove one chat in its
//! bucket (kinds 2 and 3, see [`Op::Entry`]), which replays the same way. Replay stops at the first torn or damaged record:
//! a torn tail is a write that was never acknowledged.
//!
//! The file is written ahead with zeros, [`PREPARE_BYTES`] at a time, and
//! records overwrite them. An `fdatasync` then has no file size to record:
//! on the development machine's ext4 it took 105 µs instead of 160 µs, and
//! a third less processor time (docs/benchmarks.md). Replay stops at a
//! record length of zero, which no record has.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The sled tree an operation belongs to. The numbers are part of the
/// journal format and must not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum TreeId {
    Chats = 0,
    Invitations = 1,
    WebhookIds = 2,
    Queue = 3,
    Dead = 4,
    Meta = 5,
    Totals = 6,
    Facts = 7,
    Records = 8,
    Aliases = 9,
    ChatFacts = 10,
    ArchiveRecords = 11,
    ArchiveFacts = 12,
}

impl TreeId {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Chats,
            1 => Self::Invitations,
            2 => Self::WebhookIds,
            3 => Self::Queue,
            4 => Self::Dead,
            5 => Self::Meta,
            6 => Self::Totals,
            7 => Self::Facts,
            8 => Self::Records,
            9 => Self::Aliases,
            10 => Self::ChatFacts,
            11 => Self::ArchiveRecords,
            12 => Self::ArchiveFacts,
            _ => return None,
        })
    }
}

const REMOVE: u8 = 0;
const INSERT: u8 = 1;
/// Sets or removes one chat in an archive bucket (see [`Op::Entry`]).
const ENTRY_SET: u8 = 2;
const ENTRY_REMOVE: u8 = 3;
const HEADER: usize = 8;

/// One decoded operation of a journal record.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Op<'a> {
    Insert {
        tree: TreeId,
        key: &'a [u8],
        value: &'a [u8],
    },
    Remove {
        tree: TreeId,
        key: &'a [u8],
    },
    /// Sets (or, without a value, removes) the chat with record key `key`
    /// in its bucket of an archive tree. A bucket contains many chats, so its
    /// changes are journaled per chat: replaying an older change to a bucket
    /// then never undoes a newer change to another chat in it.
    Entry {
        tree: TreeId,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    },
}

/// Appends the encoding of one operation to a record payload.
pub(super) fn push_op(payload: &mut Vec<u8>, tree: TreeId, key: &[u8], value: Option<&[u8]>) {
    let kind = if value.is_some() { INSERT } else { REMOVE };
    push_encoded(payload, tree, kind, key, value);
}

/// Appends the encoding of one [`Op::Entry`] to a record payload.
pub(super) fn push_entry_op(payload: &mut Vec<u8>, tree: TreeId, key: &[u8], value: Option<&[u8]>) {
    let kind = if value.is_some() { ENTRY_SET } else { ENTRY_REMOVE };
    push_encoded(payload, tree, kind, key, value);
}

/// Appends `[tree][kind][key length][key]` and, with a value, `[value length][value]`.
fn push_encoded(payload: &mut Vec<u8>, tree: TreeId, kind: u8, key: &[u8], value: Option<&[u8]>) {
    payload.push(tree as u8);
    payload.push(kind);
    payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
    payload.extend_from_slice(key);
    if let Some(value) = value {
        payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
        payload.extend_from_slice(value);
    }
}

/// Decodes a record payload; `None` if it does not parse completely.
pub(super) fn parse_ops(mut payload: &[u8]) -> Option<Vec<Op<'_>>> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if input.len() < n {
            return None;
        }
        let (head, rest) = input.split_at(n);
        *input = rest;
        Some(head)
    }
    fn take_len(input: &mut &[u8]) -> Option<usize> {
        let bytes = take(input, 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    }
    let mut ops = Vec::new();
    while !payload.is_empty() {
        let head = take(&mut payload, 2)?;
        let tree = TreeId::from_byte(head[0])?;
        let key_len = take_len(&mut payload)?;
        let key = take(&mut payload, key_len)?;
        match head[1] {
            INSERT => {
                let value_len = take_len(&mut payload)?;
                let value = take(&mut payload, value_len)?;
                ops.push(Op::Insert { tree, key, value });
            }
            REMOVE => ops.push(Op::Remove { tree, key }),
            ENTRY_SET => {
                let value_len = take_len(&mut payload)?;
                let value = take(&mut payload, value_len)?;
                ops.push(Op::Entry {
                    tree,
                    key,
                    value: Some(value),
                });
            }
            ENTRY_REMOVE => ops.push(Op::Entry { tree, key, value: None }),
            _ => return None,
        }
    }
    Some(ops)
}

/// Writes one record: its length, its checksum and the payload.
fn frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// Splits journal bytes into record payloads, stopping at the first torn or
/// damaged record or at the zeros written ahead. Returns the payloads and
/// the number of bytes left over, not counting those zeros.
pub(super) fn records(mut bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut payloads = Vec::new();
    while bytes.len() >= HEADER {
        let length = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let checksum = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if length == 0 {
            // The records end here: `append` never writes an empty one.
            break;
        }
        let Some(payload) = bytes.get(HEADER..HEADER + length) else {
            break;
        };
        if crc32fast::hash(payload) != checksum || parse_ops(payload).is_none() {
            break;
        }
        payloads.push(payload);
        bytes = &bytes[HEADER + length..];
    }
    // The zeros written ahead are not left over, also after a torn record.
    let left_over = bytes.iter().rposition(|&byte| byte != 0).map_or(0, |last| last + 1);
    (payloads, left_over)
}

/// The journal file and the records not yet written to it.
pub(super) struct Journal {
    path: PathBuf,
    file: Mutex<JournalFile>,
    pending: Mutex<Vec<u8>>,
}

/// Bytes of zeros the journal writes ahead of its records at a time: about
/// 120 chat-ended webhooks. Writing and syncing them takes about 0.3 ms on
/// the development machine. Larger steps delayed more acknowledgements:
/// with 1 MiB the p99 at 1 000 webhooks a second went from 1.2 to 2 ms.
pub(super) const PREPARE_BYTES: u64 = 256 << 10;

/// The open journal file, the length of its records and of the file.
struct JournalFile {
    file: File,
    length: u64,
    /// Bytes of the file on disk: the records, then zeros written ahead.
    prepared: u64,
    /// Set when a rewrite renamed the new journal into place but could not
    /// open it: `file` is then the replaced file, and the next sync opens the journal again.
    reopen: bool,
    /// The buffer of the last sync, emptied, so the next records are queued
    /// without growing a new buffer from nothing.
    spare: Vec<u8>,
}

/// Maximum capacity of [`JournalFile::spare`]. A larger buffer, left by a
/// checkpoint or a burst, is freed.
const SPARE_BYTES: usize = 1 << 20;

impl Journal {
    /// Reads the records that an earlier run left in the journal at `path`.
    pub(super) fn read_leftover(path: &Path) -> io::Result<Vec<u8>> {
        match File::open(path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Opens the journal at `path` and empties it. Call only after the
    /// leftover records were replayed into sled and sled was flushed.
    pub(super) fn open_empty(path: &Path) -> io::Result<Self> {
        // Not opened for appending: records are written at their offset, over the zeros.
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        file.set_len(0)?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            // The journal's directory entry must be durable too.
            File::open(dir)?.sync_all()?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(JournalFile {
                file,
                length: 0,
                prepared: 0,
                reopen: false,
                spare: Vec::new(),
            }),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Queues one record. The caller holds the store's write lock, so records
    /// reach the file in the order their changes reached sled.
    pub(super) fn append(&self, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        frame(&mut *pending, payload).expect("writing to memory does not fail");
    }

    /// Replaces the journal with one that holds only `payloads`, through a
    /// new file renamed over the old one, so a crash leaves either journal
    /// whole. Records still queued are dropped. Call only while no record can
    /// be appended, after sled was flushed, with the payloads of every write
    /// that sled does not have yet. Returns the handle of the replaced file,
    /// for the caller to close once writes can go on. Closing the last handle
    /// of a large unlinked file frees its blocks: about 20 ms for a journal of
    /// 30 seconds at 1 000 webhooks a second.
    pub(super) fn rewrite<'a>(&self, payloads: impl Iterator<Item = &'a [u8]>) -> io::Result<File> {
        let mut journal = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let new_path = self.path.with_extension("new");
        let mut writer = io::BufWriter::new(File::create(&new_path)?);
        for payload in payloads {
            frame(&mut writer, payload)?;
        }
        let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let length = file.metadata()?.len();
        drop(file);
        std::fs::rename(&new_path, &self.path)?;
        // The open handle now belongs to the replaced file: no sync may write
        // there, so a failed reopen is retried by the next sync.
        journal.reopen = true;
        let replaced = std::mem::replace(&mut journal.file, OpenOptions::new().write(true).open(&self.path)?);
        journal.reopen = false;
        journal.length = length;
        journal.prepared = length;
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).clear();
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(replaced)
    }

    /// Writes every queued record and syncs the file. Returns the journal's
    /// length afterwards.
    pub(super) fn sync(&self) -> io::Result<u64> {
        let mut journal = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if journal.reopen {
            journal.file = OpenOptions::new().write(true).open(&self.path)?;
            journal.length = journal.file.metadata()?.len();
            journal.prepared = journal.length;
            journal.reopen = false;
        }
        let spare = std::mem::take(&mut journal.spare);
        let mut bytes = std::mem::replace(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner), spare);
        if !bytes.is_empty() {
            let written = journal.write(&bytes).and_then(|()| journal.file.sync_data());
            if let Err(error) = written {
                // Cut off whatever part of the records reached the file, so no
                // torn record hides the ones written after it, and keep them
                // queued: they are written again, whole, by the next sync.
                let length = journal.length;
                let _ = journal.file.set_len(length);
                journal.prepared = length;
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                let newer = std::mem::replace(&mut *pending, bytes);
                pending.extend_from_slice(&newer);
                return Err(error);
            }
            journal.length += bytes.len() as u64;
        }
        if bytes.capacity() <= SPARE_BYTES {
            bytes.clear();
            journal.spare = bytes;
        }
        Ok(journal.length)
    }

    /// Returns whether the journal has records, written or still queued.
    pub(super) fn has_records(&self) -> bool {
        let journal = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let queued = !self.pending.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
        queued || journal.length > 0
    }
}

impl JournalFile {
    /// Writes records after the last ones, first writing zeros ahead when
    /// the records would pass the end of the file. The caller syncs.
    fn write(&mut self, records: &[u8]) -> io::Result<()> {
        let end = self.length + records.len() as u64;
        if end > self.prepared {
            let zeros = vec![0; (end + PREPARE_BYTES - self.prepared) as usize];
            self.file.write_all_at(&zeros, self.prepared)?;
            self.prepared += zeros.len() as u64;
        }
        self.file.write_all_at(records, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn operations_round_trip() {
        let mut payload = Vec::new();
        push_op(&mut payload, TreeId::Chats, b"chat", Some(b"{}"));
        push_op(&mut payload, TreeId::Queue, b"due", None);
        push_op(&mut payload, TreeId::Facts, b"", Some(b""));
        let ops = parse_ops(&payload).expect("parses");
        assert_eq!(
            ops,
            vec![
                Op::Insert {
                    tree: TreeId::Chats,
                    key: b"chat",
                    value: b"{}"
                },
                Op::Remove {
                    tree: TreeId::Queue,
                    key: b"due"
                },
                Op::Insert {
                    tree: TreeId::Facts,
                    key: b"",
                    value: b""
                },
            ]
        );
    }

    #[test]
    fn replay_stops_at_a_torn_or_damaged_record() {
        let mut first = Vec::new();
        push_op(&mut first, TreeId::Meta, b"a", Some(b"1"));
        let mut second = Vec::new();
        push_op(&mut second, TreeId::Meta, b"b", Some(b"2"));
        let mut bytes = record(&first);
        bytes.extend(record(&second));

        let (payloads, left) = records(&bytes);
        assert_eq!((payloads.len(), left), (2, 0));

        for cut in 1..record(&second).len() {
            let torn = &bytes[..bytes.len() - cut];
            let (payloads, left) = records(torn);
            assert_eq!(payloads, vec![&first[..]], "cut {cut}");
            // Zeros at the end of the torn record look like zeros written
            // ahead, so they are not counted.
            let torn_bytes = &record(&second)[..record(&second).len() - cut];
            let zeros_at_end = torn_bytes.iter().rev().take_while(|&&byte| byte == 0).count();
            assert_eq!(left, torn_bytes.len() - zeros_at_end, "cut {cut}");
        }

        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        assert_eq!(records(&damaged).0.len(), 1);
    }

    #[test]
    fn rewrite_keeps_only_given_records() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("journal");
        let journal = Journal::open_empty(&path).expect("journal opens");
        let mut payload = Vec::new();
        push_op(&mut payload, TreeId::Meta, b"key", Some(b"value"));

        let mut survivor = Vec::new();
        push_op(&mut survivor, TreeId::Chats, b"chat", Some(b"record"));

        journal.append(&payload);
        let first = journal.sync().expect("synced");
        assert_eq!(first, (HEADER + payload.len()) as u64);
        journal.append(&payload);
        let replaced = journal.rewrite(std::iter::empty()).expect("emptied");
        assert!(!journal.has_records(), "queued records are dropped too");
        assert_eq!(
            replaced.metadata().expect("readable").len(),
            first + PREPARE_BYTES,
            "the returned handle is that of the replaced file"
        );

        journal.rewrite([survivor.as_slice()].into_iter()).expect("rewritten");
        journal.append(&payload);
        let length = journal.sync().expect("synced");
        assert_eq!(length, (2 * HEADER + survivor.len() + payload.len()) as u64);
        let bytes = Journal::read_leftover(&path).expect("readable");
        assert_eq!(
            bytes.len() as u64,
            length + PREPARE_BYTES,
            "records continue at the end of the new file, with zeros written ahead"
        );
        assert!(bytes[length as usize..].iter().all(|&byte| byte == 0));
        assert_eq!(records(&bytes), (vec![&survivor[..], &payload[..]], 0));
    }

    /// Records overwrite the zeros written ahead, and the file grows by
    /// another [`PREPARE_BYTES`] only when a sync passes its end.
    #[test]
    fn records_overwrite_the_zeros_written_ahead() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("journal");
        let journal = Journal::open_empty(&path).expect("journal opens");
        let mut payloads = Vec::new();
        for round in 0..30_u32 {
            let mut payload = Vec::new();
            push_op(
                &mut payload,
                TreeId::Meta,
                &round.to_le_bytes(),
                Some(&vec![0; 100_000]),
            );
            journal.append(&payload);
            payloads.push(payload);
            let length = journal.sync().expect("synced");

            let bytes = Journal::read_leftover(&path).expect("readable");
            let expected: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            assert_eq!(records(&bytes), (expected, 0), "round {round}");
            let ahead = bytes.len() as u64 - length;
            assert!(ahead <= PREPARE_BYTES, "round {round}: {ahead} bytes ahead");
            assert!(bytes[length as usize..].iter().all(|&byte| byte == 0));
        }
        assert!(Journal::read_leftover(&path).expect("readable").len() as u64 > 2 * PREPARE_BYTES);
    }

    /// After a rewrite that could not open the new journal, the next sync
    /// opens it and writes there, not into the file the rename replaced.
    #[test]
    fn sync_reopens_after_failed_rewrite() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("journal");
        let journal = Journal::open_empty(&path).expect("journal opens");
        let mut survivor = Vec::new();
        push_op(&mut survivor, TreeId::Chats, b"chat", Some(b"record"));
        journal.rewrite([survivor.as_slice()].into_iter()).expect("rewritten");
        {
            // As if the reopen in `rewrite` failed: the handle cannot write.
            let mut file = journal.file.lock().unwrap();
            file.file = File::open(&path).expect("readable");
            file.reopen = true;
        }
        let mut payload = Vec::new();
        push_op(&mut payload, TreeId::Meta, b"key", Some(b"value"));
        journal.append(&payload);
        journal.sync().expect("synced after reopening");
        let bytes = Journal::read_leftover(&path).expect("readable");
        assert_eq!(records(&bytes), (vec![&survivor[..], &payload[..]], 0));
    }

    /// A record torn off before the zeros ahead is left over, and the zeros are not.
    #[test]
    fn torn_record_before_zeros_is_left_over() {
        let mut payload = Vec::new();
        push_op(&mut payload, TreeId::Meta, b"a", Some(b"12"));
        let mut bytes = record(&payload);
        let mut torn = record(&payload);
        torn.truncate(torn.len() - 1);
        assert_ne!(torn.last(), Some(&0), "the torn record ends in a byte that is not zero");
        bytes.extend_from_slice(&torn);
        bytes.extend_from_slice(&[0; 64]);
        let (payloads, left) = records(&bytes);
        assert_eq!(payloads, vec![&payload[..]]);
        assert_eq!(left, torn.len(), "the torn record, without the zeros after it");
    }

    /// A failed write or fdatasync must keep the queued records. The next
    /// sync acknowledges every later flush request, so a dropped record would
    /// count as durable without being on disk.
    #[test]
    fn failed_sync_keeps_the_queued_records() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("journal");
        drop(Journal::open_empty(&path).expect("journal opens"));
        // A handle that cannot write acts as a disk that fails once.
        let journal = Journal {
            path: path.clone(),
            file: Mutex::new(JournalFile {
                file: File::open(&path).expect("readable"),
                length: 0,
                prepared: 0,
                reopen: false,
                spare: Vec::new(),
            }),
            pending: Mutex::new(Vec::new()),
        };
        let mut payload = Vec::new();
        push_op(&mut payload, TreeId::WebhookIds, b"msg_1", Some(b"0"));
        journal.append(&payload);
        assert!(journal.sync().is_err(), "the write fails");

        // The disk recovers.
        journal.file.lock().unwrap().file = OpenOptions::new().write(true).open(&path).expect("writable");
        assert!(journal.has_records(), "the record that failed to sync is still waiting");
        journal.sync().expect("synced");
        let bytes = Journal::read_leftover(&path).expect("readable");
        assert_eq!(records(&bytes).0, vec![&payload[..]], "the record reached the file");
    }

    #[test]
    fn unknown_tree_or_kind_is_damage() {
        assert!(parse_ops(&[13, INSERT, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(parse_ops(&[0, 7, 0, 0, 0, 0]).is_none());
        assert!(parse_ops(&[0, REMOVE, 5, 0, 0, 0, b'x']).is_none());
    }
}
