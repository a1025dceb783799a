//! Shape propagation over an ONNX graph, and its compute nodes as [`Layer`]s.
//!
//! Nodes are visited in the graph's order (ONNX requires a topological order): shapes start from
//! the graph inputs (symbolic dimensions take the batch) and the initializers' dims, and each
//! supported operator computes its outputs' shapes (operator semantics from
//! <https://onnx.ai/onnx/operators/>; the arithmetic of the data-movement operators is in
//! [`super::shape`]). Conv becomes a convolution layer, Gemm and MatMul with a 2-D constant weight
//! a fully connected layer; the other supported operators only carry shapes. Small constant
//! integer tensors are propagated too (Shape, Gather, Slice, Squeeze, Unsqueeze, Concat, Cast,
//! Add/Sub/Mul/Div), so a Reshape whose target the graph computes from `Shape` is known.
//! Operators whose opsets moved an attribute to an input (Squeeze/Unsqueeze/Reduce* `axes`,
//! Slice's `starts`/`ends`/`axes`, Split's `split`, Reshape's `shape`) are read in whichever form
//! the node carries. Anything else is an [`ImportError`] naming the node and its operator.

use super::model::{Attribute, Dim, Graph, Node, Tensor};
use super::shape::{self, MAX_INTS, MAX_RANK, Shape};
use crate::layer::{Layer, MAX_DIM};
use std::collections::{HashMap, HashSet};

/// The importer's settings: the batch for symbolic dimensions and the bits of layers whose
/// precision the model does not give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnnxOptions {
    pub batch: u32,
    pub w_bits: u32,
    pub a_bits: u32,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions { batch: 1, w_bits: 8, a_bits: 8 }
    }
}

/// A node the importer cannot map, phrased on one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node '{node}' ({op}): {message}")]
pub struct ImportError {
    pub node: String,
    pub op: String,
    pub message: String,
}

/// What the importer knows of each value by name.
#[derive(Default)]
struct Values {
    shapes: HashMap<String, Shape>,
    /// The values of small constant integer tensors (at most [`MAX_INTS`], row-major): INT64
    /// initializers and Constants (Reshape shapes, Pad pads, axes) and what Shape, Gather,
    /// Squeeze, Unsqueeze, Concat, Slice, Cast and integer Add/Sub/Mul/Div compute from them.
    ints: HashMap<String, Vec<i64>>,
    /// Values that are constants (initializers, Constant outputs): weights.
    constant: HashMap<String, ()>,
    /// Bits of a quantized value: an integer tensor (initializer or QuantizeLinear output), or the
    /// output of a DequantizeLinear of one.
    bits: HashMap<String, u32>,
    /// The network's input: the graph inputs and what QuantizeLinear, DequantizeLinear, Cast or
    /// Identity make of them (a convolution reading it is lowered with im2col).
    network_input: HashSet<String>,
}

/// Bits of an integer TensorProto.DataType (UINT8 2, INT8 3, UINT16 4, INT16 5, INT32 6,
/// INT64 7, UINT32 12, UINT64 13, UINT4 21, INT4 22, UINT2 25, INT2 26), None for the others.
pub fn int_type_bits(data_type: i32) -> Option<u32> {
    match data_type {
        2 | 3 => Some(8),
        4 | 5 => Some(16),
        6 | 12 => Some(32),
        7 | 13 => Some(64),
        21 | 22 => Some(4),
        25 | 26 => Some(2),
        _ => None,
    }
}

struct Ctx<'a> {
    node: &'a Node,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> ImportError {
        ImportError { node: node_name(self.node), op: self.node.op_type.clone(), message: message.into() }
    }

    fn attr(&self, name: &str) -> Option<&Attribute> {
        self.node.attributes.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// The shape of input `i`, which must be known.
    fn shape<'v>(&self, values: &'v Values, i: usize) -> Result<&'v Shape, ImportError> {
        let name = self.node.inputs.get(i).filter(|n| !n.is_empty()).ok_or_else(|| self.err(format!("input {i} is missing")))?;
        values.shapes.get(name).ok_or_else(|| self.err(format!("the shape of input '{name}' is unknown")))
    }

    /// The values of input `i` if it is a known constant integer tensor; None when the input is
    /// absent (an optional input left empty).
    fn const_input<'v>(&self, values: &'v Values, i: usize, what: &str) -> Result<Option<&'v [i64]>, ImportError> {
        match self.node.inputs.get(i).filter(|n| !n.is_empty()) {
            None => Ok(None),
            Some(n) => values.ints.get(n).map(|x| Some(x.as_slice())).ok_or_else(|| self.err(format!("the {what} (input '{n}') are not a constant"))),
        }
    }

    /// An attribute's ints, else the constant input `i`; None when neither is given.
    fn ints_or_input<'v>(&'v self, values: &'v Values, name: &str, i: usize) -> Result<Option<&'v [i64]>, ImportError> {
        match self.ints(name) {
            Some(a) => Ok(Some(a)),
            None => self.const_input(values, i, name),
        }
    }

    fn u32(&self, what: &str, v: u64) -> Result<u32, ImportError> {
        u32::try_from(v).ok().filter(|x| *x <= MAX_DIM).ok_or_else(|| self.err(format!("{what} {v} is out of range")))
    }
}

