//! once-for-all / ProxylessNAS `net.config` JSON (mit-han-lab/once-for-all, MIT licence) as layers.
//!
//! Conventions, from once-for-all's `ofa/utils/layers.py` and
//! `ofa/imagenet_classification/networks/{proxyless_nets,mobilenet_v3}.py`:
//! * `first_conv` (`ConvLayer`): a k x k convolution with "same" padding `k / 2` (`get_same_padding`).
//! * each block's `mobile_inverted_conv` (older files, `MBInvertedConvLayer`) or `conv` (`MBConvLayer`):
//!   the middle width is `mid_channels`, or `round(in_channels * expand_ratio)` when it is null; an
//!   `expand_ratio` of 1 has no expand 1x1 (`inverted_bottleneck = None`). Then the depthwise k x k
//!   (groups = the middle width, padding `k / 2`, the block's stride), then, with `use_se`, the
//!   squeeze-excitation (`SEModule`: global average pool, a 1x1 conv to
//!   `make_divisible(mid / 4, 8)` channels and a 1x1 conv back, on the pooled 1x1 vector, so two
//!   fully connected layers here), then the project 1x1 to `out_channels`. `shortcut` adds no MACs.
//! * MobileNetV3 (`final_expand_layer` present): `final_expand_layer` (1x1 at the last resolution),
//!   global average pool, `feature_mix_layer` on the pooled vector (a fully connected layer here),
//!   `classifier`. ProxylessNAS: `feature_mix_layer` (1x1 at the last resolution), pool, `classifier`.
//! * Activations, batch norm, pooling, the SE's rescaling multiply and residual adds have no
//!   multiply-accumulates in `Layer`'s sense and are not layers.
//!
//! Layers get batch 1 and 8-bit weights and activations (the built-in networks' defaults; `--batch`,
//! `--w-bits`, `--a-bits` override). The input resolution (pixels, square) is the caller's.

use super::WorkloadError;
use crate::layer::Layer;
use serde_json::Value;

/// Bits given to every imported layer (`net.config` carries no precision).
pub const DEFAULT_BITS: u32 = 8;
/// once-for-all's `SEModule.REDUCTION`.
pub const SE_REDUCTION: u32 = 4;
/// once-for-all's `MyNetwork.CHANNEL_DIVISIBLE`, the divisor of the SE's middle width.
pub const SE_DIVISOR: u32 = 8;

/// once-for-all's `make_divisible(v, divisor, min_val=None)` (from TensorFlow's slim MobileNet): the
/// nearest multiple of `divisor` (at least `divisor`), raised by one `divisor` if it falls below 90% of `v`.
pub fn make_divisible(v: u32, divisor: u32) -> u32 {
    let mut new_v = divisor.max((v + divisor / 2) / divisor * divisor);
    if (new_v as f64) < 0.9 * v as f64 {
        new_v += divisor;
    }
    new_v
}

/// The output side of a "same"-padded (`k / 2`) k x k convolution with stride `s` on a side of `h` pixels.
pub fn same_out(h: u32, k: u32, s: u32) -> u32 {
    (h + 2 * (k / 2) - k) / s + 1
}

