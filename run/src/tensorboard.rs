//! TensorBoard scalar event files, written without TensorFlow or a protobuf crate.
//!
//! An event file is a sequence of TFRecords. Each record is
//!
//! ```text
//! u64 LE  length of data
//! u32 LE  masked CRC32C of the 8 length bytes
//! [u8]    data (one serialized `tensorflow.Event` protobuf)
//! u32 LE  masked CRC32C of data
//! ```
//!
//! where `mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8` (wrapping).
//! The first event carries `file_version = "brain.Event:2"`; every later one
//! carries a `Summary` of `simple_value` scalars. The few protobuf fields
//! needed are hand-encoded:
//!
//! ```text
//! Event         { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary       { repeated Value value = 1; }
//! Summary.Value { string tag = 1; float simple_value = 2; }
//! ```
//!
//! Files are named `events.out.tfevents.{unix_seconds}.{hostname}.{pid}`, which
//! TensorBoard's directory loader picks up (it looks for `tfevents` in the name).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `file_version` TensorBoard expects in the first event of a file.
const FILE_VERSION: &str = "brain.Event:2";

/// Protobuf wire types used here.
const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// Writes scalar summaries to one TensorBoard event file.
///
/// Writes are buffered; call [`EventWriter::flush`] to make them visible to a
/// running TensorBoard (dropping the writer also flushes, ignoring errors).
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new file `events.out.tfevents.{unix_seconds}.{hostname}.{pid}` in it, writing the file_version event.
    ///
    /// Never overwrites: if that name is taken (a second writer in the same
    /// second and process), a `.1`, `.2`, ... suffix is appended.
    pub fn create(dir: &Path) -> io::Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| annotate(e, "creating TensorBoard log dir", dir))?;
        let now = SystemTime::now();
        let seconds = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let base = format!("events.out.tfevents.{seconds}.{}.{}", hostname(), std::process::id());
        let mut attempt = 0u32;
        let (path, file) = loop {
            let name = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}.{attempt}")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
                Err(e) => return Err(annotate(e, "creating TensorBoard event file", &path)),
            }
        };
        let mut writer = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        let event = encode_file_version_event(wall_time(now));
        writer.write_record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar (wall time = now).
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> io::Result<()> {
        self.add_scalars(&[(tag, value)], step)
    }

    /// Several scalars in one event (one Summary with several values); wall time = now.
    ///
    /// An empty slice writes nothing.
    pub fn add_scalars(&mut self, values: &[(&str, f32)], step: i64) -> io::Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let event = encode_scalars_event(wall_time(SystemTime::now()), step, values);
        self.write_record(&event)
    }

    /// Flushes buffered events to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out
            .flush()
            .map_err(|e| annotate(e, "flushing TensorBoard event file", &self.path))
    }

    fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let record = frame_record(data);
        self.out
            .write_all(&record)
            .map_err(|e| annotate(e, "writing TensorBoard event file", &self.path))
    }
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Wraps an io error so its message names the file it concerns.
fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Seconds since the Unix epoch, as TensorBoard's `wall_time` double.
fn wall_time(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The host name for the file name, restricted to characters safe in a file
/// name; `localhost` when it cannot be found.
fn hostname() -> String {
    let raw = cml_proto::host_table::local_hostname();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

/// The masked CRC32C TFRecord stores (see the module docs).
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&len);
    record.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    record
}

/// Appends a base-128 varint.
fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_len_delimited(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// `Event.wall_time` (1, double) and `Event.step` (2, int64: negative steps
/// are ten-byte two's-complement varints, as protobuf encodes them).
fn put_event_header(buf: &mut Vec<u8>, wall_time: f64, step: i64) {
    put_key(buf, 1, WIRE_FIXED64);
    buf.extend_from_slice(&wall_time.to_le_bytes());
    put_key(buf, 2, WIRE_VARINT);
    put_varint(buf, step as u64);
}

/// The first event of a file: `Event { wall_time, step: 0, file_version }`.
fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32);
    put_event_header(&mut buf, wall_time, 0);
    put_len_delimited(&mut buf, 3, FILE_VERSION.as_bytes());
    buf
}

