//! Tensor files outside readers load: safetensors (<https://github.com/huggingface/safetensors>:
//! an 8-byte little-endian header length, a JSON header of dtypes, shapes and byte offsets plus
//! a `__metadata__` map of strings, padded with spaces to a multiple of 8, then the data) and
//! NumPy's `.npy` (format 1.0: magic, a Python-literal header padded to a multiple of 64, then
//! the data).

use serde_json::{Map, Value, json};

/// One tensor's element type and bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I8(Vec<i8>),
    I16(Vec<i16>),
}

impl TensorData {
    fn dtype(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "F32",
            TensorData::I8(_) => "I8",
            TensorData::I16(_) => "I16",
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
        }
    }
}

/// A named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// The safetensors file of `tensors` (in this order) with string `metadata`.
pub fn safetensors(tensors: &[NamedTensor], metadata: &[(String, String)]) -> Vec<u8> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), Value::Object(metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()));
    let mut data = Vec::new();
    for t in tensors {
        debug_assert_eq!(t.shape.iter().product::<usize>(), t.data.len(), "{}", t.name);
        let begin = data.len();
        data.extend(t.data.bytes());
        header.insert(t.name.clone(), json!({"dtype": t.data.dtype(), "shape": t.shape, "data_offsets": [begin, data.len()]}));
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("a JSON map serialises");
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend((head.len() as u64).to_le_bytes());
    out.extend(head);
    out.extend(data);
    out
}

/// A little-endian f32 `.npy` array of `shape` (C order).
pub fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut head = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}").into_bytes();
    // Magic (6) + version (2) + length (2) + header, padded with spaces and ended by a newline.
    while (10 + head.len() + 1) % 64 != 0 {
        head.push(b' ');
    }
    head.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((head.len() as u16).to_le_bytes());
    out.extend(head);
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_layout_is_header_then_contiguous_data() {
        let t = [
            NamedTensor { name: "a".into(), shape: vec![2], data: TensorData::F32(vec![1.0, -2.0]) },
            NamedTensor { name: "b".into(), shape: vec![3], data: TensorData::I8(vec![-2, 0, 1]) },
        ];
        let bytes = safetensors(&t, &[("bits".into(), "4".into())]);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["bits"], "4");
        assert_eq!(header["a"]["data_offsets"], json!([0, 8]));
        assert_eq!(header["b"]["dtype"], "I8");
        let data = &bytes[8 + n..];
        assert_eq!(data.len(), 11);
        assert_eq!(f32::from_le_bytes(data[4..8].try_into().unwrap()), -2.0);
        assert_eq!(data[8], 0xFE);
    }

    #[test]
    fn npy_header_is_aligned_to_64() {
        let b = npy_f32(&[2, 3], &[0.0; 6]);
        let h = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + h) % 64, 0);
        assert!(std::str::from_utf8(&b[10..10 + h]).unwrap().contains("'shape': (2, 3)"));
        assert_eq!(b.len(), 10 + h + 24);
        assert!(String::from_utf8_lossy(&npy_f32(&[5], &[0.0; 5])).contains("(5,)"));
    }
}
