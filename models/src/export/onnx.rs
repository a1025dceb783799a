//! The exported network as an ONNX QDQ graph (<https://onnx.ai/onnx/operators/>): the standard
//! operators only, so any ONNX runtime runs it.
//!
//! * Input `pixels`: `uint8 [batch, channels, size, size]` (raw pixels, NCHW, symbolic batch),
//!   then `Cast`, `Div 255`, `Sub mean`, `Div std`: the project's normalisation in the same f32
//!   operations.
//! * Per convolution: the input's `QuantizeLinear`/`DequantizeLinear` pair when it is quantized
//!   here, the weight as integer codes through a per-output-channel `DequantizeLinear` (axis 0),
//!   `Conv` (padding `kernel / 2`, no bias), `BatchNormalization`, then `Clip(0, 6)` (ReLU6),
//!   the residual `Add`, or nothing; a ReLU6 output feeding a quantized layer goes through that
//!   layer's QDQ pair right away, as the project's fused evaluation writes it.
//! * `GlobalAveragePool`, `Flatten`, the classifier's QDQ input and `Gemm` (weight `[out, in]`,
//!   `transB = 1`) give `logits` `[batch, classes]`.
//!
//! Containers: a grid of b bits goes in the smallest of INT2/UINT2 (opset 25), INT4/UINT4
//! (opset 21), INT8/UINT8 and INT16/UINT16 that holds it; a grid narrower than its container
//! (6 bits in 8, the max-range quantizer's symmetric grid) gets a `Clip` to its range in front
//! of `QuantizeLinear`, whose saturation would otherwise use the container's. A clamp right
//! before a sub-byte `QuantizeLinear` is written as `Max` and `Min` instead of `Clip`, which
//! onnxruntime 1.32's Clip-into-Quantize fusion rejects for 4- and 2-bit types. Scales are the
//! calibrated steps and zero points are 0 (Bit Fusion's grids are symmetric about zero or start
//! at it). The opset is 21 (IR 10), or 25 (IR 13) when a 2-bit container is needed.

use super::network::{ActivationQuant, ExportedConv, ExportedNetwork, WeightQuant};
use super::protobuf::Message;
use crate::grid::Grid;
use crate::supernet::Residual;

/// `TensorProto.DataType` values (onnx.proto).
mod dtype {
    pub const FLOAT: i64 = 1;
    pub const UINT8: i64 = 2;
    pub const INT8: i64 = 3;
    pub const UINT16: i64 = 4;
    pub const INT16: i64 = 5;
    pub const UINT4: i64 = 21;
    pub const INT4: i64 = 22;
    pub const UINT2: i64 = 25;
    pub const INT2: i64 = 26;
}

/// `AttributeProto.AttributeType` values.
mod attr_type {
    pub const FLOAT: i64 = 1;
    pub const INT: i64 = 2;
    pub const INTS: i64 = 7;
}

/// The integer type a grid is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Container {
    pub data_type: i64,
    /// Width of one element in bits.
    pub bits: u32,
    pub lo: i32,
    pub hi: i32,
}

/// The smallest ONNX integer type holding every level of `grid`.
pub fn container(grid: Grid) -> Container {
    let signed = grid.lo < 0;
    for (bits, s, u) in [(2, dtype::INT2, dtype::UINT2), (4, dtype::INT4, dtype::UINT4), (8, dtype::INT8, dtype::UINT8)] {
        let (lo, hi) = if signed { (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) } else { (0, (1 << bits) - 1) };
        if grid.lo >= lo && grid.hi <= hi {
            return Container { data_type: if signed { s } else { u }, bits, lo, hi };
        }
    }
    if signed { Container { data_type: dtype::INT16, bits: 16, lo: -32768, hi: 32767 } } else { Container { data_type: dtype::UINT16, bits: 16, lo: 0, hi: 65535 } }
}

