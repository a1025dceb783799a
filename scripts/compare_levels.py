#!/usr/bin/env python3
"""Where an exported network's runtimes part: the integer levels of every activation quantizer in
onnxruntime against a float64 NumPy evaluation of the safetensors export (`check_export.py`'s),
on the first N test images of an IDX data set.

Prints, per quantizer in graph order, how many levels differ and by how much, and for each image
that differs anywhere, whether its first difference is one level of one activation (a rounding
flip at a level boundary, which the rest of the network then carries) or something larger (a
mismatch of the graph).

    target/pyenv/bin/python scripts/compare_levels.py --onnx net.onnx --safetensors net.safetensors --images 500
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_export import find, numpy_logits, read_idx  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", required=True)
    p.add_argument("--safetensors", required=True)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--images", type=int, default=500)
    args = p.parse_args()
    from safetensors import safe_open

    model = onnx.load(args.onnx)
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    dequant = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in quantized]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    scales = [float(inits[n.input[1]]) for n in dequant]
    names = [n.output[0] for n in dequant]
    for name in names:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = read_idx(find(args.data, "t10k-images-idx3-ubyte"))[: args.images]
    shape = sess.get_inputs()[0].shape
    pixels = pixels.reshape(len(pixels), shape[1], shape[2], shape[3])
    ort_levels = [np.round(o.astype(np.float64) / s) for o, s in zip(sess.run(names, {"pixels": pixels}), scales)]

    with safe_open(args.safetensors, framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    np_levels = []
    numpy_logits(tensors, json.loads(meta["bitfusion.layers"]), json.loads(meta["bitfusion.preprocessing"]), pixels, np_levels)
    if len(np_levels) != len(ort_levels):
        sys.exit(f"{len(np_levels)} quantizers in the NumPy evaluation, {len(ort_levels)} in the graph")

    n = len(pixels)
    first = np.full(n, -1)
    total = differ = 0
    rows = []
    for i, (a, b) in enumerate(zip(np_levels, ort_levels)):
        d = a != b
        hit = d.reshape(n, -1).any(1)
        first[(first < 0) & hit] = i
        total, differ = total + d.size, differ + int(d.sum())
        rows.append({"quantizer": i, "levels": int(d.size), "differ": int(d.sum()), "largest": float(np.abs(a - b).max()), "images": float(hit.mean())})
    touched = np.flatnonzero(first >= 0)
    single = sum(1 for k in touched if np.abs(np_levels[first[k]][k] - ort_levels[first[k]][k]).sum() == 1)
    print(json.dumps({
        "images": n,
        "quantizers": len(rows),
        "levels": total,
        "levels_differing": differ,
        "images_differing_anywhere": int(len(touched)),
        "images_whose_first_difference_is_one_level_of_one_activation": int(single),
        "per_quantizer": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
