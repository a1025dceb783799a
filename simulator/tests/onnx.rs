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