/// Integer values packed as ONNX stores them in `raw_data`: 2- and 4-bit elements packed low
/// bits first (four or two per byte), 8-bit as bytes, 16-bit little-endian.
pub fn pack(values: &[i32], bits: u32) -> Vec<u8> {
    match bits {
        2 | 4 => {
            let per = (8 / bits) as usize;
            let mask = (1u32 << bits) - 1;
            values
                .chunks(per)
                .map(|c| c.iter().enumerate().fold(0u8, |b, (i, &v)| b | (((v as u32 & mask) << (bits as usize * i)) as u8)))
                .collect()
        }
        8 => values.iter().map(|&v| v as u8).collect(),
        _ => values.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect(),
    }
}

fn attr_int(name: &str, v: i64) -> Message {
    Message::new().string(1, name).int(3, v).int(20, attr_type::INT)
}

fn attr_ints(name: &str, v: &[i64]) -> Message {
    Message::new().string(1, name).ints(8, v).int(20, attr_type::INTS)
}

fn attr_float(name: &str, v: f32) -> Message {
    Message::new().string(1, name).float(2, v).int(20, attr_type::FLOAT)
}

/// A tensor value-info: `elem_type` with dims, `None` for the symbolic batch.
fn value_info(name: &str, elem_type: i64, dims: &[Option<i64>]) -> Message {
    let shape = Message::new().messages(
        1,
        &dims
            .iter()
            .map(|d| match d {
                Some(v) => Message::new().int(1, *v),
                None => Message::new().string(2, "batch"),
            })
            .collect::<Vec<_>>(),
    );
    let tensor = Message::new().int(1, elem_type).message(2, &shape);
    Message::new().string(1, name).message(2, &Message::new().message(1, &tensor))
}

/// The graph under construction.
#[derive(Default)]
struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    /// Has a 2-bit container been used (opset 25)?
    two_bit: bool,
}