/// `Event { wall_time, step, summary: Summary { value: [Value { tag, simple_value }, ...] } }`.
fn encode_scalars_event(wall_time: f64, step: i64, values: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    let mut value = Vec::new();
    for (tag, simple_value) in values {
        value.clear();
        put_len_delimited(&mut value, 1, tag.as_bytes());
        put_key(&mut value, 2, WIRE_FIXED32);
        value.extend_from_slice(&simple_value.to_le_bytes());
        put_len_delimited(&mut summary, 1, &value);
    }
    let mut buf = Vec::with_capacity(summary.len() + 24);
    put_event_header(&mut buf, wall_time, step);
    put_len_delimited(&mut buf, 5, &summary);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Expected values computed independently in Python:
    //   mask(crc32c.crc32c(data)) with the `crc32c` pip package.
    #[test]
    fn masked_crc32c_matches_python() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283); // the CRC-32C check value
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(masked_crc32c(&13u64.to_le_bytes()), 0x34b8_373c);
        assert_eq!(masked_crc32c(b"brain.Event:2"), 0x7c06_01ee);
    }

    #[test]
    fn varints() {
        let enc = |v: u64| {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            buf
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(
            enc(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(enc(-1i64 as u64), enc(u64::MAX));
        for v in [0, 1, 127, 128, 255, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let bytes = enc(v);
            let mut pos = 0;
            assert_eq!(read_varint(&bytes, &mut pos), v);
            assert_eq!(pos, bytes.len());
        }
    }

    // Expected bytes from the `tensorboard` pip package's protobuf classes:
    //   event_pb2.Event(wall_time=1.5, step=7, summary=Summary(value=[Value(tag="a/b", simple_value=-0.25)]))
    //   event_pb2.Event(wall_time=1.5, step=-1, file_version="brain.Event:2")
    #[test]
    fn events_match_the_reference_protobuf_encoding() {
        assert_eq!(
            encode_scalars_event(1.5, 7, &[("a/b", -0.25)]),
            hex("09000000000000f83f10072a0c0a0a0a03612f6215000080be")
        );
        let mut file_version = Vec::new();
        put_event_header(&mut file_version, 1.5, -1);
        put_len_delimited(&mut file_version, 3, FILE_VERSION.as_bytes());
        assert_eq!(
            file_version,
            hex("09000000000000f83f10ffffffffffffffffff011a0d627261696e2e4576656e743a32")
        );
    }

    #[test]
    fn record_framing() {
        let record = frame_record(b"123456789");
        assert_eq!(record.len(), 8 + 4 + 9 + 4);
        assert_eq!(&record[..8], &9u64.to_le_bytes());
        assert_eq!(&record[8..12], &masked_crc32c(&9u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&record[12..21], b"123456789");
        assert_eq!(&record[21..], &0xc78a_b0e5u32.to_le_bytes());
    }

    // A minimal reader, independent of the encoder above.

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = buf[*pos];
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint longer than 10 bytes");
    }

    /// (field, wire type, payload) for each field of a message.
    fn fields(buf: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let (field, wire) = (key >> 3, key & 7);
            let payload = match wire {
                0 => {
                    let start = pos;
                    read_varint(buf, &mut pos);
                    buf[start..pos].to_vec()
                }
                1 => {
                    pos += 8;
                    buf[pos - 8..pos].to_vec()
                }
                2 => {
                    let len = read_varint(buf, &mut pos) as usize;
                    pos += len;
                    buf[pos - len..pos].to_vec()
                }
                5 => {
                    pos += 4;
                    buf[pos - 4..pos].to_vec()
                }
                other => panic!("unexpected wire type {other}"),
            };
            out.push((field, wire, payload));
        }
        assert_eq!(pos, buf.len());
        out
    }

    #[derive(Debug, Default, PartialEq)]
    struct Event {
        wall_time: f64,
        step: i64,
        file_version: Option<String>,
        values: Vec<(String, f32)>,
    }

    fn parse_event(buf: &[u8]) -> Event {
        let mut event = Event::default();
        for (field, wire, payload) in fields(buf) {
            match (field, wire) {
                (1, 1) => event.wall_time = f64::from_le_bytes(payload.try_into().unwrap()),
                (2, 0) => event.step = read_varint(&payload, &mut 0) as i64,
                (3, 2) => event.file_version = Some(String::from_utf8(payload).unwrap()),
                (5, 2) => {
                    for (f, w, value) in fields(&payload) {
                        assert_eq!((f, w), (1, 2), "Summary.value");
                        let (mut tag, mut simple) = (None, None);
                        for (f, w, p) in fields(&value) {
                            match (f, w) {
                                (1, 2) => tag = Some(String::from_utf8(p).unwrap()),
                                (2, 5) => simple = Some(f32::from_le_bytes(p.try_into().unwrap())),
                                other => panic!("unexpected Summary.Value field {other:?}"),
                            }
                        }
                        event.values.push((tag.unwrap(), simple.unwrap()));
                    }
                }
                other => panic!("unexpected Event field {other:?}"),
            }
        }
        event
    }

    /// Splits a file into records, checking lengths and both CRCs.
    fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < bytes.len() {
            let len_bytes = &bytes[pos..pos + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc32c(len_bytes), "length CRC of record {}", out.len());
            let data = &bytes[pos + 12..pos + 12 + len];
            let data_crc = u32::from_le_bytes(bytes[pos + 12 + len..pos + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data), "data CRC of record {}", out.len());
            out.push(data.to_vec());
            pos += 16 + len;
        }
        assert_eq!(pos, bytes.len(), "trailing bytes");
        out
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cml-tensorboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = temp_dir("round-trip");
        let mut writer = EventWriter::create(&dir.join("nested/run")).unwrap();
        let name = writer.path().file_name().unwrap().to_str().unwrap().to_string();
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(&parts[..3], ["events", "out", "tfevents"], "{name}");
        assert!(parts[3].parse::<u64>().unwrap() > 1_600_000_000, "{name}");
        assert_eq!(
            parts.last().unwrap().parse::<u32>().unwrap(),
            std::process::id(),
            "{name}"
        );

        let written: Vec<(i64, Vec<(String, f32)>)> = vec![
            (0, vec![("train/return".into(), 1.5)]),
            (1, vec![("train/return".into(), -2.25), ("train/loss".into(), 0.1)]),
            (-3, vec![("ünïcode/tag".into(), f32::MAX)]),
            (1 << 40, vec![("x".into(), f32::INFINITY), ("y".into(), -0.0)]),
        ];
        for (step, values) in &written {
            if let [(tag, value)] = values.as_slice() {
                writer.add_scalar(tag, *value, *step).unwrap();
            } else {
                let refs: Vec<(&str, f32)> = values.iter().map(|(t, v)| (t.as_str(), *v)).collect();
                writer.add_scalars(&refs, *step).unwrap();
            }
        }
        writer.add_scalars(&[], 99).unwrap(); // writes nothing
        writer.flush().unwrap();

        let bytes = std::fs::read(writer.path()).unwrap();
        let events: Vec<Event> = records(&bytes).iter().map(|r| parse_event(r)).collect();
        assert_eq!(events.len(), 1 + written.len());
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(events[0].step, 0);
        assert!(events[0].values.is_empty());
        for (event, (step, values)) in events[1..].iter().zip(&written) {
            assert_eq!(event.file_version, None);
            assert_eq!(event.step, *step);
            assert_eq!(event.values.len(), values.len());
            for ((tag, value), (want_tag, want_value)) in event.values.iter().zip(values) {
                assert_eq!(tag, want_tag);
                assert_eq!(value.to_bits(), want_value.to_bits());
            }
        }
        let now = wall_time(SystemTime::now());
        for pair in events.windows(2) {
            assert!(pair[0].wall_time <= pair[1].wall_time);
        }
        assert!(events[0].wall_time > now - 60.0 && events.last().unwrap().wall_time <= now);
        drop(writer);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_overwrites_an_existing_file() {
        let dir = temp_dir("no-overwrite");
        let mut a = EventWriter::create(&dir).unwrap();
        let b = EventWriter::create(&dir).unwrap();
        assert_ne!(a.path(), b.path());
        a.add_scalar("t", 1.0, 1).unwrap();
        a.flush().unwrap();
        assert_eq!(records(&std::fs::read(a.path()).unwrap()).len(), 2);
        assert_eq!(records(&std::fs::read(b.path()).unwrap()).len(), 1);
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_path() {
        let dir = temp_dir("errors");
        std::fs::create_dir_all(&dir).unwrap();
        let blocker = dir.join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let err = EventWriter::create(&blocker.join("run")).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