/// A node's name for messages: its name, or its first output's.
fn node_name(n: &Node) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        n.outputs.first().cloned().unwrap_or_default()
    }
}

/// A value's declared shape with symbolic and unknown dimensions replaced by the batch.
pub fn declared_shape(dims: &[Dim], batch: u32) -> Option<Shape> {
    dims.iter()
        .map(|d| match d {
            Dim::Value(v) => u64::try_from(*v).ok(),
            Dim::Param(_) | Dim::Unknown => Some(u64::from(batch)),
        })
        .collect()
}

fn product(ctx: &Ctx, dims: &[u64]) -> Result<u64, ImportError> {
    dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d)).ok_or_else(|| ctx.err("the tensor is too large"))
}

/// Numpy-style broadcasting of two shapes.
fn broadcast(ctx: &Ctx, a: &[u64], b: &[u64]) -> Result<Shape, ImportError> {
    let n = a.len().max(b.len());
    let at = |s: &[u64], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(ctx.err(format!("shapes {a:?} and {b:?} do not broadcast ({x} against {y})"))),
        })
        .collect()
}

/// Normalise an axis attribute against a rank.
fn axis(ctx: &Ctx, axis: i64, rank: usize) -> Result<usize, ImportError> {
    shape::axis(axis, rank).map_err(|m| ctx.err(m))
}

/// Record the values of a constant integer tensor, if short enough to be a shape.
fn set_ints(v: &mut Values, name: Option<&String>, values: Vec<i64>) {
    if let Some(n) = name.filter(|n| !n.is_empty())
        && values.len() <= MAX_INTS
    {
        v.ints.insert(n.clone(), values);
    }
}

/// A constant tensor's shape, and its values if it is a short INT64 tensor.
fn record_tensor(v: &mut Values, name: &str, t: &Tensor) -> Option<Shape> {
    let dims: Shape = t.dims.iter().map(|d| u64::try_from(*d).ok()).collect::<Option<_>>()?;
    v.constant.insert(name.to_string(), ());
    if !t.int64s.is_empty() && Some(t.int64s.len() as u64) == dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d)) {
        v.ints.insert(name.to_string(), t.int64s.clone());
    }
    if let Some(b) = int_type_bits(t.data_type) {
        v.bits.insert(name.to_string(), b);
    }
    Some(dims)
}

/// The 2-D spatial attributes of a Conv or pooling node: kernel (square), stride, pads
/// (begin height, begin width, end height, end width, as ONNX orders them) and output size.
struct Window {
    kernel: u64,
    stride: u64,
    pads: [u64; 4],
    out: [u64; 2],
}

impl Window {
    /// The pad on every side, or an error if the sides differ (a layer pads symmetrically).
    fn symmetric_pad(&self, ctx: &Ctx) -> Result<u64, ImportError> {
        let p = self.pads;
        if p.iter().any(|x| *x != p[0]) {
            return Err(ctx.err(format!("asymmetric pads {p:?} are not supported (equal pads on every side only)")));
        }
        Ok(p[0])
    }
}