impl Graph {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], output: &str, attrs: &[Message]) -> String {
        let mut n = Message::new();
        for i in inputs {
            n = n.string(1, i);
        }
        n = n.string(2, output).string(3, name).string(4, op).messages(5, attrs);
        self.nodes.push(n);
        output.to_string()
    }

    fn initializer(&mut self, name: &str, dims: &[i64], data_type: i64, raw: &[u8]) -> String {
        self.initializers.push(Message::new().ints(1, dims).int(2, data_type).string(8, name).bytes(9, raw));
        name.to_string()
    }

    fn floats(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, dtype::FLOAT, &raw)
    }

    fn use_container(&mut self, grid: Grid) -> Container {
        let c = container(grid);
        self.two_bit |= c.bits == 2;
        c
    }

    /// `x` clamped to `[lo, hi]` (scalar initializers): `Clip`, or `Max` then `Min` when a
    /// sub-byte `QuantizeLinear` follows (onnxruntime 1.32's `ClipQuantFusion` fails on 4- and
    /// 2-bit zero points: "Unexpected data type for QuantizeLinear input y_zero_point",
    /// clip_quantizelinear.cc:79). Both compute `min(max(x, lo), hi)`.
    fn clamp(&mut self, x: &str, lo: &str, hi: &str, tag: &str, before_sub_byte: bool) -> String {
        if before_sub_byte {
            let y = self.node("Max", &format!("{tag}.max"), &[x, lo], &format!("{tag}.max"), &[]);
            self.node("Min", &format!("{tag}.min"), &[&y, hi], &format!("{tag}.min"), &[])
        } else {
            self.node("Clip", tag, &[x, lo, hi], tag, &[])
        }
    }

    /// `x` through a QDQ pair on `q`'s grid (clipped first when the grid is narrower than its
    /// container); `tag` names the nodes.
    fn qdq(&mut self, x: &str, q: &ActivationQuant, tag: &str) -> String {
        let c = self.use_container(q.grid);
        let mut x = x.to_string();
        if (c.lo, c.hi) != (q.grid.lo, q.grid.hi) {
            let lo = self.floats(&format!("{tag}.clip_lo"), &[], &[q.grid.lo as f32 * q.step]);
            let hi = self.floats(&format!("{tag}.clip_hi"), &[], &[q.grid.hi as f32 * q.step]);
            x = self.clamp(&x, &lo, &hi, &format!("{tag}.clip"), c.bits < 8);
        }
        let scale = self.floats(&format!("{tag}.scale"), &[], &[q.step]);
        let zero = self.initializer(&format!("{tag}.zero_point"), &[], c.data_type, &pack(&[0], c.bits));
        let codes = self.node("QuantizeLinear", &format!("{tag}.quantize"), &[&x, &scale, &zero], &format!("{tag}.codes"), &[]);
        self.node("DequantizeLinear", &format!("{tag}.dequantize"), &[&codes, &scale, &zero], &format!("{tag}.dequantized"), &[])
    }

    /// A weight of `dims` (output channels first): float, or integer codes dequantized per
    /// output channel.
    fn weight(&mut self, name: &str, dims: &[i64], values: &[f32], quant: Option<&WeightQuant>) -> String {
        let Some(wq) = quant else {
            return self.floats(name, dims, values);
        };
        let c = self.use_container(wq.grid);
        let codes = self.initializer(&format!("{name}_codes"), dims, c.data_type, &pack(&wq.codes, c.bits));
        let scale = self.floats(&format!("{name}_scale"), &[dims[0]], &wq.steps);
        let zero = self.initializer(&format!("{name}_zero_point"), &[dims[0]], c.data_type, &pack(&vec![0; dims[0] as usize], c.bits));
        self.node("DequantizeLinear", &format!("{name}.dequantize"), &[&codes, &scale, &zero], name, &[attr_int("axis", 0)])
    }

    fn conv(&mut self, x: &str, l: &ExportedConv, saved: &mut Option<String>, relu6: (&str, &str)) -> String {
        let n = &l.name;
        if l.residual == Residual::Save {
            *saved = Some(x.to_string());
        }
        let input = match &l.input_quant {
            Some(q) => self.qdq(x, q, &format!("{n}.input")),
            None => x.to_string(),
        };
        let k = l.kernel as i64;
        let dims = [l.out_channels as i64, (l.in_channels / l.groups) as i64, k, k];
        let w = self.weight(&format!("{n}.weight"), &dims, &l.weight, l.weight_quant.as_ref());
        let p = k / 2;
        let s = l.stride as i64;
        let attrs = [attr_ints("kernel_shape", &[k, k]), attr_ints("pads", &[p, p, p, p]), attr_ints("strides", &[s, s]), attr_ints("dilations", &[1, 1]), attr_int("group", l.groups as i64)];
        let y = self.node("Conv", n, &[&input, &w], &format!("{n}.conv"), &attrs);
        let bn = &l.batch_norm;
        let c = [l.out_channels as i64];
        let gamma = self.floats(&format!("{n}.bn.gamma"), &c, &bn.gamma);
        let beta = self.floats(&format!("{n}.bn.beta"), &c, &bn.beta);
        let mean = self.floats(&format!("{n}.bn.mean"), &c, &bn.mean);
        let var = self.floats(&format!("{n}.bn.var"), &c, &bn.var);
        let mut y = self.node("BatchNormalization", &format!("{n}.bn"), &[&y, &gamma, &beta, &mean, &var], &format!("{n}.bn"), &[attr_float("epsilon", bn.epsilon as f32)]);
        if l.relu6 {
            let sub_byte = l.output_quant.as_ref().is_some_and(|q| container(q.grid).bits < 8);
            y = self.clamp(&y, relu6.0, relu6.1, &format!("{n}.relu6"), sub_byte);
            if let Some(q) = &l.output_quant {
                y = self.qdq(&y, q, &format!("{n}.output"));
            }
        } else if l.residual == Residual::Add
            && let Some(r) = saved.take()
        {
            y = self.node("Add", &format!("{n}.add"), &[&y, &r], &format!("{n}.add"), &[]);
        }
        y
    }
}

