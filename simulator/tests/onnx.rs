//! ONNX import on outside files (`tests/data/onnx/`, see its README): ZigZag's MobileNetV2,
//! ResNet-18 and AlexNet, the `onnx` package's single-Conv and single-operator test models and
//! its "light" model-zoo graphs, and hand-made models (the `pb` encoder below) for each operator.
//!
//! Run it alone with `cargo nextest run --release -p bitfusion-simulator --test onnx`.

use bitfusion_simulator::networks::network;
use bitfusion_simulator::onnx::{OnnxError, OnnxOptions, output_shapes, parse_onnx, read_onnx};
use bitfusion_simulator::{Layer, LayerKind, Objective, build, simulate_layers};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/onnx").join(name)
}

fn import(name: &str) -> Vec<Layer> {
    read_onnx(&data(name), &OnnxOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn dump(ls: &[Layer]) -> String {
    ls.iter().map(|l| format!("{l:?}\n")).collect()
}

#[test]
fn onnx_mobilenetv2_equals_the_built_in_network() {
    let ours = import("mobilenetv2.onnx");
    let built = network("mobilenet_v2").unwrap().layers();
    assert_eq!(ours.len(), 53, "{}", dump(&ours));
    // Everything but the name: kind, batch, channels, input size, kernel, stride, pad, groups, bits, im2col.
    let shape = |l: &Layer| Layer { name: String::new(), ..l.clone() };
    for (i, (a, b)) in ours.iter().zip(&built).enumerate() {
        assert_eq!(shape(a), shape(b), "layer {i}: {} against {}", a.name, b.name);
    }
    assert_eq!(ours.iter().filter(|l| l.is_depthwise()).count(), 17);
    let hw = bitfusion_simulator::config::load_hw("bitfusion-isca2018", &[]).unwrap();
    let model = build(&hw, None, Objective::Cycles);
    let (x, y) = (simulate_layers(model.as_ref(), &ours).unwrap(), simulate_layers(model.as_ref(), &built).unwrap());
    assert_eq!(format!("{:?}", x.total), format!("{:?}", y.total));
}

#[test]
fn onnx_alexnet_grouped_convs_and_resnet18_import() {
    let alex = import("alexnet.onnx");
    let convs: Vec<_> = alex.iter().filter(|l| l.kind == LayerKind::Conv).collect();
    assert_eq!((convs.len(), alex.len()), (5, 8), "{}", dump(&alex));
    assert_eq!(convs.iter().filter(|l| l.groups == 2).count(), 3, "{}", dump(&alex));
    assert!(alex[0].im2col && !alex[1].im2col);
    let resnet = import("resnet18.onnx");
    assert_eq!(resnet.len(), 21, "{}", dump(&resnet));
    assert_eq!(resnet.last().unwrap().kind, LayerKind::Fc);
}

#[test]
fn onnx_single_conv_models_import_padding_strides_groups_depthwise() {
    let one = |n: &str| {
        let ls = import(n);
        assert_eq!(ls.len(), 1, "{n}: {}", dump(&ls));
        ls.into_iter().next().unwrap()
    };
    // PyTorch's Conv2d(3, 4, 3, stride=2, padding=1) on a 2x3x6x6 input, and without padding.
    assert_eq!(one("conv2d_padding.onnx"), Layer::conv("3", 2, 3, 4, 6, 3, 2, 1, 1, 8, 8).with_im2col(true));
    assert_eq!(one("conv2d_strided.onnx"), Layer::conv("3", 2, 3, 4, 6, 3, 2, 0, 1, 8, 8).with_im2col(true));
    // Conv2d(4, 4, 3, groups=4) and Conv2d(4, 8, 3, groups=4): depthwise and grouped.
    let d = one("conv2d_depthwise.onnx");
    assert_eq!(d, Layer::conv("3", 2, 4, 4, 6, 3, 1, 0, 4, 8, 8).with_im2col(true));
    assert!(d.is_depthwise());
    let g = one("conv2d_depthwise_with_multiplier.onnx");
    assert_eq!(g, Layer::conv("3", 2, 4, 8, 6, 3, 1, 0, 4, 8, 8).with_im2col(true));
    assert!(!g.is_depthwise());
}

#[test]
fn onnx_dilation_is_refused_naming_the_node() {
    let e = read_onnx(&data("conv2d_dilated.onnx"), &OnnxOptions::default()).unwrap_err().to_string();
    assert!(e.ends_with("conv2d_dilated.onnx: node '3' (Conv): dilation [2, 2] is not supported"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn onnx_non_square_kernels_are_refused_naming_the_node() {
    // test_Conv2d_groups is Conv2d(4, 6, (3, 2), groups=2): a layer's kernel is square.
    let e = read_onnx(&data("conv2d_groups.onnx"), &OnnxOptions::default()).unwrap_err().to_string();
    assert!(e.ends_with("conv2d_groups.onnx: node '3' (Conv): non-square kernel 3x2 is not supported"), "{e}");
}

#[test]
fn onnx_options_set_batch_and_bits() {
    let ls = read_onnx(&data("resnet18.onnx"), &OnnxOptions { batch: 4, w_bits: 2, a_bits: 4 }).unwrap();
    assert!(ls.iter().all(|l| l.w_bits == 2 && l.a_bits == 4), "{}", dump(&ls));
}

#[test]
fn onnx_every_prefix_and_corruption_is_an_error_never_a_panic() {
    for name in ["alexnet.onnx", "conv2d_groups.onnx", "resnet18.onnx"] {
        let bytes = std::fs::read(data(name)).unwrap();
        for n in 0..bytes.len() {
            // A prefix may still decode (it ends between fields); it must never panic.
            let _ = parse_onnx(&bytes[..n], name, &OnnxOptions::default());
        }
        assert!(parse_onnx(&bytes[..bytes.len() / 2], name, &OnnxOptions::default()).is_err());
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut b = bytes.clone();
            let i = (seed >> 33) as usize % b.len();
            b[i] = (seed >> 17) as u8;
            let _ = parse_onnx(&b, name, &OnnxOptions::default());
        }
    }
    let e = parse_onnx(b"\xff\xff\xff", "junk.onnx", &OnnxOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
    assert!(e.to_string().starts_with("junk.onnx: not a readable ONNX model: "), "{e}");
    assert_eq!(parse_onnx(b"", "empty.onnx", &OnnxOptions::default()).unwrap_err().to_string(), "empty.onnx: not a readable ONNX model: the model has no graph");
}

/// A protobuf encoder for hand-made models: each function returns one encoded field.
mod pb {
    fn varint(mut x: u64, out: &mut Vec<u8>) {
        while x >= 0x80 {
            out.push((x as u8) | 0x80);
            x >>= 7;
        }
        out.push(x as u8);
    }
    pub fn int(field: u32, x: i64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(field) << 3, &mut out);
        varint(x as u64, &mut out);
        out
    }
    pub fn bytes(field: u32, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint((u64::from(field) << 3) | 2, &mut out);
        varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    }
    pub fn msg(field: u32, parts: &[Vec<u8>]) -> Vec<u8> {
        bytes(field, &parts.concat())
    }
    pub fn str(field: u32, s: &str) -> Vec<u8> {
        bytes(field, s.as_bytes())
    }
    /// GraphProto.initializer: TensorProto dims (1), data_type (2), name (8).
    pub fn initializer(name: &str, data_type: i64, dims: &[i64]) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = dims.iter().map(|d| int(1, *d)).collect();
        parts.push(int(2, data_type));
        parts.push(str(8, name));
        msg(5, &parts)
    }
    /// GraphProto.node: NodeProto input (1), output (2), name (3), op_type (4), attribute (5).
    pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str], attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = inputs.iter().map(|i| str(1, i)).collect();
        parts.extend(outputs.iter().map(|o| str(2, o)));
        parts.push(str(3, name));
        parts.push(str(4, op));
        parts.extend(attributes.iter().cloned());
        msg(1, &parts)
    }
    /// NodeProto.attribute with an int (AttributeProto name 1, i 3, type 20 = INT 2).
    pub fn attr_int(name: &str, i: i64) -> Vec<u8> {
        msg(5, &[str(1, name), int(3, i), int(20, 2)])
    }
    /// An INT64 TensorProto's fields: dims (1), data_type (2) = 7, int64_data (7, packed).
    pub fn int64_tensor(dims: &[i64], values: &[i64]) -> Vec<Vec<u8>> {
        let packed: Vec<u8> = values.iter().flat_map(|i| int(1, *i)[1..].to_vec()).collect();
        let mut parts: Vec<Vec<u8>> = dims.iter().map(|d| int(1, *d)).collect();
        parts.push(int(2, 7));
        parts.push(bytes(7, &packed));
        parts
    }
    /// GraphProto.initializer holding INT64 values (TensorProto name 8).
    pub fn int64_initializer(name: &str, dims: &[i64], values: &[i64]) -> Vec<u8> {
        let mut parts = int64_tensor(dims, values);
        parts.push(str(8, name));
        msg(5, &parts)
    }
    /// A Constant node whose `value` (AttributeProto t 5, type 20 = TENSOR 4) is an INT64 tensor.
    pub fn constant(name: &str, dims: &[i64], values: &[i64]) -> Vec<u8> {
        node(name, "Constant", &[], &[name], &[msg(5, &[str(1, "value"), msg(5, &int64_tensor(dims, values)), int(20, 4)])])
    }
    /// GraphProto.input (11) named `name` with a FLOAT tensor type of fixed dims.
    pub fn input(name: &str, dims: &[i64]) -> Vec<u8> {
        let shape = msg(2, &dims.iter().map(|d| msg(1, &[int(1, *d)])).collect::<Vec<_>>());
        msg(11, &[str(1, name), msg(2, &[msg(1, &[int(1, 1), shape])])])
    }
    /// GraphProto.output (12) named `name`, without a type.
    pub fn output(name: &str) -> Vec<u8> {
        msg(12, &[str(1, name)])
    }
    /// A ModelProto of these graph fields at opset `opset`.
    pub fn model(opset: i64, graph: &[Vec<u8>]) -> Vec<u8> {
        [int(1, 8), msg(8, &[str(1, ""), int(2, opset)]), bytes(7, &graph.concat())].concat()
    }
    /// NodeProto.attribute with ints (ints 8, packed; type 20 = INTS 7).
    pub fn attr_ints(name: &str, ints: &[i64]) -> Vec<u8> {
        let packed: Vec<u8> = ints.iter().flat_map(|i| int(1, *i)[1..].to_vec()).collect();
        msg(5, &[str(1, name), bytes(8, &packed), int(20, 7)])
    }
}

/// A QDQ network with a symbolic batch: QuantizeLinear/DequantizeLinear on a 3x8x8 input (INT8
/// zero point) and INT4 weights into a padded Conv, a Conv with ZigZag's weight_size/act_size, then
/// Flatten and a Gemm with transB that the defaults price.
fn qdq_model() -> Vec<u8> {
    use pb::*;
    let dim = |d: Vec<u8>| msg(1, &[d]);
    // ValueInfoProto x: name 1, type 2 -> tensor_type 1 -> elem_type 1 (FLOAT), shape 2 -> dim 1.
    let shape = msg(2, &[dim(str(2, "N")), dim(int(1, 3)), dim(int(1, 8)), dim(int(1, 8))]);
    let input = msg(11, &[str(1, "x"), msg(2, &[msg(1, &[int(1, 1), shape])])]);
    let graph = [
        str(2, "qdq"),
        initializer("sx", 1, &[]),
        initializer("zx", 3, &[]),
        initializer("W", 22, &[4, 3, 3, 3]),
        initializer("sw", 1, &[]),
        initializer("W2", 1, &[4, 4, 1, 1]),
        initializer("W3", 1, &[10, 256]),
        input,
        node("q", "QuantizeLinear", &["x", "sx", "zx"], &["xq"], &[]),
        node("dq", "DequantizeLinear", &["xq", "sx", "zx"], &["xd"], &[]),
        node("dqw", "DequantizeLinear", &["W", "sw"], &["Wd"], &[]),
        node("qconv", "Conv", &["xd", "Wd"], &["y"], &[attr_ints("pads", &[1, 1, 1, 1]), attr_ints("kernel_shape", &[3, 3])]),
        node("relu", "Relu", &["y"], &["r"], &[]),
        node("zz", "Conv", &["r", "W2"], &["z"], &[attr_int("weight_size", 2), attr_int("act_size", 4)]),
        node("flat", "Flatten", &["z"], &["f"], &[]),
        node("fc", "Gemm", &["f", "W3"], &["out"], &[attr_int("transB", 1)]),
    ]
    .concat();
    // ModelProto: ir_version 1 (skipped), opset_import 8, graph 7.
    [int(1, 8), msg(8, &[str(1, ""), int(2, 21)]), bytes(7, &graph)].concat()
}

#[test]
fn onnx_bits_come_from_qdq_types_and_zigzag_attributes_and_batch_fills_symbolic_dims() {
    let ls = parse_onnx(&qdq_model(), "qdq.onnx", &OnnxOptions { batch: 3, w_bits: 6, a_bits: 5 }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ls,
        vec![
            Layer::conv("qconv", 3, 3, 4, 8, 3, 1, 1, 1, 4, 8).with_im2col(true),
            Layer::conv("zz", 3, 4, 4, 8, 1, 1, 0, 1, 2, 4),
            Layer::fc("fc", 3, 256, 10, 6, 5),
        ]
    );
    // Every prefix of a hand-made model is an error or a result, never a panic.
    let bytes = qdq_model();
    for n in 0..bytes.len() {
        let _ = parse_onnx(&bytes[..n], "qdq.onnx", &OnnxOptions::default());
    }
}

#[test]
fn onnx_files_are_sweep_workloads() {
    let dir = data("");
    let spec = "base = \"bitfusion-isca2018\"\nworkloads = [\"mobilenetv2.onnx\", \"mobilenet_v2\"]\nprecisions = [\"native\"]\nbatch = 2\n[axes]\n\"array.rows\" = [16]\n";
    let sweep = bitfusion_simulator::sweep::Sweep::from_str(spec, "spec.toml", &dir).unwrap_or_else(|e| panic!("{e}"));
    let [a, b] = &sweep.workloads[..] else { panic!("two workloads") };
    let unnamed = |ls: &[Layer]| ls.iter().map(|l| Layer { name: String::new(), ..l.clone() }).collect::<Vec<_>>();
    assert_eq!(unnamed(&a.layers), unnamed(&b.layers));
    assert!(a.layers.iter().all(|l| l.batch == 2));
    let spec = spec.replace("mobilenetv2.onnx", "conv2d_dilated.onnx");
    let e = bitfusion_simulator::sweep::Sweep::from_str(&spec, "spec.toml", &dir).unwrap_err().to_string();
    assert!(e.contains("conv2d_dilated.onnx: node '3' (Conv): dilation [2, 2] is not supported"), "{e}");
}


/// The inferred shape of graph output `name` of a hand-made model.
fn inferred(bytes: &[u8], name: &str) -> Vec<u64> {
    let outs = output_shapes(bytes, "m.onnx", &OnnxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    outs.into_iter().find(|o| o.name == name).and_then(|o| o.inferred).unwrap_or_else(|| panic!("no shape for {name}"))
}

/// The one-line import error of a hand-made model.
fn import_error(bytes: &[u8]) -> String {
    let e = parse_onnx(bytes, "m.onnx", &OnnxOptions::default()).unwrap_err().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    e
}

/// PyTorch's `x.view(x.size(0), -1)` before a Linear: Shape -> Gather -> Unsqueeze -> Concat ->
/// Reshape, the Unsqueeze axes as an attribute (opset 11) or a constant input (opset 13).
fn view_flatten_model(opset: i64) -> Vec<u8> {
    use pb::*;
    let unsq = if opset < 13 {
        node("u", "Unsqueeze", &["n"], &["n1"], &[attr_ints("axes", &[0])])
    } else {
        node("u", "Unsqueeze", &["n", "ax0"], &["n1"], &[])
    };
    model(
        opset,
        &[
            input("x", &[3, 16, 5, 5]),
            initializer("W", 1, &[10, 400]),
            int64_initializer("ax0", &[1], &[0]),
            node("shape", "Shape", &["x"], &["s"], &[]),
            constant("zero", &[], &[0]),
            node("g", "Gather", &["s", "zero"], &["n"], &[attr_int("axis", 0)]),
            unsq,
            constant("minus1", &[1], &[-1]),
            node("cat", "Concat", &["n1", "minus1"], &["target"], &[attr_int("axis", 0)]),
            node("view", "Reshape", &["x", "target"], &["flat"], &[]),
            node("fc", "Gemm", &["flat", "W"], &["y"], &[attr_int("transB", 1)]),
            output("target"),
            output("y"),
        ],
    )
}

#[test]
fn onnx_shape_computed_reshape_folds_the_target_in_both_opsets() {
    for opset in [11, 13] {
        let m = view_flatten_model(opset);
        assert_eq!(inferred(&m, "target"), vec![2], "opset {opset}");
        let ls = parse_onnx(&m, "view.onnx", &OnnxOptions::default()).unwrap_or_else(|e| panic!("opset {opset}: {e}"));
        assert_eq!(ls, vec![Layer::fc("fc", 3, 400, 10, 8, 8)], "opset {opset}");
        assert_eq!(inferred(&m, "y"), vec![3, 10]);
    }
}

#[test]
fn onnx_integer_arithmetic_slices_and_casts_of_shapes_fold() {
    use pb::*;
    // `x.view(2, x.size(1) * x.size(2) * x.size(3) // 2, -1)` through Slice, Gather, Cast, Mul, Div.
    let m = model(
        13,
        &[
            input("x", &[2, 4, 6, 6]),
            int64_initializer("idx1", &[], &[1]),
            int64_initializer("two", &[1], &[2]),
            int64_initializer("two_s", &[], &[2]),
            int64_initializer("big", &[1], &[i64::MAX]),
            int64_initializer("ax0", &[1], &[0]),
            node("shape", "Shape", &["x"], &["s"], &[]),
            node("rest", "Slice", &["s", "two", "big"], &["hw"], &[]),
            node("empty", "Slice", &["s", "big", "two"], &["none"], &[]),
            node("c", "Gather", &["s", "idx1"], &["ch"], &[]),
            node("cast", "Cast", &["hw"], &["hw64"], &[attr_int("to", 7)]),
            node("h", "Gather", &["hw64", "idx1"], &["w"], &[]),
            node("cw", "Mul", &["ch", "w"], &["cw6"], &[]),
            node("cwh", "Mul", &["cw6", "w"], &["n"], &[]),
            node("half", "Div", &["n", "two_s"], &["n2"], &[]),
            node("u", "Unsqueeze", &["n2", "ax0"], &["n2v"], &[]),
            constant("front", &[1], &[2]),
            constant("minus1", &[1], &[-1]),
            node("cat", "Concat", &["front", "n2v", "minus1"], &["target"], &[attr_int("axis", 0)]),
            node("view", "Reshape", &["x", "target"], &["r"], &[]),
            output("hw"),
            output("none"),
            output("n2"),
            output("r"),
        ],
    );
    assert_eq!(inferred(&m, "hw"), vec![2]);
    assert_eq!(inferred(&m, "none"), vec![0]);
    assert_eq!(inferred(&m, "n2"), Vec::<u64>::new());
    // 4 * 6 * 6 / 2 = 72, then -1 takes the remaining 2.
    assert_eq!(inferred(&m, "r"), vec![2, 72, 2]);
}

/// A small classifier of torchvision's ops: Conv, a squeeze-and-excitation block (ReduceMean as
/// global pooling, HardSigmoid, Mul), Transpose there and back, a strided Slice with negative and
/// clamped indices, Identity, Dropout, Squeeze/Unsqueeze with and without axes, Gemm, Softmax.
fn classifier_model() -> Vec<u8> {
    use pb::*;
    model(
        13,
        &[
            input("x", &[1, 3, 8, 8]),
            initializer("W1", 1, &[8, 3, 3, 3]),
            initializer("Wse", 1, &[2, 8, 1, 1]),
            initializer("Wex", 1, &[8, 2, 1, 1]),
            initializer("W2", 1, &[16, 8, 3, 3]),
            initializer("W3", 1, &[16, 10]),
            int64_initializer("starts", &[2], &[-6, 1]),
            int64_initializer("ends", &[2], &[100, -1]),
            int64_initializer("axes", &[2], &[-2, 3]),
            int64_initializer("steps", &[2], &[2, 2]),
            int64_initializer("hw", &[2], &[2, 3]),
            int64_initializer("one", &[1], &[1]),
            node("conv1", "Conv", &["x", "W1"], &["c1"], &[attr_ints("pads", &[1, 1, 1, 1])]),
            node("pool", "ReduceMean", &["c1"], &["p"], &[attr_ints("axes", &[2, 3]), attr_int("keepdims", 1)]),
            node("se1", "Conv", &["p", "Wse"], &["s1"], &[]),
            node("relu", "Relu", &["s1"], &["s1r"], &[]),
            node("se2", "Conv", &["s1r", "Wex"], &["s2"], &[]),
            node("gate", "HardSigmoid", &["s2"], &["g"], &[]),
            node("scale", "Mul", &["c1", "g"], &["se"], &[]),
            node("nhwc", "Transpose", &["se"], &["t"], &[attr_ints("perm", &[0, 2, 3, 1])]),
            node("nchw", "Transpose", &["t"], &["t2"], &[attr_ints("perm", &[0, 3, 1, 2])]),
            node("crop", "Slice", &["t2", "starts", "ends", "axes", "steps"], &["cr"], &[]),
            node("id", "Identity", &["cr"], &["cri"], &[]),
            node("drop", "Dropout", &["cri"], &["crd"], &[]),
            node("conv2", "Conv", &["crd", "W2"], &["c2"], &[]),
            node("sq", "Squeeze", &["c2", "hw"], &["v"], &[]),
            node("unsq", "Unsqueeze", &["v", "one"], &["v3"], &[]),
            node("sqall", "Squeeze", &["v3"], &["v1"], &[]),
            node("batch", "Unsqueeze", &["v1", "ax0"], &["v2"], &[]),
            int64_initializer("ax0", &[1], &[0]),
            node("fc", "Gemm", &["v2", "W3"], &["logits"], &[]),
            node("prob", "Softmax", &["logits"], &["y"], &[attr_int("axis", 1)]),
            output("t"),
            output("cr"),
            output("v3"),
            output("y"),
        ],
    )
}

#[test]
fn onnx_classifier_ops_propagate_shapes_and_import_layers() {
    let m = classifier_model();
    assert_eq!(inferred(&m, "t"), vec![1, 8, 8, 8]);
    // Rows -6 = 2 to 100 clamped to 8, step 2: 2, 4, 6; columns 1 to -1 = 7, step 2: 1, 3, 5.
    assert_eq!(inferred(&m, "cr"), vec![1, 8, 3, 3]);
    assert_eq!(inferred(&m, "v3"), vec![1, 1, 16]);
    assert_eq!(inferred(&m, "y"), vec![1, 10]);
    let ls = parse_onnx(&m, "cls.onnx", &OnnxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let expected = vec![
        Layer::conv("conv1", 1, 3, 8, 8, 3, 1, 1, 1, 8, 8).with_im2col(true),
        Layer::conv("se1", 1, 8, 2, 1, 1, 1, 0, 1, 8, 8),
        Layer::conv("se2", 1, 2, 8, 1, 1, 1, 0, 1, 8, 8),
        Layer::conv("conv2", 1, 8, 16, 3, 3, 1, 0, 1, 8, 8),
        Layer::fc("fc", 1, 16, 10, 8, 8),
    ];
    assert_eq!(ls, expected, "{}", dump(&ls));
}

#[test]
fn onnx_split_and_constant_forms_propagate() {
    use pb::*;
    let m = model(
        13,
        &[
            input("x", &[1, 8, 4, 4]),
            int64_initializer("parts", &[2], &[3, 5]),
            node("two", "Split", &["x", "parts"], &["a", "b"], &[attr_int("axis", 1)]),
            node("three", "Split", &["x"], &["c", "d", "e"], &[attr_int("axis", -3)]),
            node("k", "Constant", &[], &["shape"], &[attr_ints("value_ints", &[1, -1])]),
            node("flat", "Reshape", &["x", "shape"], &["f"], &[]),
            output("a"),
            output("b"),
            output("e"),
            output("f"),
        ],
    );
    assert_eq!([inferred(&m, "a"), inferred(&m, "b"), inferred(&m, "e"), inferred(&m, "f")], [vec![1, 3, 4, 4], vec![1, 5, 4, 4], vec![1, 2, 4, 4], vec![1, 128]]);
}

#[test]
fn onnx_bad_shape_ops_are_one_line_errors_naming_node_and_op() {
    use pb::*;
    let with = |nodes: Vec<Vec<u8>>| {
        let mut g = vec![input("x", &[1, 8, 4, 4]), initializer("W", 1, &[4, 8, 1, 1]), int64_initializer("ax", &[1], &[1])];
        g.extend(nodes);
        g.push(node("conv", "Conv", &["y", "W"], &["z"], &[]));
        import_error(&model(13, &g))
    };
    let x = with(vec![input("st", &[1]), node("sl", "Slice", &["x", "st", "st"], &["y"], &[])]);
    assert!(x.ends_with("m.onnx: node 'sl' (Slice): the starts (input 'st') are not a constant"), "{x}");
    let x = with(vec![node("sq", "Squeeze", &["x", "ax"], &["y"], &[])]);
    assert!(x.ends_with("node 'sq' (Squeeze): axis 1 of [1, 8, 4, 4] has size 8, not 1"), "{x}");
    let x = with(vec![node("tr", "Transpose", &["x"], &["y"], &[attr_ints("perm", &[0, 1, 1, 2])])]);
    assert!(x.ends_with("node 'tr' (Transpose): perm [0, 1, 1, 2] is not a permutation of the 4 axes of [1, 8, 4, 4]"), "{x}");
    let x = with(vec![node("un", "Unsqueeze", &["x"], &["y"], &[])]);
    assert!(x.ends_with("node 'un' (Unsqueeze): the axes are missing"), "{x}");
    let x = with(vec![node("un", "Unsqueeze", &["x"], &["y"], &[attr_ints("axes", &(0..61).collect::<Vec<_>>())])]);
    assert!(x.ends_with("node 'un' (Unsqueeze): an output of rank 65 is above the supported 64"), "{x}");
    let x = with(vec![node("tile", "Tile", &["x", "ax"], &["y"], &[])]);

    assert!(x.ends_with("node 'tile' (Tile): operator Tile is not supported"), "{x}");
    let x = with(vec![node("sp", "Split", &["x", "ax"], &["y", "y2"], &[attr_int("axis", 1)])]);
    assert!(x.ends_with("node 'sp' (Split): split [1] does not divide axis 1 of [1, 8, 4, 4] into 2 outputs"), "{x}");
    let x = with(vec![constant("zero", &[1], &[0]), node("div", "Div", &["ax", "zero"], &["q"], &[]), node("r", "Reshape", &["x", "q"], &["y"], &[])]);
    assert!(x.ends_with("node 'div' (Div): Div of constants 1 and 0 overflows or divides by zero"), "{x}");
}

/// The `onnx` package's PyTorch operator tests (opset 6 era: Slice, Squeeze, ReduceMean and Split
/// with attributes) and the Embedding test (Gather): the shapes the importer propagates equal the
/// graph outputs' shapes the exporter declared.
#[test]
fn onnx_single_op_models_propagate_their_declared_output_shapes() {
    for (name, ops) in [
        ("op_permute2.onnx", "Transpose"),
        ("op_reduced_mean.onnx", "ReduceMean"),
        ("op_reduced_mean_keepdim.onnx", "ReduceMean keepdims"),
        ("op_index.onnx", "Slice, Squeeze"),
        ("op_chunk.onnx", "Split"),
        ("op_embedding.onnx", "Gather"),
    ] {
        let bytes = std::fs::read(data(name)).unwrap();
        let outs = output_shapes(&bytes, name, &OnnxOptions::default()).unwrap_or_else(|e| panic!("{ops}: {e}"));
        assert!(!outs.is_empty());
        for o in outs {
            assert!(o.declared.is_some(), "{name}: {} declares no shape", o.name);
            assert_eq!(o.inferred, o.declared, "{name} ({ops}): output {}", o.name);
        }
    }
}

/// The `onnx` package's "light" model-zoo graphs (Caffe2 exports whose weights are ConstantOfShape
/// nodes): SqueezeNet 1.0 (conv1, 8 fire modules of 3 convs, conv10), GoogLeNet (3 stem convs,
/// 9 inception modules of 6 convs, the classifier; LRN, Concat, Dropout) and ShuffleNet (conv1,
/// 16 units of group conv, depthwise conv, group conv, the classifier; channel shuffle as Reshape,
/// Transpose, Reshape).
#[test]
fn onnx_model_zoo_graphs_import_with_their_declared_output_shapes() {
    for (name, layers, fc) in [("squeezenet_light.onnx", 26, 0), ("inception_v1_light.onnx", 58, 1), ("shufflenet_light.onnx", 50, 1)] {
        let ls = import(name);
        assert_eq!(ls.len(), layers, "{name}: {}", dump(&ls));
        assert_eq!(ls.iter().filter(|l| l.kind == LayerKind::Fc).count(), fc, "{name}");
        let bytes = std::fs::read(data(name)).unwrap();
        for o in output_shapes(&bytes, name, &OnnxOptions::default()).unwrap() {
            assert_eq!((o.inferred.as_deref(), o.declared.as_deref().map(|d| d[1])), (o.declared.as_deref(), Some(1000)), "{name}");
        }
    }
    let shuffle = import("shufflenet_light.onnx");
    assert_eq!(shuffle.iter().filter(|l| l.is_depthwise()).count(), 16, "{}", dump(&shuffle));
}
