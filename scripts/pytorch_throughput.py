#!/usr/bin/env python3
"""Training throughput of the largest `micro` subnet in PyTorch on the CPU, for a side-by-side
comparison with `cargo bench -p bitfusion-models --bench train_throughput` (same network, batch
64, 28x28x1 inputs, Adam, 2 threads). PyTorch is only used for this comparison.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch
    /tmp/torch/bin/python scripts/pytorch_throughput.py                   # NCHW (PyTorch's default)
    /tmp/torch/bin/python scripts/pytorch_throughput.py --channels-last   # NHWC, PyTorch's faster layout
"""
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(2)


def conv_bn(cin, cout, k, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, cin, cout, mid, k, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, mid, 1), conv_bn(mid, mid, k, stride, mid), conv_bn(mid, cout, 1, relu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def largest_micro():
    # micro: stem 3x3 1->16, first block dw3x3 + project to 8, stages (16,s2),(24,s2),(32,s2),(48,s1)
    # of 3 blocks, kernel 7, middle channels = the largest multiple of 8 up to 4x the input width.
    layers = [conv_bn(1, 16, 3), conv_bn(16, 16, 3, groups=16), conv_bn(16, 8, 1, relu=False)]
    cin = 8
    for width, stride in [(16, 2), (24, 2), (32, 2), (48, 1)]:
        for i in range(3):
            layers.append(Block(cin, width, (4 * cin) // 8 * 8, 7, stride if i == 0 else 1))
            cin = width
    layers += [conv_bn(cin, 192, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(192, 10)]
    return nn.Sequential(*layers)


def main():
    channels_last = "--channels-last" in sys.argv
    torch.manual_seed(1)
    net = largest_micro()
    x = torch.randn(64, 1, 28, 28)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    y = torch.arange(64) % 10
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    steps = 20
    t = time.perf_counter()
    for _ in range(steps):
        step()
    s = time.perf_counter() - t
    layout = "channels_last" if channels_last else "NCHW"
    print(f"largest micro subnet, batch 64, fp32 (PyTorch {torch.__version__}, {layout}, 2 threads): {1e3 * s / steps:.1f} ms/step, {steps * 64 / s:.1f} images/s")


if __name__ == "__main__":
    main()