/// The ONNX model of `net`, with `metadata` as the model's metadata properties.
pub fn to_onnx(net: &ExportedNetwork, metadata: &[(String, String)]) -> Vec<u8> {
    let mut g = Graph::default();
    let inp = &net.input;
    let c = inp.channels as i64;
    let x = g.node("Cast", "input.cast", &["pixels"], "input.float", &[attr_int("to", dtype::FLOAT)]);
    let k255 = g.floats("input.255", &[], &[255.0]);
    let x = g.node("Div", "input.scale", &[&x, &k255], "input.scaled", &[]);
    let mean = g.floats("input.mean", &[1, c, 1, 1], &inp.mean);
    let std = g.floats("input.std", &[1, c, 1, 1], &inp.std);
    let x = g.node("Sub", "input.center", &[&x, &mean], "input.centered", &[]);
    let mut x = g.node("Div", "input.normalise", &[&x, &std], "input.normalised", &[]);
    let zero = g.floats("relu6.min", &[], &[0.0]);
    let six = g.floats("relu6.max", &[], &[6.0]);
    let mut saved = None;
    for l in &net.convs {
        x = g.conv(&x, l, &mut saved, (&zero, &six));
    }
    let pooled = g.node("GlobalAveragePool", "pool", &[&x], "pool", &[]);
    let mut x = g.node("Flatten", "flatten", &[&pooled], "features", &[attr_int("axis", 1)]);
    let fc = &net.classifier;
    if let Some(q) = &fc.input_quant {
        x = g.qdq(&x, q, "classifier.input");
    }
    let w = g.weight("classifier.weight", &[fc.out_features as i64, fc.in_features as i64], &fc.weight, fc.weight_quant.as_ref());
    let b = g.floats("classifier.bias", &[fc.out_features as i64], &fc.bias);
    g.node("Gemm", "classifier", &[&x, &w, &b], "logits", &[attr_int("transB", 1)]);

    let s = inp.size as i64;
    let graph = Message::new()
        .messages(1, &g.nodes)
        .string(2, &format!("bitfusion {}", net.arch))
        .messages(5, &g.initializers)
        .string(10, "Input: raw pixels (uint8, NCHW). Output: logits.")
        .message(11, &value_info("pixels", dtype::UINT8, &[None, Some(c), Some(s), Some(s)]))
        .message(12, &value_info("logits", dtype::FLOAT, &[None, Some(fc.out_features as i64)]));
    let (ir, opset) = if g.two_bit { (13, 25) } else { (10, 21) };
    let props: Vec<Message> = metadata.iter().map(|(k, v)| Message::new().string(1, k).string(2, v)).collect();
    Message::new()
        .int(1, ir)
        .string(2, "bitfusion")
        .string(3, env!("CARGO_PKG_VERSION"))
        .string(6, "A subnet found by bitfusion's hardware-aware search, quantized at its per-layer bits (QDQ).")
        .message(7, &graph)
        .message(8, &Message::new().string(1, "").int(2, opset))
        .messages(14, &props)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_the_smallest_that_hold_the_grid() {
        assert_eq!(container(Grid::signed(2)).data_type, dtype::INT2);
        assert_eq!(container(Grid::unsigned(2)).data_type, dtype::UINT2);
        assert_eq!(container(Grid::signed(4)).data_type, dtype::INT4);
        assert_eq!(container(Grid::unsigned(3)), Container { data_type: dtype::UINT4, bits: 4, lo: 0, hi: 15 });
        // 6 bits go in 8; the symmetric 2-bit grid [-1, 1] fits INT2.
        assert_eq!(container(Grid::signed(6)), Container { data_type: dtype::INT8, bits: 8, lo: -128, hi: 127 });
        assert_eq!(container(Grid::unsigned(8)).data_type, dtype::UINT8);
        assert_eq!(container(Grid::symmetric(2)).data_type, dtype::INT2);
        assert_eq!(container(Grid::signed(12)).data_type, dtype::INT16);
    }

    #[test]
    fn packing_puts_low_bits_first() {
        // INT4 [1, -1, 7]: 0xF1, then 0x07 (the last byte padded with zero).
        assert_eq!(pack(&[1, -1, 7], 4), vec![0xF1, 0x07]);
        // INT2 [-2, 1, 0, -1]: 0b11_00_01_10.
        assert_eq!(pack(&[-2, 1, 0, -1], 2), vec![0b1100_0110]);
        assert_eq!(pack(&[-128, 127], 8), vec![0x80, 0x7F]);
        assert_eq!(pack(&[-2], 16), vec![0xFE, 0xFF]);
    }
}
