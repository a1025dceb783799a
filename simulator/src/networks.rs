//! Built-in networks: the Bit Fusion paper's eight benchmarks (with the
//! per-layer precisions and batch 16 of the original simulator's
//! `benchmarks.py`, as recorded in the reference `network_layers.csv`), the
//! 2x-wide WRPN variants its figures use, and MobileNetV2 at 224 and at 32
//! input resolution (8-bit, batch 1).
//!
//! Only convolution and fully connected layers are listed: pooling,
//! element-wise and normalisation layers are not simulated (as in the original).

use crate::layer::Layer;

/// A built-in network.
pub struct Network {
    pub name: &'static str,
    pub description: &'static str,
    build: fn() -> Vec<Layer>,
}

impl Network {
    pub fn layers(&self) -> Vec<Layer> {
        (self.build)()
    }
}

/// Every built-in network, in the order `bitfusion networks` lists them.
pub const NETWORKS: &[Network] = &[
    Network { name: "alexnet", description: "AlexNet (two-tower), the paper's per-layer bits, batch 16", build: alexnet },
    Network { name: "alexnet_wrpn", description: "AlexNet 2x wide (WRPN), as in the paper's figures, batch 16", build: alexnet_wrpn },
    Network { name: "svhn", description: "SVHN CNN, 1-bit layers (8-bit input), batch 16", build: svhn },
    Network { name: "cifar10", description: "CIFAR-10 CNN, 2-bit layers (8-bit input), batch 16", build: cifar10 },
    Network { name: "lenet5", description: "LeNet-5, 2-bit, batch 16", build: lenet5 },
    Network { name: "vgg7", description: "VGG-7, 2-bit, batch 16", build: vgg7 },
    Network { name: "resnet18", description: "ResNet-18 as in the original benchmarks, 4-bit (8-bit stem), batch 16", build: resnet18 },
    Network { name: "resnet18_wrpn", description: "ResNet-18 2x wide (WRPN), as in the paper's figures, batch 16", build: resnet18_wrpn },
    Network { name: "rnn", description: "RNN cell (4096x4096 matrix), 4-bit, batch 16", build: rnn },
    Network { name: "lstm", description: "LSTM cell (3600x3600 matrix), 4-bit, batch 16", build: lstm },
    Network { name: "mobilenet_v2", description: "MobileNetV2 1.0 at 224x224, 8-bit, batch 1", build: mobilenet_v2_224 },
    Network { name: "mobilenet_v2_32", description: "MobileNetV2 1.0 for 32x32 input (CIFAR strides), 8-bit, batch 1", build: mobilenet_v2_32 },
];

/// Look a built-in network up by name.
pub fn network(name: &str) -> Option<&'static Network> {
    NETWORKS.iter().find(|n| n.name == name)
}

/// Names of every built-in network.
pub fn network_names() -> Vec<&'static str> {
    NETWORKS.iter().map(|n| n.name).collect()
}

const PAPER_BATCH: u32 = 16;

/// A convolution of the paper's benchmarks: (name, in size, kernel, stride, pad, in, out, a_bits, w_bits).
#[allow(clippy::too_many_arguments)]
fn conv(name: &str, size: u32, k: u32, s: u32, p: u32, cin: u32, cout: u32, a: u32, w: u32) -> Layer {
    Layer::conv(name, PAPER_BATCH, cin, cout, size, k, s, p, 1, w, a)
}

fn fc(name: &str, cin: u32, cout: u32, a: u32, w: u32) -> Layer {
    Layer::fc(name, PAPER_BATCH, cin, cout, w, a)
}

