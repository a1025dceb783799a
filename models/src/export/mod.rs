//! The found network, deployable: an extracted, recalibrated subnet written as safetensors
//! (weights, integer codes, steps, batch-norm statistics, with the bits, the layer structure and
//! the provenance in the metadata) or as an ONNX QDQ graph any ONNX runtime runs, computing the
//! project's own quantized evaluation.
//!
//! Internal order: [`network`] (the subnet as plain data) -> [`protobuf`] -> [`onnx`] (the graph),
//! and [`tensors`] (safetensors and `.npy` files); this facade prepares a subnet and writes it.

pub mod network;
pub mod onnx;
mod protobuf;
pub mod tensors;

use std::path::{Path, PathBuf};

use bitfusion_search::{Arch, Space};
use burn::prelude::*;
use serde_json::json;

use crate::data::DataSet;
use crate::eval::{self, EvalConfig};
use crate::quant::Quantizer;
use crate::supernet::{Calibration, Plan, Residual, Supernet, Weights};
pub use network::{ActivationQuant, BatchNorm, ExportedConv, ExportedLinear, ExportedNetwork, InputSpec, WeightQuant};
pub use tensors::{NamedTensor, TensorData, npy_f32, safetensors};

/// What went wrong writing an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: unknown export format (the name must end in .onnx or .safetensors)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The file formats a subnet is exported to, chosen by the file name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Onnx,
    Safetensors,
}

impl ExportFormat {
    pub fn from_path(path: &Path) -> Result<ExportFormat, ExportError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("onnx") => Ok(ExportFormat::Onnx),
            Some("safetensors") => Ok(ExportFormat::Safetensors),
            _ => Err(ExportError::UnknownFormat { path: path.to_path_buf() }),
        }
    }
}

/// A subnet extracted from a supernet and recalibrated, ready to export and to evaluate.
pub struct Prepared {
    pub plan: Plan,
    pub weights: Weights,
    pub calibration: Calibration,
    pub network: ExportedNetwork,
}

/// Extract `arch` from `net`, quantize it with its own bits and `quantizer`, and recalibrate its
/// batch norms and activation steps on `cfg.calibration_images` training images: the network
/// [`eval::accuracy`] measures.
pub fn prepare(net: &Supernet, space: &Space, arch: &Arch, data: &DataSet, cfg: &EvalConfig, quantizer: Quantizer, device: &Device) -> Prepared {
    let plain = device.clone().without_autodiff();
    let (mut plan, sub) = net.valid().extract(space, arch);
    plan.quantizer = quantizer;
    let weights = sub.view();
    let calibration = eval::calibrate(&plan, &weights, data, cfg, true, &plain);
    let network = ExportedNetwork::new(space, arch, &plan, &weights, &calibration, data);
    Prepared { plan, weights, calibration, network }
}

fn grid_json(q: Option<&ActivationQuant>) -> serde_json::Value {
    q.map_or(serde_json::Value::Null, |q| json!({"bits": q.bits, "lo": q.grid.lo, "hi": q.grid.hi, "step": q.step}))
}

/// The layer structure as JSON (one object per layer, forward order): shapes, bits, grids and
/// steps, what follows each batch norm.
pub fn layers_json(net: &ExportedNetwork) -> String {
    let mut layers: Vec<serde_json::Value> = net
        .convs
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "kind": "conv", "in_channels": c.in_channels, "out_channels": c.out_channels,
                "kernel": c.kernel, "stride": c.stride, "padding": c.kernel / 2, "groups": c.groups,
                "w_bits": c.w_bits, "a_bits": c.a_bits,
                "weight_grid": c.weight_quant.as_ref().map(|w| json!({"lo": w.grid.lo, "hi": w.grid.hi})),
                "input_quant": grid_json(c.input_quant.as_ref()), "output_quant": grid_json(c.output_quant.as_ref()),
                "relu6": c.relu6,
                "residual": match c.residual { Residual::None => "none", Residual::Save => "save", Residual::Add => "add" },
            })
        })
        .collect();
    let fc = &net.classifier;
    layers.push(json!({
        "name": "classifier", "kind": "linear", "in_features": fc.in_features, "out_features": fc.out_features,
        "w_bits": fc.bits, "a_bits": fc.bits,
        "weight_grid": fc.weight_quant.as_ref().map(|w| json!({"lo": w.grid.lo, "hi": w.grid.hi})),
        "input_quant": grid_json(fc.input_quant.as_ref()),
    }));
    serde_json::to_string(&layers).expect("JSON values serialise")
}

