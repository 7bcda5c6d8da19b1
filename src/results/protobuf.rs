//! The Protocol Buffers wire format, as far as the files runner writes for other tools need it:
//! ONNX models and TensorBoard event files are protobuf messages. Writing a message is a few
//! dozen lines, where a protobuf crate would bring a code generator and the schemas of both
//! projects (the Rust ONNX and TensorBoard crates are unmaintained), so it is done here.
//!
//! A message is built field by field, in field-number order by convention; nested messages
//! are built first and added whole.

/// A message being written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
}

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

impl Message {
    /// An empty message.
    pub fn new() -> Message {
        Message::default()
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        put_varint(&mut self.bytes, u64::from(field << 3 | wire_type));
    }

    /// An unsigned integer, bool or enum field (`uint64`, `int32` ≥ 0, `bool`, enums).
    pub fn varint(&mut self, field: u32, value: u64) -> &mut Message {
        self.key(field, VARINT);
        put_varint(&mut self.bytes, value);
        self
    }

    /// An `int64` field (negative values take ten bytes, as the format says).
    pub fn int64(&mut self, field: u32, value: i64) -> &mut Message {
        self.varint(field, value as u64)
    }

    /// A `double` field.
    pub fn double(&mut self, field: u32, value: f64) -> &mut Message {
        self.key(field, FIXED64);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, value: f32) -> &mut Message {
        self.key(field, FIXED32);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, value: &[u8]) -> &mut Message {
        self.key(field, LENGTH_DELIMITED);
        put_varint(&mut self.bytes, value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, value: &str) -> &mut Message {
        self.bytes(field, value.as_bytes())
    }

    /// A nested message field.
    pub fn message(&mut self, field: u32, value: &Message) -> &mut Message {
        self.bytes(field, &value.bytes)
    }

    /// A packed `repeated float` field.
    pub fn packed_floats(&mut self, field: u32, values: &[f32]) -> &mut Message {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &raw)
    }

    /// A packed `repeated int64` field.
    pub fn packed_int64s(&mut self, field: u32, values: &[i64]) -> &mut Message {
        let mut raw = Vec::new();
        values.iter().for_each(|&v| put_varint(&mut raw, v as u64));
        self.bytes(field, &raw)
    }

    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded message, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Base-128 varint: seven bits a byte, least significant first, high bit set on all but the last.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of the Protocol Buffers encoding guide.
    #[test]
    fn encodes_the_guides_examples() {
        assert_eq!(Message::new().varint(1, 150).as_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(Message::new().string(2, "testing").as_bytes(), b"\x12\x07testing");
        let inner = {
            let mut m = Message::new();
            m.varint(1, 150);
            m
        };
        assert_eq!(Message::new().message(3, &inner).as_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        assert_eq!(
            Message::new().packed_int64s(4, &[3, 270, 86942]).as_bytes(),
            [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]
        );
    }

    #[test]
    fn negative_int64s_take_ten_bytes_and_floats_are_little_endian() {
        assert_eq!(
            Message::new().int64(1, -1).as_bytes(),
            [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(Message::new().float(2, 1.0).as_bytes(), [0x15, 0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(Message::new().double(3, 1.0).as_bytes(), [0x19, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    }
}