/// Parse `net.config` text at `resolution` pixels (square input); `origin` names the text in errors,
/// which name the JSON key path at fault.
pub fn parse_ofa(text: &str, origin: &str, resolution: u32) -> Result<Vec<Layer>, WorkloadError> {
    let err = |key: &str, message: String| WorkloadError::Ofa { origin: origin.to_string(), key: key.to_string(), message };
    let root: Value = serde_json::from_str(text).map_err(|e| err("(root)", format!("invalid JSON: {e}")))?;
    let net = Net { root: &root, origin };
    let mut layers = Vec::new();
    let mut push = |l: Layer, key: &str| -> Result<(), WorkloadError> {
        l.validate().map_err(|e| err(key, e.to_string()))?;
        layers.push(l);
        Ok(())
    };

    let fc = net.obj("first_conv")?;
    let (k, s) = (net.uint(fc, "first_conv", "kernel_size")?, net.uint(fc, "first_conv", "stride")?);
    net.expect_one(fc, "first_conv", "dilation")?;
    let mut cin = net.uint(fc, "first_conv", "out_channels")?;
    let groups = net.opt_uint(fc, "first_conv", "groups")?.unwrap_or(1);
    let first = Layer::conv("first_conv", 1, net.uint(fc, "first_conv", "in_channels")?, cin, resolution, k, s, k / 2, groups, DEFAULT_BITS, DEFAULT_BITS);
    push(first.with_im2col(true), "first_conv")?;
    let mut h = same_out(resolution, k, s);

    let blocks = root.get("blocks").and_then(Value::as_array).ok_or_else(|| err("blocks", "missing or not an array".into()))?;
    for (i, b) in blocks.iter().enumerate() {
        let (conv_key, conv) = match (b.get("mobile_inverted_conv"), b.get("conv")) {
            (Some(c), _) if c.is_object() => (format!("blocks[{i}].mobile_inverted_conv"), c),
            (_, Some(c)) if c.is_object() => (format!("blocks[{i}].conv"), c),
            _ => return Err(err(&format!("blocks[{i}]"), "expected a 'mobile_inverted_conv' or 'conv' object".into())),
        };
        let key = conv_key.as_str();
        let block_in = net.uint(conv, key, "in_channels")?;
        if block_in != cin {
            return Err(err(&format!("{key}.in_channels"), format!("{block_in} does not match the previous layer's {cin} output channels")));
        }
        let out = net.uint(conv, key, "out_channels")?;
        let (k, s) = (net.uint(conv, key, "kernel_size")?, net.uint(conv, key, "stride")?);
        let ratio = conv.get("expand_ratio").and_then(Value::as_f64).ok_or_else(|| err(&format!("{key}.expand_ratio"), "missing or not a number".into()))?;
        let mid = match net.opt_uint(conv, key, "mid_channels")? {
            Some(m) => m,
            None => (block_in as f64 * ratio).round() as u32,
        };
        let se = conv.get("use_se").and_then(Value::as_bool).unwrap_or(false);
        let name = |part: &str| format!("blocks.{i}.{part}");
        if ratio != 1.0 {
            push(Layer::conv(&name("expand"), 1, block_in, mid, h, 1, 1, 0, 1, DEFAULT_BITS, DEFAULT_BITS), key)?;
        }
        push(Layer::conv(&name("depthwise"), 1, mid, mid, h, k, s, k / 2, mid, DEFAULT_BITS, DEFAULT_BITS), key)?;
        h = same_out(h, k, s);
        if se {
            let squeeze = make_divisible(mid / SE_REDUCTION, SE_DIVISOR);
            push(Layer::fc(&name("se_reduce"), 1, mid, squeeze, DEFAULT_BITS, DEFAULT_BITS), key)?;
            push(Layer::fc(&name("se_expand"), 1, squeeze, mid, DEFAULT_BITS, DEFAULT_BITS), key)?;
        }
        push(Layer::conv(&name("project"), 1, mid, out, h, 1, 1, 0, 1, DEFAULT_BITS, DEFAULT_BITS), key)?;
        cin = out;
    }

    let mut one_by_one = |key: &str, pooled: bool, cin: &mut u32| -> Result<(), WorkloadError> {
        let l = net.obj(key)?;
        if net.uint(l, key, "kernel_size")? != 1 {
            return Err(err(&format!("{key}.kernel_size"), "expected 1 (a 1x1 convolution)".into()));
        }
        let (i, o) = (net.uint(l, key, "in_channels")?, net.uint(l, key, "out_channels")?);
        if i != *cin {
            return Err(err(&format!("{key}.in_channels"), format!("{i} does not match the previous layer's {cin} output channels")));
        }
        let layer = if pooled {
            Layer::fc(key, 1, i, o, DEFAULT_BITS, DEFAULT_BITS)
        } else {
            Layer::conv(key, 1, i, o, h, 1, 1, 0, 1, DEFAULT_BITS, DEFAULT_BITS)
        };
        push(layer, key)?;
        *cin = o;
        Ok(())
    };
    let mobilenet_v3 = root.get("final_expand_layer").is_some_and(|v| !v.is_null());
    if mobilenet_v3 {
        one_by_one("final_expand_layer", false, &mut cin)?;
    }
    one_by_one("feature_mix_layer", mobilenet_v3, &mut cin)?;

    let cl = net.obj("classifier")?;
    let (i, o) = (net.uint(cl, "classifier", "in_features")?, net.uint(cl, "classifier", "out_features")?);
    if i != cin {
        return Err(err("classifier.in_features", format!("{i} does not match the previous layer's {cin} output channels")));
    }
    push(Layer::fc("classifier", 1, i, o, DEFAULT_BITS, DEFAULT_BITS), "classifier")?;
    Ok(layers)
}