/// Two-tower AlexNet with channel multiplier `x` (1 or 2 for WRPN).
fn alexnet_scaled(x: u32) -> Vec<Layer> {
    let mut v = Vec::new();
    for t in ["a", "b"] {
        v.push(conv(&format!("conv1_{t}"), 227, 11, 4, 0, 3, 48 * x, 8, if x == 1 { 4 } else { 8 }).with_im2col(true));
    }
    for t in ["a", "b"] {
        v.push(conv(&format!("conv2_{t}"), 27, 5, 1, 2, 48 * x, 128 * x, 4, 4));
    }
    for t in ["a", "b"] {
        v.push(conv(&format!("conv3_{t}"), 13, 3, 1, 1, 256 * x, 192 * x, 4, 4));
    }
    for t in ["a", "b"] {
        v.push(conv(&format!("conv4_{t}"), 13, 3, 1, 1, 192 * x, 192 * x, 4, 4));
    }
    for t in ["a", "b"] {
        v.push(conv(&format!("conv5_{t}"), 13, 3, 1, 1, 192 * x, 128 * x, 4, 4));
    }
    v.push(fc("fc1", 9216 * x, 4096 * x, 4, 4));
    v.push(fc("fc2", 4096 * x, 4096 * x, 4, 4));
    v.push(fc("fc3", 4096 * x, 1000, 8, 8));
    v
}

fn alexnet() -> Vec<Layer> {
    alexnet_scaled(1)
}

fn alexnet_wrpn() -> Vec<Layer> {
    alexnet_scaled(2)
}

fn svhn() -> Vec<Layer> {
    vec![
        conv("conv0", 32, 3, 1, 1, 3, 64, 8, 1).with_im2col(true),
        conv("conv1", 32, 3, 1, 1, 64, 64, 1, 1),
        conv("conv2", 16, 3, 1, 1, 64, 128, 1, 1),
        conv("conv3", 16, 3, 1, 1, 128, 128, 1, 1),
        conv("conv4", 8, 3, 1, 1, 128, 256, 1, 1),
        conv("conv5", 8, 3, 1, 1, 256, 256, 1, 1),
        fc("fc6", 4096, 1024, 1, 1),
        fc("fc7", 1024, 1024, 1, 1),
        fc("fc8", 1024, 10, 1, 1),
    ]
}

fn cifar10() -> Vec<Layer> {
    vec![
        conv("conv0", 32, 3, 1, 1, 3, 128, 8, 8).with_im2col(true),
        conv("conv1", 32, 3, 1, 1, 128, 128, 2, 2),
        conv("conv2", 16, 3, 1, 1, 128, 256, 2, 2),
        conv("conv3", 16, 3, 1, 1, 256, 256, 2, 2),
        conv("conv4", 8, 3, 1, 1, 256, 512, 2, 2),
        conv("conv5", 8, 3, 1, 1, 512, 512, 2, 2),
        fc("fc6", 8192, 1024, 2, 2),
        fc("fc7", 1024, 1024, 2, 2),
        fc("fc8", 1024, 10, 2, 2),
    ]
}

fn lenet5() -> Vec<Layer> {
    vec![
        conv("conv0", 32, 5, 1, 2, 1, 32, 2, 2).with_im2col(true),
        conv("conv1", 16, 5, 1, 2, 32, 64, 2, 2),
        fc("fc1", 4096, 512, 2, 2),
        fc("fc2", 512, 10, 2, 2),
    ]
}

fn vgg7() -> Vec<Layer> {
    vec![
        conv("conv1_a", 32, 3, 1, 1, 3, 128, 2, 2).with_im2col(true),
        conv("conv1_b", 32, 3, 1, 1, 3, 128, 2, 2).with_im2col(true),
        conv("conv2_a", 16, 3, 1, 1, 128, 256, 2, 2),
        conv("conv2_b", 16, 3, 1, 1, 128, 256, 2, 2),
        conv("conv3_a", 8, 3, 1, 1, 256, 512, 2, 2),
        conv("conv3_b", 8, 3, 1, 1, 256, 512, 2, 2),
        fc("fc1", 8192, 1024, 2, 2),
    ]
}

/// ResNet-18 as the original's `benchmarks.py` builds it (two convs per
/// module unit, the first 1x1), with channel multiplier `x`.
fn resnet18_scaled(x: u32) -> Vec<Layer> {
    let mut v = vec![conv("conv1_a", 224, 7, 2, 3, 3, 64 * x, 8, 8).with_im2col(true)];
    let mut size = 56;
    let mut cin = 64 * x;
    for (module, cout) in [(2u32, 64 * x), (3, 128 * x), (4, 256 * x), (5, 512 * x)] {
        for unit in 1..=2u32 {
            let stride = if module > 2 && unit == 1 { 2 } else { 1 };
            let prefix = format!("module{module}/conv{module}_{unit}");
            v.push(conv(&format!("{prefix}_a"), size, 1, stride, 0, cin, cout, 4, 4));
            size /= stride;
            cin = cout;
            v.push(conv(&format!("{prefix}_b"), size, 3, 1, 1, cout, cout, 4, 4));
        }
    }
    v
}

