//! A protocol-buffers encoder for the few ONNX messages the exporter writes: varints,
//! length-delimited fields and 32-bit floats (wire types 0, 2 and 5 of
//! <https://protobuf.dev/programming-guides/encoding/>). Repeated scalars are written unpacked,
//! which every proto2 and proto3 parser accepts.

/// One message being encoded.
#[derive(Clone, Debug, Default)]
pub(super) struct Message {
    bytes: Vec<u8>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Message {
    pub(super) fn new() -> Message {
        Message::default()
    }

    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.bytes, (u64::from(field) << 3) | u64::from(wire));
    }

    /// An int32/int64/enum field (negative values as ten-byte two's complement, as protobuf does).
    pub(super) fn int(mut self, field: u32, v: i64) -> Message {
        self.key(field, 0);
        varint(&mut self.bytes, v as u64);
        self
    }

    /// A repeated int64 field, one entry per value.
    pub(super) fn ints(mut self, field: u32, values: &[i64]) -> Message {
        for &v in values {
            self = self.int(field, v);
        }
        self
    }

    pub(super) fn float(mut self, field: u32, v: f32) -> Message {
        self.key(field, 5);
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn bytes(mut self, field: u32, data: &[u8]) -> Message {
        self.key(field, 2);
        varint(&mut self.bytes, data.len() as u64);
        self.bytes.extend_from_slice(data);
        self
    }

    pub(super) fn string(self, field: u32, s: &str) -> Message {
        self.bytes(field, s.as_bytes())
    }

    pub(super) fn message(self, field: u32, m: &Message) -> Message {
        self.bytes(field, &m.bytes)
    }

    pub(super) fn messages<'a>(mut self, field: u32, ms: impl IntoIterator<Item = &'a Message>) -> Message {
        for m in ms {
            self = self.message(field, m);
        }
        self
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_specification_examples() {
        // protobuf.dev's examples: field 1 = 150 is 08 96 01; field 2 = "testing" is 12 07 74 65 73 74 69 6e 67.
        assert_eq!(Message::new().int(1, 150).into_bytes(), vec![0x08, 0x96, 0x01]);
        assert_eq!(Message::new().string(2, "testing").into_bytes(), b"\x12\x07testing".to_vec());
        // -1 as int64: ten bytes.
        let neg = Message::new().int(1, -1).into_bytes();
        assert_eq!(neg.len(), 11);
        assert_eq!(neg[10], 0x01);
        // A float: key (field 2, wire 5) = 0x15, then little-endian bits.
        assert_eq!(Message::new().float(2, 1.0).into_bytes(), vec![0x15, 0, 0, 0x80, 0x3f]);
        // Nested messages are length-delimited.
        let inner = Message::new().int(1, 150);
        assert_eq!(Message::new().message(3, &inner).into_bytes(), vec![0x1a, 0x03, 0x08, 0x96, 0x01]);
    }
}
