//! ONNX import on outside files (`tests/data/onnx/`, see its README): ZigZag's MobileNetV2,
//! ResNet-18 and AlexNet, and the `onnx` package's single-Conv test models.
//!
//! Run it alone with `cargo nextest run --release -p bitfusion-simulator --test onnx`.

use bitfusion_simulator::networks::network;
use bitfusion_simulator::onnx::{OnnxError, OnnxOptions, parse_onnx, read_onnx};
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