/// Metadata of every export: `provenance` (hashes and costs, from the caller) plus the
/// architecture, quantizer, preprocessing and layer structure of `net`.
pub fn metadata(net: &ExportedNetwork, provenance: &[(String, String)]) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = vec![
        ("bitfusion.format".into(), "bitfusion-subnet-1".into()),
        ("bitfusion.arch".into(), net.arch.clone()),
        ("bitfusion.space".into(), net.space.clone()),
        ("bitfusion.quantizer".into(), net.quantizer.name().into()),
        (
            "bitfusion.preprocessing".into(),
            json!({"input": "uint8 pixels, NCHW", "channels": net.input.channels, "size": net.input.size, "formula": "(pixel / 255 - mean[c]) / std[c]", "mean": net.input.mean, "std": net.input.std}).to_string(),
        ),
        ("bitfusion.layers".into(), layers_json(net)),
    ];
    m.extend(provenance.iter().map(|(k, v)| (format!("bitfusion.{k}"), v.clone())));
    m
}

fn codes_tensor(name: String, shape: Vec<usize>, w: &WeightQuant) -> NamedTensor {
    let data = if w.grid.lo >= i8::MIN as i32 && w.grid.hi <= i8::MAX as i32 {
        TensorData::I8(w.codes.iter().map(|&c| c as i8).collect())
    } else {
        TensorData::I16(w.codes.iter().map(|&c| c as i16).collect())
    };
    NamedTensor { name, shape, data }
}

fn f32s(name: String, shape: Vec<usize>, v: &[f32]) -> NamedTensor {
    NamedTensor { name, shape, data: TensorData::F32(v.to_vec()) }
}

/// Every tensor of `net`: per layer the float weight, its integer codes and per-channel steps
/// (quantized layers), batch-norm parameters and statistics, and the activation steps.
pub fn tensors(net: &ExportedNetwork) -> Vec<NamedTensor> {
    let mut t = Vec::new();
    for c in &net.convs {
        let n = &c.name;
        let shape = vec![c.out_channels, c.in_channels / c.groups, c.kernel, c.kernel];
        t.push(f32s(format!("{n}.weight"), shape.clone(), &c.weight));
        if let Some(w) = &c.weight_quant {
            t.push(codes_tensor(format!("{n}.weight_codes"), shape, w));
            t.push(f32s(format!("{n}.weight_scale"), vec![c.out_channels], &w.steps));
        }
        let bn = &c.batch_norm;
        for (what, v) in [("gamma", &bn.gamma), ("beta", &bn.beta), ("mean", &bn.mean), ("var", &bn.var)] {
            t.push(f32s(format!("{n}.bn.{what}"), vec![c.out_channels], v));
        }
        if let Some(q) = &c.input_quant {
            t.push(f32s(format!("{n}.input_scale"), vec![1], &[q.step]));
        }
        if let Some(q) = &c.output_quant {
            t.push(f32s(format!("{n}.output_scale"), vec![1], &[q.step]));
        }
    }
    let fc = &net.classifier;
    t.push(f32s("classifier.weight".into(), vec![fc.out_features, fc.in_features], &fc.weight));
    if let Some(w) = &fc.weight_quant {
        t.push(codes_tensor("classifier.weight_codes".into(), vec![fc.out_features, fc.in_features], w));
        t.push(f32s("classifier.weight_scale".into(), vec![fc.out_features], &w.steps));
    }
    t.push(f32s("classifier.bias".into(), vec![fc.out_features], &fc.bias));
    if let Some(q) = &fc.input_quant {
        t.push(f32s("classifier.input_scale".into(), vec![1], &[q.step]));
    }
    t
}