/// Typed access to the JSON with errors naming the key path.
struct Net<'a> {
    root: &'a Value,
    origin: &'a str,
}

impl Net<'_> {
    fn err(&self, key: String, message: &str) -> WorkloadError {
        WorkloadError::Ofa { origin: self.origin.to_string(), key, message: message.to_string() }
    }

    fn obj(&self, key: &str) -> Result<&Value, WorkloadError> {
        self.root.get(key).filter(|v| v.is_object()).ok_or_else(|| self.err(key.to_string(), "missing or not an object"))
    }

    fn opt_uint(&self, v: &Value, path: &str, key: &str) -> Result<Option<u32>, WorkloadError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => match x.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(self.err(format!("{path}.{key}"), &format!("expected a positive integer, got {x}"))),
            },
        }
    }

    fn uint(&self, v: &Value, path: &str, key: &str) -> Result<u32, WorkloadError> {
        self.opt_uint(v, path, key)?.ok_or_else(|| self.err(format!("{path}.{key}"), "missing"))
    }

    /// A key that, when present, must be 1 (e.g. `dilation`: dilated convolutions are not layers here).
    fn expect_one(&self, v: &Value, path: &str, key: &str) -> Result<(), WorkloadError> {
        match self.opt_uint(v, path, key)? {
            None | Some(1) => Ok(()),
            Some(n) => Err(self.err(format!("{path}.{key}"), &format!("{n} is not supported (only 1)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerKind;

    fn block(cin: u32, cout: u32, k: u32, s: u32, e: u32, mid: Option<u32>, se: bool) -> String {
        let mid = mid.map_or("null".to_string(), |m| m.to_string());
        format!(
            r#"{{"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": {{"name": "MBInvertedConvLayer", "in_channels": {cin}, "out_channels": {cout}, "kernel_size": {k}, "stride": {s}, "expand_ratio": {e}, "mid_channels": {mid}, "act_func": "h_swish", "use_se": {se}}}, "shortcut": null}}"#
        )
    }

    fn mbv3() -> String {
        format!(
            r#"{{"name": "MobileNetV3",
  "first_conv": {{"name": "ConvLayer", "kernel_size": 3, "stride": 2, "dilation": 1, "groups": 1, "in_channels": 3, "out_channels": 16}},
  "blocks": [{}, {}],
  "final_expand_layer": {{"name": "ConvLayer", "kernel_size": 1, "stride": 1, "in_channels": 24, "out_channels": 144}},
  "feature_mix_layer": {{"name": "ConvLayer", "kernel_size": 1, "stride": 1, "in_channels": 144, "out_channels": 256}},
  "classifier": {{"name": "LinearLayer", "in_features": 256, "out_features": 10}}}}"#,
            block(16, 16, 3, 1, 1, None, false),
            block(16, 24, 5, 2, 4, Some(64), true)
        )
    }

    #[test]
    fn make_divisible_matches_ofa() {
        // make_divisible(v, 8): 72 // 4 = 18 -> 16, below 0.9 x 18 = 16.2, so 24; 120 // 4 = 30 -> 32;
        // 4 -> 8 (at least the divisor); 92 -> 96.
        assert_eq!([make_divisible(18, 8), make_divisible(30, 8), make_divisible(4, 8), make_divisible(92, 8)], [24, 32, 8, 96]);
        // 0.9 rule: 11 rounds to 8 < 9.9, so 16.
        assert_eq!(make_divisible(11, 8), 16);
    }

    #[test]
    fn mobilenet_v3_blocks_map_to_layers() {
        let ls = parse_ofa(&mbv3(), "net.config", 32).unwrap();
        let names: Vec<&str> = ls.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "first_conv", "blocks.0.depthwise", "blocks.0.project", "blocks.1.expand", "blocks.1.depthwise",
                "blocks.1.se_reduce", "blocks.1.se_expand", "blocks.1.project", "final_expand_layer", "feature_mix_layer",
                "classifier"
            ]
        );
        assert!(ls[0].im2col && ls[0].out_h() == 16);
        let dw = &ls[4];
        assert!(dw.is_depthwise() && dw.kernel == 5 && dw.pad == 2 && dw.in_h == 16 && dw.out_h() == 8);
        assert_eq!((ls[5].kind, ls[5].in_channels, ls[5].out_channels), (LayerKind::Fc, 64, 16));
        assert_eq!((ls[8].kind, ls[8].in_h), (LayerKind::Conv, 8));
        assert_eq!(ls[9].kind, LayerKind::Fc);
    }

    #[test]
    fn proxyless_and_mbconv_forms() {
        // ProxylessNAS: no final_expand_layer, the feature mix is a 1x1 at the last resolution.
        // Newer once-for-all files name the block's layer `conv` (`MBConvLayer`).
        let text = mbv3()
            .replace(r#""final_expand_layer": {"name": "ConvLayer", "kernel_size": 1, "stride": 1, "in_channels": 24, "out_channels": 144},"#, "")
            .replace(r#""in_channels": 144, "out_channels": 256"#, r#""in_channels": 24, "out_channels": 256"#)
            .replace("mobile_inverted_conv", "conv");
        let ls = parse_ofa(&text, "net.config", 32).unwrap();
        let mix = ls.iter().find(|l| l.name == "feature_mix_layer").unwrap();
        assert_eq!((mix.kind, mix.in_h, mix.in_channels), (LayerKind::Conv, 8, 24));
        assert_eq!(ls.len(), 10);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = mbv3().replace(r#""in_channels": 16, "out_channels": 24"#, r#""in_channels": 17, "out_channels": 24"#);
        let e = parse_ofa(&bad, "n.config", 32).unwrap_err().to_string();
        assert_eq!(e, "n.config: key 'blocks[1].mobile_inverted_conv.in_channels': 17 does not match the previous layer's 16 output channels");
        let bad = mbv3().replace(r#""kernel_size": 5"#, r#""kernel_size": "five""#);
        let e = parse_ofa(&bad, "n.config", 32).unwrap_err().to_string();
        assert_eq!(e, "n.config: key 'blocks[1].mobile_inverted_conv.kernel_size': expected a positive integer, got \"five\"");
        let e = parse_ofa("{", "n.config", 32).unwrap_err().to_string();
        assert!(e.starts_with("n.config: key '(root)': invalid JSON") && !e.contains('\n'), "{e}");
        let bad = mbv3().replace(r#""classifier": {"#, r#""classifierX": {"#);
        let e = parse_ofa(&bad, "n.config", 32).unwrap_err().to_string();
        assert_eq!(e, "n.config: key 'classifier': missing or not an object");
        let bad = mbv3().replace(r#""dilation": 1"#, r#""dilation": 2"#);
        let e = parse_ofa(&bad, "n.config", 32).unwrap_err().to_string();
        assert_eq!(e, "n.config: key 'first_conv.dilation': 2 is not supported (only 1)");
    }
}
