#!/usr/bin/env python3
"""Check a subnet exported by `bitfusion supernet export` with independent tools.

* ONNX: `onnx.checker` (full check with shape inference), then onnxruntime runs the graph on the
  first N test images of an IDX data set (Fashion-MNIST by default), read here from the IDX files
  themselves; its predictions and logits are compared with the project's own quantized logits
  (`--logits`, written by `supernet export --logits`).
* safetensors (optional): the `safetensors` package loads every tensor; the metadata carries the
  architecture, bits and provenance; every layer's integer codes lie on its grid, equal the ONNX
  graph's weight codes, and times their steps round the float weights. With --numpy, the network
  is also evaluated in float64 NumPy from the safetensors file and its metadata alone, and
  compared with both.

Prints a JSON summary; exits 1 when a check fails (prediction agreement below --min-agreement,
fewer than --min-within of the images with every logit within --atol, or a structural mismatch).
Two float implementations of one quantized network sum convolutions in different orders, so an
activation lying within a rounding error of a level boundary can land on the neighbouring level
in one of them; the images it touches differ by up to that level's effect on the logits, which
is why logit closeness is a share of images, not all of them.

Run with the project's checker venv: `target/pyenv/bin/python scripts/check_export.py ...`
(`bash scripts/pyenv.sh` creates it).
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    ndims = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    sys.exit(f"{data_dir}: no {stem}[.gz]")


def numpy_logits(tensors, layers, preprocessing, pixels, codes=None):
    """The network of a safetensors export evaluated in float64 NumPy from its metadata and
    tensors alone: a third implementation, independent of the project and of onnxruntime.
    With a list `codes`, every activation quantizer's integer levels are appended to it, in
    graph order."""
    mean = np.array(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.array(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
    x = ((pixels.astype(np.float32) / np.float32(255) - mean) / std).astype(np.float64)

    def quant(v, g):
        step = np.float64(g["step"])
        levels = np.clip(np.round(v / step), g["lo"], g["hi"])
        if codes is not None:
            codes.append(levels)
        return levels * step

    def weight(name, grid, shape):
        if grid is None:
            return tensors[f"{name}.weight"].astype(np.float64)
        return tensors[f"{name}.weight_codes"].astype(np.float64) * tensors[f"{name}.weight_scale"].astype(np.float64).reshape(shape)

    def conv(v, w, stride, groups):
        n, _, h, wd = v.shape
        out_c, in_per_group, k, _ = w.shape
        p = k // 2
        vp = np.pad(v, ((0, 0), (0, 0), (p, p), (p, p)))
        oh, ow = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
        out = np.zeros((n, out_c, oh, ow))
        per = out_c // groups
        for g in range(groups):
            vs, ws = vp[:, g * in_per_group:(g + 1) * in_per_group], w[g * per:(g + 1) * per]
            for i in range(k):
                for j in range(k):
                    patch = vs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                    out[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
        return out

    saved = None
    for layer in layers[:-1]:
        name = layer["name"]
        if layer["residual"] == "save":
            saved = x
        if layer["input_quant"]:
            x = quant(x, layer["input_quant"])
        y = conv(x, weight(name, layer["weight_grid"], (-1, 1, 1, 1)), layer["stride"], layer["groups"])
        g, b, m, var = (tensors[f"{name}.bn.{k}"].astype(np.float64).reshape(1, -1, 1, 1) for k in ("gamma", "beta", "mean", "var"))
        y = (y - m) / np.sqrt(var + 1e-5) * g + b
        if layer["relu6"]:
            y = np.clip(y, 0, 6)
            if layer["output_quant"]:
                y = quant(y, layer["output_quant"])
        elif layer["residual"] == "add":
            y = y + saved
        x = y
    fc = layers[-1]
    x = x.mean(axis=(2, 3))
    if fc["input_quant"]:
        x = quant(x, fc["input_quant"])
    return x @ weight("classifier", fc["weight_grid"], (-1, 1)).T + tensors["classifier.bias"].astype(np.float64)


def check_onnx(args, failures):
    model = onnx.load(args.onnx)
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[args.optimization]
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(args.onnx, opts, providers=["CPUExecutionProvider"])
    reference = np.load(args.logits)
    n = min(args.images or len(reference), len(reference))
    images = read_idx(find(args.data, "t10k-images-idx3-ubyte"))[:n]
    labels = read_idx(find(args.data, "t10k-labels-idx1-ubyte"))[:n]
    shape = sess.get_inputs()[0].shape
    x = images.reshape(n, shape[1], shape[2], shape[3])
    out = np.concatenate([sess.run(["logits"], {"pixels": x[i: i + args.batch]})[0] for i in range(0, n, args.batch)])
    reference = reference[:n]
    ours, theirs = reference.argmax(1), out.argmax(1)
    diff = np.abs(out - reference).max(1)
    summary = {
        "images": int(n),
        "opset": int(model.opset_import[0].version),
        "ir_version": int(model.ir_version),
        "nodes": len(model.graph.node),
        "quantize_nodes": sum(1 for nd in model.graph.node if nd.op_type == "QuantizeLinear"),
        "prediction_agreement": float((ours == theirs).mean()),
        "images_with_logits_within_atol": float((diff <= args.atol).mean()),
        "images_with_identical_logits": float((diff == 0).mean()),
        "max_abs_logit_difference": float(diff.max()),
        "median_abs_logit_difference": float(np.median(diff)),
        "onnxruntime_accuracy": float((theirs == labels).mean()),
        "project_accuracy": float((ours == labels).mean()),
        "onnxruntime": ort.__version__,
        "optimization": args.optimization,
    }
    if summary["prediction_agreement"] < args.min_agreement:
        failures.append(f"predictions agree on {summary['prediction_agreement']:.4%} of images, below {args.min_agreement:.2%}")
    if summary["images_with_logits_within_atol"] < args.min_within:
        failures.append(f"logits within {args.atol} on {summary['images_with_logits_within_atol']:.4%} of images, below {args.min_within:.2%}")
    return model, summary, (x, out, reference)


def check_safetensors(args, model, failures, runs):
    from safetensors import safe_open

    with safe_open(args.safetensors, framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key in ("bitfusion.arch", "bitfusion.layers", "bitfusion.checkpoint_sha256", "bitfusion.quantizer"):
        if key not in meta:
            failures.append(f"safetensors metadata has no {key}")
    layers = json.loads(meta.get("bitfusion.layers", "[]"))
    inits = {i.name: i for i in model.graph.initializer} if model is not None else {}
    checked = 0
    for layer in layers:
        name = layer["name"]
        w = tensors.get(f"{name}.weight")
        if w is None:
            failures.append(f"safetensors has no {name}.weight")
            continue
        grid = layer.get("weight_grid")
        if grid is None:
            continue
        codes = tensors[f"{name}.weight_codes"].astype(np.int64)
        scale = tensors[f"{name}.weight_scale"].astype(np.float64)
        if codes.min() < grid["lo"] or codes.max() > grid["hi"]:
            failures.append(f"{name}: codes outside [{grid['lo']}, {grid['hi']}]")
        s = scale.reshape((-1,) + (1,) * (codes.ndim - 1))
        inside = (w >= grid["lo"] * s) & (w <= grid["hi"] * s)
        err = np.abs(w - codes * s)[inside]
        if err.size and (err / np.broadcast_to(s, w.shape)[inside]).max() > 0.5 + 1e-3:
            failures.append(f"{name}: codes x steps are more than half a step from the float weights")
        init = inits.get(f"{name}.weight_codes")
        if init is not None and not np.array_equal(onnx.numpy_helper.to_array(init).astype(np.int64), codes):
            failures.append(f"{name}: the ONNX graph's weight codes differ from the safetensors codes")
        checked += 1
    result = {"tensors": len(tensors), "layers": len(layers), "quantized_layers_checked": checked, "arch": meta.get("bitfusion.arch")}
    if args.numpy and layers:
        pixels, ort_logits, project = runs
        prep = json.loads(meta["bitfusion.preprocessing"])
        ref = np.concatenate([numpy_logits(tensors, layers, prep, pixels[i: i + args.batch]) for i in range(0, len(pixels), args.batch)])
        agree = lambda a, b: float((a.argmax(1) == b.argmax(1)).mean())
        within = lambda a, b: float((np.abs(a - b).max(1) <= args.atol).mean())
        result["numpy_float64"] = {
            "prediction_agreement_with_project": agree(ref, project),
            "prediction_agreement_with_onnxruntime": agree(ref, ort_logits),
            "images_with_logits_within_atol_of_project": within(ref, project),
            "images_with_logits_within_atol_of_onnxruntime": within(ref, ort_logits),
        }
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", required=True)
    p.add_argument("--logits", required=True, help="the project's logits (.npy), from supernet export --logits")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="IDX directory (t10k-*)")
    p.add_argument("--images", type=int, default=0, help="first N test images (0: as many as --logits has)")
    p.add_argument("--safetensors")
    p.add_argument("--min-agreement", type=float, default=0.999)
    p.add_argument("--atol", type=float, default=1e-3)
    p.add_argument("--min-within", type=float, default=0.95, help="share of images whose logits are all within --atol")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--numpy", action="store_true", help="also evaluate the safetensors file in float64 NumPy (a third implementation)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--optimization", choices=["disable", "basic", "all"], default="all")
    args = p.parse_args()
    failures = []
    model, summary, runs = check_onnx(args, failures)
    if args.safetensors:
        summary["safetensors"] = check_safetensors(args, model, failures, runs)
    summary["failures"] = failures
    print(json.dumps(summary, indent=1))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
