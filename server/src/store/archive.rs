//! The archive: chats that can no longer change, many to a sled key.
//!
//! sled 0.34 keeps a few hundred bytes in memory for every leaf page, and a
//! leaf contains at most 16 keys, so the memory of an open store follows its
//! number of keys. With one record and one facts value per chat, a million
//! chats cost about 84 MB before anything is read. Most stored chats are
//! settled, though: every invitation was delivered and then submitted,
//! declined or expired. Such a chat moves to the two archive trees, where
//! one key holds every settled chat whose record key begins with the same
//! [`BUCKET_BYTES`] bytes: at most 65 536 keys per tree, whatever the
//! number of chats.
//!
//! `archive_records` holds the record values and `archive_facts` the facts
//! values, under the same bucket key, so the scans at open and for the
//! retention purge still read only the small facts. A chat is in the hot
//! trees (`chat_records`, `chat_facts`) or in the archive, never both: the
//! move is one store write. A change to an archived chat moves it back in
//! the same write that changes it. While a read of every chat runs (an
//! export, a report scan), the chat changes inside the archive instead. The
//! read takes the hot trees first, so it then neither misses the chat nor
//! reads it twice. The journal records these writes per
//! chat, not per bucket, because sled can hold writes that the journal on
//! disk lacks after `kill -9`: replaying an older bucket whole would drop
//! the chats that a later write added to it.
//!
//! Bucket value: a format byte, then the chats in key order, each as
//! `[record key: 16 bytes][value length: u32 LE][value]`. Record buckets
//! are stored deflated (format 2: the same chats, compressed), because a
//! read of every record, as an export does, keeps most pages it reads in
//! memory, and the JSON records shrink about five times.

use std::borrow::Cow;
use std::io::Write;

use super::chat_value::KEY_BYTES;
use super::records::Millis;

const FORMAT: u8 = 1;
const FORMAT_DEFLATED: u8 = 2;
const LENGTH_BYTES: usize = 4;

/// Bytes of the record key that name its bucket.
pub(super) const BUCKET_BYTES: usize = 2;

/// A settled chat moves to the archive this long after its last invitation
/// expired, or after it was received when it has no invitations.
pub const SETTLED_AFTER: Millis = 24 * 3_600_000;

/// One chat in a bucket: its record key and its value.
pub(super) type Entry<'a> = (&'a [u8], &'a [u8]);

/// Returns the bucket key of a record key, or of a prefix of one; `None`
/// when it is too short (a damaged alias).
pub(super) fn bucket_of(key: &[u8]) -> Option<[u8; BUCKET_BYTES]> {
    key.get(..BUCKET_BYTES)?.try_into().ok()
}

/// Returns a bucket value in the plain format, inflating a deflated one;
/// `None` when it is damaged.
pub(super) fn plain(bucket: &[u8]) -> Option<Cow<'_, [u8]>> {
    match bucket.split_first()? {
        (&FORMAT, _) => Some(Cow::Borrowed(bucket)),
        (&FORMAT_DEFLATED, deflated) => {
            let mut inflater = flate2::write::DeflateDecoder::new(vec![FORMAT]);
            inflater.write_all(deflated).ok()?;
            Some(Cow::Owned(inflater.finish().ok()?))
        }
        _ => None,
    }
}

/// Compresses a plain bucket value.
fn deflated(plain: &[u8]) -> Vec<u8> {
    let mut deflater = flate2::write::DeflateEncoder::new(vec![FORMAT_DEFLATED], flate2::Compression::fast());
    deflater.write_all(&plain[1..]).expect("writing into memory succeeds");
    deflater.finish().expect("writing into memory succeeds")
}