/// Kernel, strides, pads, dilations and ceil mode of a window over input height and width `hw`.
fn window(ctx: &Ctx, hw: [u64; 2], kernel: [u64; 2], ceil: bool) -> Result<Window, ImportError> {
    if kernel[0] != kernel[1] {
        return Err(ctx.err(format!("non-square kernel {}x{} is not supported", kernel[0], kernel[1])));
    }
    if let Some(d) = ctx.ints("dilations")
        && d.iter().any(|x| *x != 1)
    {
        return Err(ctx.err(format!("dilation {d:?} is not supported")));
    }
    let strides = match ctx.ints("strides") {
        Some([a, b]) => [*a, *b],
        None | Some([]) => [1, 1],
        Some(s) => return Err(ctx.err(format!("strides {s:?} do not fit a 2-D window"))),
    };
    if strides[0] != strides[1] || strides[0] < 1 {
        return Err(ctx.err(format!("strides {strides:?} are not supported (equal positive strides only)")));
    }
    let stride = strides[0] as u64;
    let k = kernel[0];
    let auto_pad = ctx.string("auto_pad").unwrap_or_default();
    let pads: [u64; 4] = match auto_pad.as_str() {
        "" | "NOTSET" => match ctx.ints("pads") {
            None | Some([]) => [0; 4],
            Some(p) if p.len() == 4 && p.iter().all(|x| *x >= 0) => [p[0] as u64, p[1] as u64, p[2] as u64, p[3] as u64],
            Some(p) => return Err(ctx.err(format!("pads {p:?} do not fit a 2-D window"))),
        },
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            // Total padding so that out = ceil(in / stride); the extra pixel goes after (UPPER) or before.
            let mut p = [0; 4];
            for d in 0..2 {
                let out = hw[d].div_ceil(stride);
                let total = out.saturating_sub(1).saturating_mul(stride).saturating_add(k).saturating_sub(hw[d]);
                let (lo, hi) = (total / 2, total - total / 2);
                (p[d], p[d + 2]) = if auto_pad == "SAME_UPPER" { (lo, hi) } else { (hi, lo) };
            }
            p
        }
        other => return Err(ctx.err(format!("auto_pad '{other}' is not supported"))),
    };
    let mut out = [0; 2];
    for d in 0..2 {
        let span = hw[d].checked_add(pads[d]).and_then(|x| x.checked_add(pads[d + 2])).ok_or_else(|| ctx.err("the pads are too large"))?;
        if span < k {
            return Err(ctx.err(format!("kernel {k} is larger than the padded input {span}")));
        }
        out[d] = if ceil { (span - k).div_ceil(stride) + 1 } else { (span - k) / stride + 1 };
    }
    Ok(Window { kernel: k, stride, pads, out })
}

/// The bits of a layer operand: ZigZag's attribute on the node, else the quantized source's type,
/// else the default.
fn operand_bits(ctx: &Ctx, values: &Values, attr: &str, input: usize, default: u32) -> u32 {
    if let Some(b) = ctx.attr(attr).and_then(|a| a.i.or_else(|| a.ints.first().copied())) {
        return u32::try_from(b).unwrap_or(0);
    }
    ctx.node.inputs.get(input).and_then(|n| values.bits.get(n)).copied().unwrap_or(default)
}

fn layer_error(ctx: &Ctx, l: Layer) -> Result<Layer, ImportError> {
    l.validate().map_err(|e| ctx.err(format!("the layer cannot be simulated: {e}")))?;
    Ok(l)
}

/// Import a decoded graph as layers.
pub fn import_graph(g: &Graph, opts: &OnnxOptions) -> Result<Vec<Layer>, ImportError> {
    let (_, layers) = propagate(g, opts)?;
    if layers.is_empty() {
        return Err(ImportError { node: g.name.clone(), op: "graph".into(), message: "no Conv, Gemm or MatMul node: nothing to simulate".into() });
    }
    Ok(layers)
}

