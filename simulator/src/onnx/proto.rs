//! The protobuf wire format, read only: just enough to walk ONNX messages.
//!
//! A message is a sequence of fields, each a key varint `(number << 3) | wire_type` followed by
//! its value: wire type 0 a varint, 1 eight little-endian bytes, 2 a length varint and that many
//! bytes (strings, bytes, sub-messages, packed repeated scalars), 5 four little-endian bytes.
//! Wire types 3 and 4 (groups) are deprecated and never used by ONNX; they are refused.
//! See <https://protobuf.dev/programming-guides/encoding/>.
//!
//! The reader is bounded and never panics: every read is checked against the buffer's end, and
//! every malformed input is a [`WireError`] carrying the byte offset.

/// A malformed protobuf byte string; `at` is the byte offset of the fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated protobuf at byte {at}")]
    Truncated { at: usize },
    #[error("varint longer than 10 bytes at byte {at}")]
    VarintTooLong { at: usize },
    #[error("unsupported protobuf wire type {wire_type} at byte {at}")]
    WireType { at: usize, wire_type: u8 },
    #[error("protobuf field number 0 at byte {at}")]
    FieldZero { at: usize },
    #[error("length {len} at byte {at} runs past the end of the message")]
    Length { at: usize, len: u64 },
}

/// One field's value, borrowed from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// One field: its number and value, and the byte offset of its key (for error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub at: usize,
}

/// The fields of one message, in order; unknown fields are returned too, for the caller to skip.
/// `base` is the message's offset in the whole file, so errors point into the file.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

/// The fields of the message `buf`, which starts at byte `base` of the file.
pub fn fields(buf: &[u8], base: usize) -> Fields<'_> {
    Fields { buf, pos: 0, base, failed: false }
}

/// Read a varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(WireError::Truncated { at: base + *pos })?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::VarintTooLong { at: base + start })
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize, base: usize) -> Result<&'a [u8], WireError> {
    let end = pos.checked_add(n).filter(|e| *e <= buf.len()).ok_or(WireError::Truncated { at: base + *pos })?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Field<'a>, WireError> {
        let (buf, base) = (self.buf, self.base);
        let at = base + self.pos;
        let key = read_varint(buf, &mut self.pos, base)?;
        let wire_type = (key & 7) as u8;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::FieldZero { at })?;
        if number == 0 {
            return Err(WireError::FieldZero { at });
        }
        let value = match wire_type {
            0 => Value::Varint(read_varint(buf, &mut self.pos, base)?),
            1 => {
                let b = take(buf, &mut self.pos, 8, base)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().map_err(|_| WireError::Truncated { at })?))
            }
            2 => {
                let len_at = base + self.pos;
                let len = read_varint(buf, &mut self.pos, base)?;
                let n = usize::try_from(len).map_err(|_| WireError::Length { at: len_at, len })?;
                if n > buf.len() - self.pos {
                    return Err(WireError::Length { at: len_at, len });
                }
                Value::Bytes(take(buf, &mut self.pos, n, base)?)
            }
            5 => {
                let b = take(buf, &mut self.pos, 4, base)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().map_err(|_| WireError::Truncated { at })?))
            }
            _ => return Err(WireError::WireType { at, wire_type }),
        };
        Ok(Field { number, value, at })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    /// The next field, or the error that stops the iteration (after an error, `None`).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.next_field();
        self.failed = r.is_err();
        Some(r)
    }
}

/// The varints of a packed repeated field.
pub fn packed_varints(bytes: &[u8], base: usize) -> Result<Vec<u64>, WireError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        out.push(read_varint(bytes, &mut pos, base)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type() {
        // field 1 varint 150; field 2 bytes "hi"; field 3 fixed32 1.0f; field 4 fixed64 7; field 5 varint -1 (10 bytes)
        let mut b = vec![0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d];
        b.extend(1.0f32.to_le_bytes());
        b.push(0x21);
        b.extend(7u64.to_le_bytes());
        b.extend([0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let got: Vec<_> = fields(&b, 0).map(|f| f.unwrap()).map(|f| (f.number, f.value)).collect();
        assert_eq!(
            got,
            vec![
                (1, Value::Varint(150)),
                (2, Value::Bytes(b"hi")),
                (3, Value::Fixed32(1.0f32.to_bits())),
                (4, Value::Fixed64(7)),
                (5, Value::Varint(u64::MAX)),
            ]
        );
        assert_eq!(u64::MAX as i64, -1);
    }

    #[test]
    fn packed_varints_read() {
        assert_eq!(packed_varints(&[0x01, 0x96, 0x01, 0x00], 0).unwrap(), vec![1, 150, 0]);
        assert_eq!(packed_varints(&[0x96], 5).unwrap_err(), WireError::Truncated { at: 6 });
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let first = |b: &[u8]| fields(b, 100).next().unwrap().unwrap_err();
        assert_eq!(first(&[0x08]), WireError::Truncated { at: 101 });
        assert_eq!(first(&[0x12, 0x05, b'a']), WireError::Length { at: 101, len: 5 });
        assert_eq!(first(&[0x0b]), WireError::WireType { at: 100, wire_type: 3 });
        assert_eq!(first(&[0x00]), WireError::FieldZero { at: 100 });
        assert_eq!(first(&[0x80; 11]), WireError::VarintTooLong { at: 100 });
        assert_eq!(first(&[0x1d, 0, 0]), WireError::Truncated { at: 101 });
        assert_eq!(first(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), WireError::Length { at: 101, len: u64::MAX });
        // After an error the iteration stops.
        let mut it = fields(&[0x08], 0);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