/// Decodes a bucket value in the plain format (see [`plain`]) into its
/// chats, `(record key, value)` in key order; `None` when the value is damaged.
pub(super) fn entries(bucket: &[u8]) -> Option<Vec<Entry<'_>>> {
    let (&FORMAT, mut rest) = bucket.split_first()? else {
        return None;
    };
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let key = rest.get(..KEY_BYTES)?;
        let length = u32::from_le_bytes(rest.get(KEY_BYTES..KEY_BYTES + LENGTH_BYTES)?.try_into().ok()?) as usize;
        let start = KEY_BYTES + LENGTH_BYTES;
        let value = rest.get(start..start.checked_add(length)?)?;
        entries.push((key, value));
        rest = &rest[start + length..];
    }
    Some(entries)
}

/// Encodes chats in key order into a bucket value.
fn encode<'a>(entries: impl IntoIterator<Item = Entry<'a>>) -> Vec<u8> {
    let mut out = vec![FORMAT];
    for (key, value) in entries {
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Returns the value of chat `key` in a bucket value in the plain format.
pub(super) fn find<'a>(bucket: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    entries(bucket)?
        .into_iter()
        .find_map(|(entry_key, value)| (entry_key == key).then_some(value))
}

/// Returns the bucket value `bucket` (absent when `None`) with chat `key`
/// set to `value`, or removed when `value` is `None`, deflated when
/// `deflate`. Returns `Ok(None)` when no chat is left, so the caller removes
/// the bucket key, and `Err(())` when the old bucket value is damaged.
#[cfg(test)]
fn with(bucket: Option<&[u8]>, key: &[u8], value: Option<&[u8]>, deflate: bool) -> Result<Option<Vec<u8>>, ()> {
    with_entries(bucket, [(key, value)], deflate).map(|(bucket, _)| bucket)
}

/// A chat's value in a bucket before a change; `None` when it was not there.
pub(super) type Before = Option<Vec<u8>>;

/// Applies changes `(record key, value)` in order to the bucket value
/// `bucket` (absent when `None`): each sets the chat's value or, without
/// one, removes the chat. Returns the new bucket value, deflated when
/// `deflate` and `None` when no chat is left, with each chat's value before
/// its change. `Err(())` when the old bucket value is damaged or a key is
/// not a record key.
pub(super) fn with_entries<'a>(
    bucket: Option<&[u8]>,
    changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    deflate: bool,
) -> Result<(Option<Vec<u8>>, Vec<Before>), ()> {
    let plain_bucket = match bucket {
        Some(bucket) => Some(plain(bucket).ok_or(())?),
        None => None,
    };
    let mut chats = match &plain_bucket {
        Some(bucket) => entries(bucket).ok_or(())?,
        None => Vec::new(),
    };
    let mut before = Vec::new();
    for (key, value) in changes {
        if key.len() != KEY_BYTES {
            return Err(());
        }
        let at = chats.partition_point(|(entry_key, _)| *entry_key < key);
        let present = chats.get(at).is_some_and(|(entry_key, _)| *entry_key == key);
        before.push(present.then(|| chats[at].1.to_vec()));
        match (value, present) {
            (Some(value), true) => chats[at].1 = value,
            (Some(value), false) => chats.insert(at, (key, value)),
            (None, true) => {
                chats.remove(at);
            }
            (None, false) => {}
        }
    }
    if chats.is_empty() {
        return Ok((None, before));
    }
    let encoded = encode(chats);
    Ok((Some(if deflate { deflated(&encoded) } else { encoded }), before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8, last: u8) -> [u8; KEY_BYTES] {
        let mut key = [first; KEY_BYTES];
        key[KEY_BYTES - 1] = last;
        key
    }

    #[test]
    fn buckets_keep_chats_in_key_order() {
        let (a, b, c) = (key(1, 1), key(1, 2), key(1, 3));
        let bucket = with(None, &c, Some(b"three"), false).unwrap().unwrap();
        let bucket = with(Some(&bucket), &a, Some(b"one"), false).unwrap().unwrap();
        let bucket = with(Some(&bucket), &b, Some(b""), false).unwrap().unwrap();
        let keys: Vec<&[u8]> = entries(&bucket).unwrap().iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, [&a[..], &b[..], &c[..]]);
        assert_eq!(find(&bucket, &b), Some(&b""[..]));
        let bucket = with(Some(&bucket), &a, Some(b"uno"), false).unwrap().unwrap();
        assert_eq!(find(&bucket, &a), Some(&b"uno"[..]));
        assert_eq!(entries(&bucket).unwrap().len(), 3);
        let bucket = with(Some(&bucket), &b, None, false).unwrap().unwrap();
        assert_eq!(find(&bucket, &b), None);
        let bucket = with(Some(&bucket), &a, None, false).unwrap().unwrap();
        assert_eq!(
            with(Some(&bucket), &c, None, false),
            Ok(None),
            "an empty bucket is removed"
        );
        assert_eq!(
            with(Some(&bucket), &a, None, false).unwrap().unwrap(),
            bucket,
            "removing an absent chat changes nothing"
        );
    }

    #[test]
    fn record_buckets_are_deflated() {
        let record = br#"{"key":"chat","chat":{"received_at":1,"ended_at":"2022-07-01T10:14:31Z"},"invitations":[]}"#;
        let mut bucket = None;
        for last in 0..16 {
            bucket = with(bucket.as_deref(), &key(4, last), Some(record), true).unwrap();
        }
        let bucket = bucket.unwrap();
        assert_eq!(bucket[0], FORMAT_DEFLATED);
        assert!(
            bucket.len() * 3 < 16 * record.len(),
            "compressed: {} bytes",
            bucket.len()
        );
        let plain_bucket = plain(&bucket).unwrap();
        assert_eq!(entries(&plain_bucket).unwrap().len(), 16);
        assert_eq!(find(&plain_bucket, &key(4, 9)), Some(&record[..]));
        let fewer = with(Some(&bucket), &key(4, 9), None, true).unwrap().unwrap();
        assert_eq!(entries(&plain(&fewer).unwrap()).unwrap().len(), 15);
        let mut damaged = bucket.clone();
        damaged.truncate(bucket.len() / 2);
        assert!(
            plain(&damaged).is_none_or(|cut| entries(&cut).is_none()),
            "a cut deflated bucket"
        );
    }

    #[test]
    fn short_keys_have_no_bucket() {
        assert_eq!(bucket_of(&[7]), None, "a damaged alias of one byte");
        assert_eq!(bucket_of(&[7, 8]), Some([7, 8]));
        assert_eq!(bucket_of(&key(5, 1)), Some([5, 5]));
        assert_eq!(
            with(None, &[7, 8, 9], Some(b"value"), false),
            Err(()),
            "keys are 16 bytes"
        );
    }

    #[test]
    fn damaged_buckets_are_refused() {
        let bucket = with(None, &key(2, 0), Some(b"value"), false).unwrap().unwrap();
        assert!(entries(&bucket[..bucket.len() - 1]).is_none(), "a cut value");
        assert!(entries(&bucket[..10]).is_none(), "a cut key");
        assert!(entries(&[]).is_none());
        let mut wrong_format = bucket.clone();
        wrong_format[0] = 7;
        assert!(entries(&wrong_format).is_none());
        assert_eq!(with(Some(&wrong_format), &key(2, 0), None, false), Err(()));
        assert_eq!(entries(&[FORMAT]).unwrap().len(), 0);
    }

    #[test]
    fn entries_report_the_value_before_each_change() {
        let (a, b) = (key(6, 1), key(6, 2));
        let (bucket, before) = with_entries(
            None,
            [
                (&a[..], Some(&b"a1"[..])),
                (&b[..], Some(&b"b"[..])),
                (&a[..], Some(&b"a2"[..])),
            ],
            true,
        )
        .unwrap();
        assert_eq!(before, vec![None, None, Some(b"a1".to_vec())]);
        let (bucket, before) = with_entries(bucket.as_deref(), [(&a[..], None), (&b[..], None)], true).unwrap();
        assert_eq!(before, vec![Some(b"a2".to_vec()), Some(b"b".to_vec())]);
        assert_eq!(bucket, None, "the last chat leaves an empty bucket, which goes");
    }
}
