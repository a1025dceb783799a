//! ONNX workload import, shapes only: a model file's Conv, Gemm and MatMul nodes as [`Layer`]s.
//!
//! A folder module in one-way order: `proto` (the protobuf wire format, bounded, never panicking)
//! -> `model` (the ONNX messages read: graph, nodes, attributes, tensors' dims, value infos) ->
//! `import` (shape propagation and layers). No weights are read and external data is never
//! opened. The reader is hand-written rather than a dependency: ONNX needs about ten messages and
//! a few dozen fields, `prost`/`protobuf` would bring code generation (and `protoc` or generated
//! sources), and `onnx-ir` pulls in burn, which this crate must not depend on.

mod import;
mod model;
mod shape;
mod proto;

pub use import::{ImportError, OnnxOptions, int_type_bits};
pub use model::DecodeError;
pub use proto::WireError;

use crate::layer::Layer;
use std::path::Path;

/// A model that cannot be imported, on one line naming the file (and the node and operator).
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{origin}: cannot read the ONNX file: {error}")]
    Io { origin: String, error: std::io::Error },
    #[error("{origin}: not a readable ONNX model: {error}")]
    Decode { origin: String, error: DecodeError },
    #[error("{origin}: {error}")]
    Import { origin: String, error: ImportError },
}

/// Read an ONNX model file's layers.
pub fn read_onnx(path: &Path, opts: &OnnxOptions) -> Result<Vec<Layer>, OnnxError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| OnnxError::Io { origin: origin.clone(), error })?;
    parse_onnx(&bytes, &origin, opts)
}

/// Import the layers of an ONNX model's bytes; `origin` names it in errors.
pub fn parse_onnx(bytes: &[u8], origin: &str, opts: &OnnxOptions) -> Result<Vec<Layer>, OnnxError> {
    let model = model::decode_model(bytes).map_err(|error| OnnxError::Decode { origin: origin.to_string(), error })?;
    let mut layers = import::import_graph(&model.graph, opts).map_err(|error| OnnxError::Import { origin: origin.to_string(), error })?;
    if let Some((_, json)) = model.metadata.iter().find(|(k, _)| k == EXPORTED_LAYERS_KEY) {
        apply_exported_bits(&mut layers, json);
    }
    Ok(layers)
}

/// The metadata key under which `bitfusion supernet export` records every layer's name and exact
/// bits (a JSON list of objects with `name`, `w_bits`, `a_bits`): 6-bit operands travel in
/// 8-bit QDQ containers, so the graph alone reads them as 8 bits.
pub const EXPORTED_LAYERS_KEY: &str = "bitfusion.layers";

/// Take each layer's bits from an export's layer list, by name; entries that are not of that
/// shape, and layers it does not name, keep the bits read off the graph.
fn apply_exported_bits(layers: &mut [Layer], json: &str) {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str::<serde_json::Value>(json) else { return };
    let bits = |e: &serde_json::Value, k: &str| e.get(k).and_then(|b| b.as_u64()).filter(|b| (1..=16).contains(b)).map(|b| b as u32);
    for e in &entries {
        let Some(name) = e.get("name").and_then(|n| n.as_str()) else { continue };
        if let (Some(layer), Some(w), Some(a)) = (layers.iter_mut().find(|l| l.name == name), bits(e, "w_bits"), bits(e, "a_bits")) {
            layer.w_bits = w;
            layer.a_bits = a;
        }
    }
}

/// A graph output's shape as the file declares it and as the importer propagates it (symbolic
/// dimensions take the batch); `None` where unknown (no declared shape, or nothing produced it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputShape {
    pub name: String,
    pub declared: Option<Vec<u64>>,
    pub inferred: Option<Vec<u64>>,
}

/// Propagate shapes through an ONNX model's bytes and report its graph outputs' shapes (a model
/// without a Conv, Gemm or MatMul is fine here): how the tests check the importer's shape rules
/// against the shapes real exporters declare.
pub fn output_shapes(bytes: &[u8], origin: &str, opts: &OnnxOptions) -> Result<Vec<OutputShape>, OnnxError> {
    let model = model::decode_model(bytes).map_err(|error| OnnxError::Decode { origin: origin.to_string(), error })?;
    let (shapes, _) = import::propagate(&model.graph, opts).map_err(|error| OnnxError::Import { origin: origin.to_string(), error })?;
    Ok(model
        .graph
        .outputs
        .iter()
        .map(|o| OutputShape {
            name: o.name.clone(),
            declared: o.shape.as_deref().and_then(|d| import::declared_shape(d, opts.batch)),
            inferred: shapes.get(&o.name).cloned(),
        })
        .collect())
}

/// Whether a path names an ONNX file (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_bits_override_by_name_and_bad_entries_are_ignored() {
        let mut layers = vec![Layer::fc("classifier", 1, 8, 4, 8, 8), Layer::fc("other", 1, 8, 4, 8, 8)];
        apply_exported_bits(&mut layers, r#"[{"name": "classifier", "w_bits": 6, "a_bits": 2}, {"name": "other", "w_bits": 99, "a_bits": 4}, 3]"#);
        assert_eq!((layers[0].w_bits, layers[0].a_bits), (6, 2));
        assert_eq!((layers[1].w_bits, layers[1].a_bits), (8, 8));
        apply_exported_bits(&mut layers, "not json");
        assert_eq!((layers[0].w_bits, layers[0].a_bits), (6, 2));
    }
}