/// The bytes of `net` in `format`, with `provenance` in the metadata.
pub fn encode(net: &ExportedNetwork, format: ExportFormat, provenance: &[(String, String)]) -> Vec<u8> {
    let meta = metadata(net, provenance);
    match format {
        ExportFormat::Onnx => onnx::to_onnx(net, &meta),
        ExportFormat::Safetensors => safetensors(&tensors(net), &meta),
    }
}

/// Write `net` to `path` (format by extension), atomically.
pub fn write(path: &Path, net: &ExportedNetwork, provenance: &[(String, String)]) -> Result<ExportFormat, ExportError> {
    let format = ExportFormat::from_path(path)?;
    let io = |source| ExportError::Io { path: path.to_path_buf(), source };
    bitfusion_util::create_parent(path).map_err(io)?;
    bitfusion_util::write_atomic(path, &encode(net, format, provenance)).map_err(io)?;
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::toy;
    use bitfusion_search::evolution::largest;
    use bitfusion_simulator::onnx::{OnnxOptions, parse_onnx};

    #[test]
    fn the_exported_graph_reads_back_as_the_architectures_layers() {
        let dir = std::env::temp_dir().join(format!("bitfusion-export-unit-{}", std::process::id()));
        let data = toy::data(&dir, 160, 20);
        let space = toy::space();
        let device = Device::flex();
        let net = Supernet::new(&space, 3, &device);
        let mut arch = largest(&space, 8);
        let bits = [(2, 4, 8, 2), (4, 8, 2, 4), (8, 2, 4, 8)];
        for (i, b) in arch.stages.iter_mut().flatten().enumerate() {
            (b.pw_w, b.pw_a, b.dw_w, b.dw_a) = bits[i % 3];
        }
        let cfg = EvalConfig { calibration_images: 64, eval_images: None, batch: 32 };
        let p = prepare(&net, &space, &arch, &data, &cfg, Quantizer::MseClip, &device);
        assert_eq!(p.network.convs.len() + 1, arch.layers(&space, 1).len());
        // Every layer of a quantized plan quantizes its input once: here or fused into the
        // previous layer's output.
        for (i, c) in p.network.convs.iter().enumerate() {
            let fused = i > 0 && p.network.convs[i - 1].output_quant.is_some();
            assert!(c.input_quant.is_some() != fused, "{}", c.name);
        }
        let bytes = encode(&p.network, ExportFormat::Onnx, &[("checkpoint_sha256".into(), "abc".into())]);
        let layers = parse_onnx(&bytes, "export", &OnnxOptions::default()).unwrap();
        let want = arch.layers(&space, 1);
        assert_eq!(layers.len(), want.len());
        for (got, want) in layers.iter().zip(&want) {
            assert_eq!(got.name, want.name);
            assert_eq!(
                (got.in_channels, got.out_channels, got.in_h, got.kernel, got.stride, got.groups, got.w_bits, got.a_bits),
                (want.in_channels, want.out_channels, want.in_h, want.kernel, want.stride, want.groups, want.w_bits, want.a_bits),
                "{}",
                want.name
            );
        }
        // safetensors: every tensor, the layers and the provenance in the metadata.
        let st = encode(&p.network, ExportFormat::Safetensors, &[("checkpoint_sha256".into(), "abc".into())]);
        let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["bitfusion.checkpoint_sha256"], "abc");
        assert_eq!(header["__metadata__"]["bitfusion.arch"], arch.to_text());
        assert_eq!(header["stem.weight_codes"]["dtype"], "I8");
        assert_eq!(header.as_object().unwrap().len() - 1, tensors(&p.network).len());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(ExportFormat::from_path(Path::new("a/net.onnx")).unwrap(), ExportFormat::Onnx);
        assert_eq!(ExportFormat::from_path(Path::new("net.safetensors")).unwrap(), ExportFormat::Safetensors);
        let e = ExportFormat::from_path(Path::new("net.pt")).unwrap_err().to_string();
        assert!(e.contains("net.pt") && e.contains(".onnx or .safetensors"), "{e}");
    }
}