fn resnet18() -> Vec<Layer> {
    resnet18_scaled(1)
}

fn resnet18_wrpn() -> Vec<Layer> {
    resnet18_scaled(2)
}

fn rnn() -> Vec<Layer> {
    vec![fc("matmul", 4096, 4096, 4, 4)]
}

fn lstm() -> Vec<Layer> {
    vec![fc("matmul", 3600, 3600, 4, 4)]
}

/// MobileNetV2 1.0: inverted-residual settings (expand t, channels c, repeats n, stride s).
const MBV2_SETTINGS: [(u32, u32, u32, u32); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// MobileNetV2 at `input` resolution; `cifar` uses the 32x32 strides (stem 1, stages 1,1,2,2,1,2,1).
fn mobilenet_v2(input: u32, cifar: bool, classes: u32) -> Vec<Layer> {
    let bits = 8;
    let stem_stride = if cifar { 1 } else { 2 };
    let mut v = vec![Layer::conv("stem", 1, 3, 32, input, 3, stem_stride, 1, 1, bits, bits).with_im2col(true)];
    let mut size = input / stem_stride;
    let mut cin = 32;
    let mut block = 1;
    for (stage, (t, c, n, s)) in MBV2_SETTINGS.into_iter().enumerate() {
        let s = if cifar && stage == 1 { 1 } else { s };
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            if t != 1 {
                v.push(Layer::conv(&format!("b{block}_expand"), 1, cin, hidden, size, 1, 1, 0, 1, bits, bits));
            }
            v.push(Layer::conv(&format!("b{block}_dw"), 1, hidden, hidden, size, 3, stride, 1, hidden, bits, bits));
            size = (size + 2 - 3) / stride + 1;
            v.push(Layer::conv(&format!("b{block}_project"), 1, hidden, c, size, 1, 1, 0, 1, bits, bits));
            cin = c;
            block += 1;
        }
    }
    v.push(Layer::conv("last", 1, cin, 1280, size, 1, 1, 0, 1, bits, bits));
    v.push(Layer::fc("classifier", 1, 1280, classes, bits, bits));
    v
}

fn mobilenet_v2_224() -> Vec<Layer> {
    mobilenet_v2(224, false, 1000)
}

fn mobilenet_v2_32() -> Vec<Layer> {
    mobilenet_v2(32, true, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_network_is_valid_with_expected_layer_counts() {
        let expect = [
            ("alexnet", 13),
            ("alexnet_wrpn", 13),
            ("svhn", 9),
            ("cifar10", 9),
            ("lenet5", 4),
            ("vgg7", 7),
            ("resnet18", 17),
            ("resnet18_wrpn", 17),
            ("rnn", 1),
            ("lstm", 1),
            ("mobilenet_v2", 53),
            ("mobilenet_v2_32", 53),
        ];
        for (name, n) in expect {
            let ls = network(name).unwrap().layers();
            assert_eq!(ls.len(), n, "{name}");
            for l in &ls {
                l.validate().unwrap_or_else(|e| panic!("{name}/{}: {e}", l.name));
            }
        }
        assert_eq!(network_names().len(), NETWORKS.len());
    }

    #[test]
    fn mobilenet_v2_shapes() {
        let ls = network("mobilenet_v2").unwrap().layers();
        // Standard MobileNetV2 1.0: about 300 M MACs at 224x224.
        let macs: u64 = ls.iter().map(|l| l.macs()).sum();
        assert!((290_000_000..320_000_000).contains(&macs), "{macs}");
        let last = ls.iter().find(|l| l.name == "last").unwrap();
        assert_eq!((last.in_h, last.in_channels), (7, 320));
        let small = network("mobilenet_v2_32").unwrap().layers();
        let last = small.iter().find(|l| l.name == "last").unwrap();
        assert_eq!(last.in_h, 4);
        let b4 = small.iter().find(|l| l.name == "b4_dw").unwrap();
        assert_eq!((b4.in_h, b4.stride, b4.in_channels), (32, 2, 144));
    }
}