/// Propagate shapes through the graph: every value's shape by name, and the layers.
pub fn propagate(g: &Graph, opts: &OnnxOptions) -> Result<(HashMap<String, Shape>, Vec<Layer>), ImportError> {
    let mut v = Values::default();
    for t in &g.initializers {
        if t.dims.len() > MAX_RANK {
            return Err(ImportError { node: t.name.clone(), op: "initializer".into(), message: format!("rank {} is above the supported {MAX_RANK}", t.dims.len()) });
        }
        let Some(dims) = record_tensor(&mut v, &t.name, t) else {
            return Err(ImportError { node: t.name.clone(), op: "initializer".into(), message: format!("negative dims {:?}", t.dims) });
        };
        v.shapes.insert(t.name.clone(), dims);
    }
    for i in &g.inputs {
        if v.shapes.contains_key(&i.name) {
            continue; // an initializer listed as an input (IR version < 4)
        }
        let shape = i.shape.as_deref().filter(|d| d.len() <= MAX_RANK).and_then(|d| declared_shape(d, opts.batch));
        let Some(shape) = shape else {
            return Err(ImportError { node: i.name.clone(), op: "graph input".into(), message: format!("the input has no shape (or a rank above {MAX_RANK})") });
        };
        v.shapes.insert(i.name.clone(), shape);
        v.network_input.insert(i.name.clone());
    }
    let mut layers = Vec::new();
    for node in &g.nodes {
        let ctx = Ctx { node };
        if !matches!(node.domain.as_str(), "" | "ai.onnx") {
            return Err(ctx.err(format!("operators of domain '{}' are not supported", node.domain)));
        }
        if matches!(node.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear" | "Cast" | "Identity")
            && node.inputs.first().is_some_and(|i| v.network_input.contains(i))
        {
            v.network_input.extend(node.outputs.first().cloned());
        }
        let out = step(&ctx, &mut v, opts, &mut layers)?;
        if let Some(s) = out.iter().find(|s| s.len() > MAX_RANK) {
            return Err(ctx.err(format!("an output of rank {} is above the supported {MAX_RANK}", s.len())));
        }
        for (name, shape) in node.outputs.iter().zip(out) {
            if !name.is_empty() {
                v.shapes.insert(name.clone(), shape);
            }
        }
    }
    Ok((v.shapes, layers))
}

/// One node: its outputs' shapes, and its layer if it is one.
fn step(ctx: &Ctx, v: &mut Values, opts: &OnnxOptions, layers: &mut Vec<Layer>) -> Result<Vec<Shape>, ImportError> {
    let node = ctx.node;
    let op = node.op_type.as_str();
    let same = |v: &Values| ctx.shape(v, 0).cloned().map(|s| vec![s]);
    match op {
        "Conv" => {
            let x = ctx.shape(v, 0)?.clone();
            let w = ctx.shape(v, 1)?.clone();
            if x.len() != 4 || w.len() != 4 {
                return Err(ctx.err(format!("only 2-D convolutions are supported (input rank {}, weight rank {})", x.len(), w.len())));
            }
            let groups = ctx.int("group", 1);
            let groups = u64::try_from(groups).ok().filter(|g| *g >= 1).ok_or_else(|| ctx.err(format!("group {groups} is invalid")))?;
            if w[1].checked_mul(groups) != Some(x[1]) {
                return Err(ctx.err(format!("weight {w:?} with group {groups} does not fit input {x:?}")));
            }
            if let Some(k) = ctx.ints("kernel_shape")
                && k.iter().map(|d| *d as u64).ne(w[2..].iter().copied())
            {
                return Err(ctx.err(format!("kernel_shape {k:?} differs from the weight's {w:?}")));
            }
            let win = window(ctx, [x[2], x[3]], [w[2], w[3]], false)?;
            let w_bits = operand_bits(ctx, v, "weight_size", 1, opts.w_bits);
            let a_bits = operand_bits(ctx, v, "act_size", 0, opts.a_bits);
            let mut l = Layer::conv(
                &node_name(node),
                ctx.u32("batch", x[0])?,
                ctx.u32("input channels", x[1])?,
                ctx.u32("output channels", w[0])?,
                ctx.u32("input height", x[2])?,
                ctx.u32("kernel", win.kernel)?,
                ctx.u32("stride", win.stride)?,
                ctx.u32("pad", win.symmetric_pad(ctx)?)?,
                ctx.u32("group", groups)?,
                w_bits,
                a_bits,
            );
            l.in_w = ctx.u32("input width", x[3])?;
            l.im2col = node.inputs.first().is_some_and(|i| v.network_input.contains(i));
            layers.push(layer_error(ctx, l)?);
            Ok(vec![vec![x[0], w[0], win.out[0], win.out[1]]])
        }
        "Gemm" | "MatMul" => {
            let a = ctx.shape(v, 0)?.clone();
            let b = ctx.shape(v, 1)?.clone();
            let weight_const = node.inputs.get(1).is_some_and(|n| v.constant.contains_key(n));
            if b.len() != 2 || !weight_const {
                return Err(ctx.err(format!("only a constant 2-D weight is supported (input 1 has shape {b:?})")));
            }
            let (rows, k) = if op == "Gemm" {
                if a.len() != 2 {
                    return Err(ctx.err(format!("input A has rank {}, Gemm needs 2", a.len())));
                }
                if ctx.int("transA", 0) != 0 {
                    return Err(ctx.err("transA = 1 is not supported"));
                }
                (a[0], a[1])
            } else {
                let (lead, last) = a.split_at(a.len().saturating_sub(1));
                (product(ctx, lead)?, last.first().copied().ok_or_else(|| ctx.err("input A is a scalar"))?)
            };
            let (bk, n) = if op == "Gemm" && ctx.int("transB", 0) != 0 { (b[1], b[0]) } else { (b[0], b[1]) };
            if bk != k {
                return Err(ctx.err(format!("inner dimensions differ: A {a:?}, B {b:?}")));
            }
            let w_bits = operand_bits(ctx, v, "weight_size", 1, opts.w_bits);
            let a_bits = operand_bits(ctx, v, "act_size", 0, opts.a_bits);
            let l = Layer::fc(&node_name(node), ctx.u32("batch", rows)?, ctx.u32("inputs", k)?, ctx.u32("outputs", n)?, w_bits, a_bits);
            layers.push(layer_error(ctx, l)?);
            let mut out = if op == "Gemm" { vec![a[0]] } else { a[..a.len() - 1].to_vec() };
            out.push(n);
            Ok(vec![out])
        }
        "Relu" | "LeakyRelu" | "PRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu" | "Selu" | "Gelu"
        | "Softplus" | "Softsign" | "Softmax" | "LogSoftmax" | "BatchNormalization" | "LRN" | "Neg" | "Abs" | "Sqrt" | "Exp"
        | "Log" | "Erf" | "Reciprocal" | "Floor" | "Ceil" | "Mish" | "InstanceNormalization" | "LpNormalization" => same(v),
        "Identity" | "Dropout" | "Cast" => {
            // Values pass unchanged (Dropout is the identity at inference; its mask output is unused).
            carry(v, node);
            let s = ctx.shape(v, 0)?.clone();
            Ok(vec![s.clone(), s])
        }
        "Add" | "Sub" | "Mul" | "Div" | "Sum" | "Max" | "Min" | "Pow" => {
            let mut s = ctx.shape(v, 0)?.clone();
            for i in 1..node.inputs.len() {
                s = broadcast(ctx, &s, ctx.shape(v, i)?)?;
            }
            // Integer arithmetic on shape constants (`x.size(1) * x.size(2)`).
            if matches!(op, "Add" | "Sub" | "Mul" | "Div")
                && s.len() <= 1
                && let (Some(a), Some(b)) = (node.inputs.first().and_then(|n| v.ints.get(n)), node.inputs.get(1).and_then(|n| v.ints.get(n)))
            {
                let r = shape::int_binary(op, a, b).map_err(|m| ctx.err(m))?;
                set_ints(v, node.outputs.first(), r);
            }
            Ok(vec![s])
        }
        "Shape" => {
            let x = ctx.shape(v, 0)?;
            let dims: Vec<i64> = x.iter().map(|d| i64::try_from(*d).unwrap_or(i64::MAX)).collect();
            // Opset 15's start and end pick a range of the axes, clamped as Slice's are.
            let dims = shape::slice_values(&dims, ctx.int("start", 0), ctx.int("end", i64::MAX), 1).map_err(|m| ctx.err(m))?;
            let out = vec![dims.len() as u64];
            set_ints(v, node.outputs.first(), dims);
            Ok(vec![out])
        }
        "Gather" => {
            let data = ctx.shape(v, 0)?.clone();
            let indices = ctx.shape(v, 1)?.clone();
            let ax = ctx.int("axis", 0);
            let out = shape::gather(&data, &indices, ax).map_err(|m| ctx.err(m))?;
            if data.len() == 1
                && let (Some(d), Some(i)) = (node.inputs.first().and_then(|n| v.ints.get(n)), node.inputs.get(1).and_then(|n| v.ints.get(n)))
            {
                let r = shape::gather_values(d, i).map_err(|m| ctx.err(m))?;
                set_ints(v, node.outputs.first(), r);
            }
            Ok(vec![out])
        }
        "Squeeze" | "Unsqueeze" => {
            let x = ctx.shape(v, 0)?.clone();
            // Opset < 13: the `axes` attribute; 13 and later: the optional input 1.
            let list = ctx.ints_or_input(v, "axes", 1)?;
            let out = if op == "Squeeze" {
                shape::squeeze(&x, list)
            } else {
                shape::unsqueeze(&x, list.ok_or_else(|| ctx.err("the axes are missing"))?)
            };
            let out = out.map_err(|m| ctx.err(m))?;
            carry(v, node);
            Ok(vec![out])
        }
        "Transpose" => {
            let x = ctx.shape(v, 0)?.clone();
            let out = shape::transpose(&x, ctx.ints("perm")).map_err(|m| ctx.err(m))?;
            if node.inputs.first().is_some_and(|n| v.constant.contains_key(n)) {
                v.constant.extend(node.outputs.first().map(|o| (o.clone(), ())));
            }
            Ok(vec![out])
        }
        "Slice" => {
            let x = ctx.shape(v, 0)?.clone();
            // Opset < 10: starts, ends and axes attributes; 10 and later: inputs 1 to 4.
            let (starts, ends, list, steps) = if ctx.attr("starts").is_some() {
                (ctx.ints("starts"), ctx.ints("ends"), ctx.ints("axes"), None)
            } else {
                (ctx.const_input(v, 1, "starts")?, ctx.const_input(v, 2, "ends")?, ctx.const_input(v, 3, "axes")?, ctx.const_input(v, 4, "steps")?)
            };
            let (Some(starts), Some(ends)) = (starts, ends) else {
                return Err(ctx.err("the starts or ends are missing"));
            };
            let out = shape::slice(&x, starts, ends, list, steps).map_err(|m| ctx.err(m))?;
            if x.len() == 1
                && starts.len() == 1
                && let Some(d) = node.inputs.first().and_then(|n| v.ints.get(n))
            {
                let r = shape::slice_values(d, starts[0], ends[0], steps.map_or(1, |s| s[0])).map_err(|m| ctx.err(m))?;
                set_ints(v, node.outputs.first(), r);
            }
            Ok(vec![out])
        }
        "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSumExp" => {
            let x = ctx.shape(v, 0)?.clone();
            // Axes: the attribute (ReduceSum before opset 13, the others before 18), else input 1.
            let list = ctx.ints_or_input(v, "axes", 1)?.unwrap_or_default();
            if list.is_empty() && ctx.int("noop_with_empty_axes", 0) != 0 {
                return Ok(vec![x]);
            }
            Ok(vec![shape::reduce(&x, list, ctx.int("keepdims", 1) != 0).map_err(|m| ctx.err(m))?])
        }
        "Split" => {
            let x = ctx.shape(v, 0)?.clone();
            let ax = axis(ctx, ctx.int("axis", 0), x.len())?;
            let n = node.outputs.len() as u64;
            let parts: Vec<u64> = match ctx.ints_or_input(v, "split", 1)? {
                Some(p) => p.iter().map(|d| u64::try_from(*d).map_err(|_| ctx.err(format!("split {p:?} is invalid")))).collect::<Result<_, _>>()?,
                // Equal parts, the last smaller if the axis does not divide (opset 18's rule).
                None if n > 0 => {
                    let each = x[ax].div_ceil(n);
                    (0..n).map(|i| each.min(x[ax].saturating_sub(i.saturating_mul(each)))).collect()
                }
                None => Vec::new(),
            };
            if parts.len() as u64 != n || parts.iter().try_fold(0u64, |a, p| a.checked_add(*p)) != Some(x[ax]) {
                return Err(ctx.err(format!("split {parts:?} does not divide axis {ax} of {x:?} into {n} outputs")));
            }
            Ok(parts.into_iter().map(|p| x.iter().enumerate().map(|(i, d)| if i == ax { p } else { *d }).collect()).collect())
        }
        "Concat" => {
            let first = ctx.shape(v, 0)?.clone();
            let ax = axis(ctx, ctx.int("axis", 0), first.len())?;
            let mut out = first.clone();
            for i in 1..node.inputs.len() {
                let s = ctx.shape(v, i)?;
                if s.len() != first.len() || s.iter().enumerate().any(|(d, x)| d != ax && *x != first[d]) {
                    return Err(ctx.err(format!("input shapes {first:?} and {s:?} do not concatenate on axis {ax}")));
                }
                out[ax] = out[ax].checked_add(s[ax]).ok_or_else(|| ctx.err("the tensor is too large"))?;
            }
            // A shape assembled from constants (`[x.size(0), -1]`).
            if out.len() == 1 {
                let parts: Option<Vec<&Vec<i64>>> = node.inputs.iter().map(|n| v.ints.get(n)).collect();
                if let Some(parts) = parts {
                    let joined: Vec<i64> = parts.into_iter().flatten().copied().collect();
                    set_ints(v, node.outputs.first(), joined);
                }
            }
            Ok(vec![out])
        }
        "MaxPool" | "AveragePool" => {
            let x = ctx.shape(v, 0)?.clone();
            let k = ctx.ints("kernel_shape").unwrap_or_default();
            if x.len() != 4 || k.len() != 2 || k.iter().any(|d| *d < 1) {
                return Err(ctx.err(format!("only 2-D pooling is supported (input {x:?}, kernel_shape {k:?})")));
            }
            let win = window(ctx, [x[2], x[3]], [k[0] as u64, k[1] as u64], ctx.int("ceil_mode", 0) != 0)?;
            Ok(vec![vec![x[0], x[1], win.out[0], win.out[1]]])
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = ctx.shape(v, 0)?;
            if x.len() < 2 {
                return Err(ctx.err(format!("input {x:?} has no channel axis")));
            }
            let mut out = x[..2].to_vec();
            out.resize(x.len(), 1);
            Ok(vec![out])
        }
        "Flatten" => {
            let x = ctx.shape(v, 0)?.clone();
            let ax = ctx.int("axis", 1);
            let ax = if ax == x.len() as i64 { x.len() } else { axis(ctx, ax, x.len())? };
            Ok(vec![vec![product(ctx, &x[..ax])?, product(ctx, &x[ax..])?]])
        }
        "Reshape" => {
            let x = ctx.shape(v, 0)?.clone();
            // Opset < 5: the `shape` attribute; 5 and later: input 1.
            let target = match ctx.ints("shape") {
                Some(t) => t,
                None => node.inputs.get(1).and_then(|n| v.ints.get(n)).ok_or_else(|| ctx.err("the target shape is not a constant"))?,
            };
            let out = reshape(ctx, &x, target, ctx.int("allowzero", 0) != 0)?;
            carry(v, node);
            Ok(vec![out])
        }
        "Pad" => {
            let x = ctx.shape(v, 0)?.clone();
            let pads = match ctx.ints("pads") {
                Some(p) => p.to_vec(),
                None => node.inputs.get(1).and_then(|n| v.ints.get(n)).cloned().ok_or_else(|| ctx.err("the pads are not a constant"))?,
            };
            if node.inputs.len() > 3 || pads.len() != 2 * x.len() {
                return Err(ctx.err(format!("pads {pads:?} do not fit input {x:?} (per-axis pads are not supported)")));
            }
            let out: Option<Shape> =
                x.iter().enumerate().map(|(d, s)| (*s as i64).checked_add(pads[d])?.checked_add(pads[d + x.len()]).and_then(|n| u64::try_from(n).ok())).collect();
            Ok(vec![out.ok_or_else(|| ctx.err(format!("pads {pads:?} do not fit input {x:?}")))?])
        }
        "Constant" => {
            let out = node.outputs.first().cloned().unwrap_or_default();
            let a = node.attributes.first().filter(|_| node.attributes.len() == 1);
            match a.map(|a| (a.name.as_str(), a)) {
                Some(("value", Attribute { t: Some(t), .. })) => {
                    let dims = record_tensor(v, &out, t).ok_or_else(|| ctx.err(format!("negative dims {:?}", t.dims)))?;
                    Ok(vec![dims])
                }
                // Opset 12's scalar and list forms.
                Some(("value_int", a)) => {
                    v.constant.insert(out.clone(), ());
                    set_ints(v, Some(&out), vec![a.i.unwrap_or(0)]);
                    Ok(vec![vec![]])
                }
                Some(("value_ints", a)) => {
                    v.constant.insert(out.clone(), ());
                    set_ints(v, Some(&out), a.ints.clone());
                    Ok(vec![vec![a.ints.len() as u64]])
                }
                Some(("value_float", _)) => Ok(vec![vec![]]),
                Some(("value_floats", a)) => Ok(vec![vec![a.floats.len() as u64]]),
                _ => Err(ctx.err("only one 'value', 'value_int(s)' or 'value_float(s)' attribute is supported")),
            }
        }
        "ConstantOfShape" => {
            // A constant tensor of the shape input 0 holds (the onnx package's "light" model-zoo
            // files make their weights so).
            let dims = ctx.const_input(v, 0, "shape")?.ok_or_else(|| ctx.err("the shape is missing"))?;
            let out: Shape = dims.iter().map(|d| u64::try_from(*d).ok()).collect::<Option<_>>().ok_or_else(|| ctx.err(format!("shape {dims:?} is negative")))?;
            v.constant.extend(node.outputs.first().map(|o| (o.clone(), ())));
            Ok(vec![out])
        }
        "QuantizeLinear" => {
            // The output's type is the zero point's (input 2), or `output_dtype`, or UINT8.
            let zp_bits = node.inputs.get(2).and_then(|n| v.bits.get(n)).copied();
            let bits = zp_bits.or_else(|| int_type_bits(ctx.int("output_dtype", 0) as i32)).unwrap_or(8);
            if let Some(o) = node.outputs.first() {
                v.bits.insert(o.clone(), bits);
            }
            same(v)
        }
        "DequantizeLinear" => {
            // The precision carries through to the consumer: a Conv or Gemm reads `bits` operands.
            let bits = node.inputs.first().and_then(|n| v.bits.get(n)).copied();
            if let (Some(o), Some(b)) = (node.outputs.first(), bits) {
                v.bits.insert(o.clone(), b);
                if node.inputs.first().is_some_and(|n| v.constant.contains_key(n)) {
                    v.constant.insert(o.clone(), ());
                }
            }
            same(v)
        }
        _ => Err(ctx.err(unsupported(op))),
    }
}

/// Carry what a value-preserving node (Identity, Cast, Reshape, Squeeze, Unsqueeze) keeps of its
/// input 0 to its output 0: whether it is a constant, and its integer values.
fn carry(v: &mut Values, node: &Node) {
    let (Some(i), Some(o)) = (node.inputs.first(), node.outputs.first()) else { return };
    if v.constant.contains_key(i) {
        v.constant.insert(o.clone(), ());
    }
    if let Some(x) = v.ints.get(i).cloned() {
        v.ints.insert(o.clone(), x);
    }
}

/// Why an operator is refused.
fn unsupported(op: &str) -> String {
    match op {
        "ConvTranspose" | "ConvInteger" | "QLinearConv" | "QLinearMatMul" | "MatMulInteger" => format!("operator {op} is not supported (use Conv/MatMul with QuantizeLinear/DequantizeLinear)"),
        _ => format!("operator {op} is not supported"),
    }
}

/// Reshape's output shape: 0 copies the input's dimension (unless `allowzero`), -1 takes the rest.
fn reshape(ctx: &Ctx, x: &[u64], target: &[i64], allowzero: bool) -> Result<Shape, ImportError> {
    let total = product(ctx, x)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, t) in target.iter().enumerate() {
        match *t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*x.get(i).ok_or_else(|| ctx.err(format!("shape {target:?} copies a dimension input {x:?} lacks")))?),
            d if d >= 0 => out.push(d as u64),
            _ => return Err(ctx.err(format!("target shape {target:?} is invalid"))),
        }
    }
    let known = product(ctx, &out)?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(ctx.err(format!("cannot reshape {x:?} to {target:?}")));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(ctx.err(format!("cannot reshape {x:?} ({total} elements) to {target:?}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::model::Attribute;

    fn node(op: &str, attributes: Vec<Attribute>) -> Node {
        Node { name: "n".into(), op_type: op.into(), attributes, ..Default::default() }
    }

    fn ints(name: &str, ints: &[i64]) -> Attribute {
        Attribute { name: name.into(), ints: ints.to_vec(), ..Default::default() }
    }

    #[test]
    fn reshape_copies_zeros_and_infers_minus_one() {
        let n = node("Reshape", vec![]);
        let ctx = Ctx { node: &n };
        assert_eq!(reshape(&ctx, &[2, 8, 1, 1], &[0, -1], false).unwrap(), vec![2, 8]);
        assert_eq!(reshape(&ctx, &[2, 8, 1, 1], &[-1, 4], false).unwrap(), vec![4, 4]);
        assert!(reshape(&ctx, &[2, 8], &[3, -1], false).is_err());
        assert!(reshape(&ctx, &[2, 8], &[-1, -1], false).is_err());
        assert_eq!(reshape(&ctx, &[2, 8], &[5], false).unwrap_err().to_string(), "node 'n' (Reshape): cannot reshape [2, 8] (16 elements) to [5]");
    }

    #[test]
    fn broadcast_follows_numpy() {
        let n = node("Add", vec![]);
        let ctx = Ctx { node: &n };
        assert_eq!(broadcast(&ctx, &[1, 32, 7, 7], &[32, 1, 1]).unwrap(), vec![1, 32, 7, 7]);
        assert_eq!(broadcast(&ctx, &[4], &[]).unwrap(), vec![4]);
        assert!(broadcast(&ctx, &[3, 4], &[5]).is_err());
    }

    #[test]
    fn windows_pad_and_stride() {
        // SAME_UPPER on 7 with kernel 3, stride 2: out 4, total pad 2, one on each side.
        let n = node("Conv", vec![ints("strides", &[2, 2]), Attribute { name: "auto_pad".into(), s: b"SAME_UPPER".to_vec(), ..Default::default() }]);
        let w = window(&Ctx { node: &n }, [7, 7], [3, 3], false).unwrap();
        assert_eq!((w.out, w.pads, w.stride), ([4, 4], [1, 1, 1, 1], 2));
        // SAME_UPPER on 8 with kernel 3, stride 2: total pad 1, after only: asymmetric.
        let w = window(&Ctx { node: &n }, [8, 8], [3, 3], false).unwrap();
        assert_eq!(w.pads, [0, 0, 1, 1]);
        assert!(w.symmetric_pad(&Ctx { node: &n }).unwrap_err().to_string().contains("asymmetric pads [0, 0, 1, 1]"));
        // Pooling with ceil_mode: (112 - 3) / 2 rounded up + 1 = 56.
        let n = node("MaxPool", vec![ints("strides", &[2, 2])]);
        assert_eq!(window(&Ctx { node: &n }, [112, 112], [3, 3], true).unwrap().out, [56, 56]);
        let n = node("Conv", vec![ints("dilations", &[2, 2])]);
        assert_eq!(window(&Ctx { node: &n }, [8, 8], [3, 3], false).err().unwrap().to_string(), "node 'n' (Conv): dilation [2, 2] is not supported");
        let n = node("Conv", vec![ints("strides", &[1, 2])]);
        assert!(window(&Ctx { node: &n }, [8, 8], [3, 3], false).is_err());
    }

    #[test]
    fn integer_types_give_bits() {
        assert_eq!([3, 2, 22, 21, 26, 5, 1].map(int_type_bits), [Some(8), Some(8), Some(4), Some(4), Some(2), Some(16), None]);
    }
}
