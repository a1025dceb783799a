//! The subset of ONNX's messages the importer reads, decoded from the wire format.
//!
//! Field numbers are those of `onnx/onnx.proto` (ONNX 1.23): ModelProto `opset_import` = 8,
//! `graph` = 7; OperatorSetIdProto `domain` = 1, `version` = 2; GraphProto `node` = 1, `name` = 2,
//! `initializer` = 5, `input` = 11, `output` = 12, `value_info` = 13; NodeProto `input` = 1,
//! `output` = 2, `name` = 3, `op_type` = 4, `attribute` = 5, `domain` = 7; AttributeProto
//! `name` = 1, `f` = 2, `i` = 3, `s` = 4, `t` = 5, `floats` = 7, `ints` = 8, `type` = 20;
//! TensorProto `dims` = 1, `data_type` = 2, `int64_data` = 7, `name` = 8, `raw_data` = 9;
//! ValueInfoProto `name` = 1, `type` = 2; TypeProto `tensor_type` = 1; TypeProto.Tensor
//! `elem_type` = 1, `shape` = 2; TensorShapeProto `dim` = 1; Dimension `dim_value` = 1,
//! `dim_param` = 2. Every other field is skipped. Weights are never read: a tensor's values are
//! kept only when it is a small INT64 tensor (a Reshape's shape, a Pad's pads), and external
//! data is never opened.

use super::proto::{Value, WireError, fields, packed_varints};

/// TensorProto.DataType INT64.
pub const INT64: i32 = 7;
/// The most INT64 values kept from one tensor (shapes and pads are short).
const MAX_KEPT_VALUES: usize = 64;

/// A model that does not decode, with the message being read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed {message}: {wire}")]
    Wire { message: &'static str, wire: WireError },
    #[error("malformed {message}: field {field} at byte {at} has the wrong wire type")]
    FieldType { message: &'static str, field: u32, at: usize },
    #[error("malformed {message}: field {field} at byte {at} is not UTF-8")]
    Utf8 { message: &'static str, field: u32, at: usize },
    #[error("the model has no graph")]
    NoGraph,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// (domain, version) pairs; the default domain is "".
    pub opset_import: Vec<(String, i64)>,
    pub graph: Graph,
    /// `metadata_props` (key, value) pairs, in file order.
    pub metadata: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub value_info: Vec<ValueInfo>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Vec<u8>,
    pub t: Option<Tensor>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    /// AttributeProto.AttributeType (0 when absent).
    pub kind: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    /// The values of a small INT64 tensor (from `int64_data` or `raw_data`), else empty.
    pub int64s: Vec<i64>,
}

/// One dimension of a value's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Value(i64),
    Param(String),
    Unknown,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    /// None when the value has no shape (rank unknown).
    pub shape: Option<Vec<Dim>>,
}

type R<T> = Result<T, DecodeError>;

/// Walk the fields of `buf` (at file offset `base`), calling `f` on each.
fn each<'a>(message: &'static str, buf: &'a [u8], base: usize, mut f: impl FnMut(u32, Value<'a>, usize) -> R<()>) -> R<()> {
    for field in fields(buf, base) {
        let field = field.map_err(|wire| DecodeError::Wire { message, wire })?;
        f(field.number, field.value, field.at)?;
    }
    Ok(())
}

/// The file offset of `inner`, a slice of `outer` (which starts at `base`).
fn offset(outer: &[u8], base: usize, inner: &[u8]) -> usize {
    base + (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

fn bytes<'a>(message: &'static str, field: u32, at: usize, v: Value<'a>) -> R<&'a [u8]> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(DecodeError::FieldType { message, field, at }),
    }
}

fn string(message: &'static str, field: u32, at: usize, v: Value<'_>) -> R<String> {
    let b = bytes(message, field, at, v)?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8 { message, field, at })
}

fn varint(message: &'static str, field: u32, at: usize, v: Value<'_>) -> R<u64> {
    match v {
        Value::Varint(x) => Ok(x),
        _ => Err(DecodeError::FieldType { message, field, at }),
    }
}

