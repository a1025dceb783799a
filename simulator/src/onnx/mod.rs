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
    import::import_graph(&model.graph, opts).map_err(|error| OnnxError::Import { origin: origin.to_string(), error })
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