/// A repeated int64 field, packed (one length-delimited value) or not (one varint per element).
fn push_ints(message: &'static str, field: u32, at: usize, v: Value<'_>, base: usize, out: &mut Vec<i64>) -> R<()> {
    match v {
        Value::Varint(x) => out.push(x as i64),
        Value::Bytes(b) => {
            out.extend(packed_varints(b, base).map_err(|wire| DecodeError::Wire { message, wire })?.into_iter().map(|x| x as i64))
        }
        _ => return Err(DecodeError::FieldType { message, field, at }),
    }
    Ok(())
}

/// A repeated float field, packed or not.
fn push_floats(message: &'static str, field: u32, at: usize, v: Value<'_>, out: &mut Vec<f32>) -> R<()> {
    match v {
        Value::Fixed32(x) => out.push(f32::from_bits(x)),
        Value::Bytes(b) if b.len().is_multiple_of(4) => {
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }
        _ => return Err(DecodeError::FieldType { message, field, at }),
    }
    Ok(())
}

/// Decode a ModelProto.
pub fn decode_model(buf: &[u8]) -> R<Model> {
    let mut m = Model::default();
    let mut graph = None;
    each("ModelProto", buf, 0, |n, v, at| {
        match n {
            7 => {
                let b = bytes("ModelProto", n, at, v)?;
                graph = Some(decode_graph(b, offset(buf, 0, b))?);
            }
            8 => {
                let b = bytes("ModelProto", n, at, v)?;
                m.opset_import.push(decode_opset(b, offset(buf, 0, b))?);
            }
            14 => {
                let b = bytes("ModelProto", n, at, v)?;
                m.metadata.push(decode_entry(b, offset(buf, 0, b))?);
            }
            _ => {}
        }
        Ok(())
    })?;
    m.graph = graph.ok_or(DecodeError::NoGraph)?;
    Ok(m)
}

fn decode_entry(buf: &[u8], base: usize) -> R<(String, String)> {
    const M: &str = "StringStringEntryProto";
    let (mut key, mut value) = (String::new(), String::new());
    each(M, buf, base, |n, v, at| {
        match n {
            1 => key = string(M, n, at, v)?,
            2 => value = string(M, n, at, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((key, value))
}

fn decode_opset(buf: &[u8], base: usize) -> R<(String, i64)> {
    const M: &str = "OperatorSetIdProto";
    let (mut domain, mut version) = (String::new(), 0);
    each(M, buf, base, |n, v, at| {
        match n {
            1 => domain = string(M, n, at, v)?,
            2 => version = varint(M, n, at, v)? as i64,
            _ => {}
        }
        Ok(())
    })?;
    Ok((domain, version))
}

fn decode_graph(buf: &[u8], base: usize) -> R<Graph> {
    const M: &str = "GraphProto";
    let mut g = Graph::default();
    each(M, buf, base, |n, v, at| {
        let sub = |v| bytes(M, n, at, v).map(|b| (b, offset(buf, base, b)));
        match n {
            1 => {
                let (b, o) = sub(v)?;
                g.nodes.push(decode_node(b, o)?);
            }
            2 => g.name = string(M, n, at, v)?,
            5 => {
                let (b, o) = sub(v)?;
                g.initializers.push(decode_tensor(b, o)?);
            }
            11..=13 => {
                let (b, o) = sub(v)?;
                let vi = decode_value_info(b, o)?;
                match n {
                    11 => g.inputs.push(vi),
                    12 => g.outputs.push(vi),
                    _ => g.value_info.push(vi),
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(g)
}

fn decode_node(buf: &[u8], base: usize) -> R<Node> {
    const M: &str = "NodeProto";
    let mut node = Node::default();
    each(M, buf, base, |n, v, at| {
        match n {
            1 => node.inputs.push(string(M, n, at, v)?),
            2 => node.outputs.push(string(M, n, at, v)?),
            3 => node.name = string(M, n, at, v)?,
            4 => node.op_type = string(M, n, at, v)?,
            5 => {
                let b = bytes(M, n, at, v)?;
                node.attributes.push(decode_attribute(b, offset(buf, base, b))?);
            }
            7 => node.domain = string(M, n, at, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(node)
}

fn decode_attribute(buf: &[u8], base: usize) -> R<Attribute> {
    const M: &str = "AttributeProto";
    let mut a = Attribute::default();
    each(M, buf, base, |n, v, at| {
        match n {
            1 => a.name = string(M, n, at, v)?,
            2 => match v {
                Value::Fixed32(x) => a.f = Some(f32::from_bits(x)),
                _ => return Err(DecodeError::FieldType { message: M, field: n, at }),
            },
            3 => a.i = Some(varint(M, n, at, v)? as i64),
            4 => a.s = bytes(M, n, at, v)?.to_vec(),
            5 => {
                let b = bytes(M, n, at, v)?;
                a.t = Some(decode_tensor(b, offset(buf, base, b))?);
            }
            7 => push_floats(M, n, at, v, &mut a.floats)?,
            8 => push_ints(M, n, at, v, base, &mut a.ints)?,
            20 => a.kind = varint(M, n, at, v)? as i64,
            _ => {}
        }
        Ok(())
    })?;
    Ok(a)
}

fn decode_tensor(buf: &[u8], base: usize) -> R<Tensor> {
    const M: &str = "TensorProto";
    let mut t = Tensor::default();
    let mut int64_data = Vec::new();
    let mut raw: &[u8] = &[];
    each(M, buf, base, |n, v, at| {
        match n {
            1 => push_ints(M, n, at, v, base, &mut t.dims)?,
            2 => t.data_type = varint(M, n, at, v)? as i32,
            // Only a few values are kept: a tensor of more is data, not a shape.
            7 if int64_data.len() <= MAX_KEPT_VALUES => push_ints(M, n, at, v, base, &mut int64_data)?,
            8 => t.name = string(M, n, at, v)?,
            9 => raw = bytes(M, n, at, v)?,
            _ => {}
        }
        Ok(())
    })?;
    if t.data_type == INT64 {
        if !int64_data.is_empty() && int64_data.len() <= MAX_KEPT_VALUES {
            t.int64s = int64_data;
        } else if !raw.is_empty() && raw.len() <= 8 * MAX_KEPT_VALUES && raw.len().is_multiple_of(8) {
            t.int64s = raw.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect();
        }
    }
    Ok(t)
}

fn decode_value_info(buf: &[u8], base: usize) -> R<ValueInfo> {
    const M: &str = "ValueInfoProto";
    let mut vi = ValueInfo::default();
    each(M, buf, base, |n, v, at| {
        match n {
            1 => vi.name = string(M, n, at, v)?,
            2 => {
                let b = bytes(M, n, at, v)?;
                // TypeProto: tensor_type = 1 (other kinds, sequences and maps, are left without a shape).
                each("TypeProto", b, offset(buf, base, b), |n2, v2, at2| {
                    if n2 == 1 {
                        let tb = bytes("TypeProto", n2, at2, v2)?;
                        decode_tensor_type(tb, offset(buf, base, tb), &mut vi)?;
                    }
                    Ok(())
                })?;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(vi)
}

fn decode_tensor_type(buf: &[u8], base: usize, vi: &mut ValueInfo) -> R<()> {
    const M: &str = "TypeProto.Tensor";
    each(M, buf, base, |n, v, at| {
        match n {
            1 => vi.elem_type = varint(M, n, at, v)? as i32,
            2 => {
                let b = bytes(M, n, at, v)?;
                let mut dims = Vec::new();
                each("TensorShapeProto", b, offset(buf, base, b), |n2, v2, at2| {
                    if n2 == 1 {
                        let db = bytes("TensorShapeProto", n2, at2, v2)?;
                        dims.push(decode_dim(db, offset(buf, base, db))?);
                    }
                    Ok(())
                })?;
                vi.shape = Some(dims);
            }
            _ => {}
        }
        Ok(())
    })
}

fn decode_dim(buf: &[u8], base: usize) -> R<Dim> {
    const M: &str = "TensorShapeProto.Dimension";
    let mut d = Dim::Unknown;
    each(M, buf, base, |n, v, at| {
        match n {
            1 => d = Dim::Value(varint(M, n, at, v)? as i64),
            2 => d = Dim::Param(string(M, n, at, v)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(d)
}
