"""torch.export programs of the MLPerf Tiny shapes (issue 9): fp32 ``torch.nn.Module``\\ s
exported with ``torch.export`` and saved as ``.pt2``; torch itself is their anchor.

- ``resnet8``: ResNet-8, 1x3x32x32 -> 10 (three residual stacks 16/32/64 with BatchNorm,
  a 1x1 stride-2 shortcut, average pool 8x8, flatten, linear, softmax);
- ``dscnn``: DS-CNN, 1x1x49x10 -> 12 (conv 10x4 stride 2 with padding, four depthwise/pointwise
  pairs of 64 with BatchNorm, average pool 25x5, flatten, linear, softmax);
- ``{resnet8,dscnn}_logits``: the same programs without the softmax (compared at the logits);
- ``autoencoder``: the FC autoencoder, 1x640 -> 128x4 -> 8 -> 128x4 -> 640 (linear,
  BatchNorm1d, ReLU).

Weights are seeded; the BatchNorm statistics are those of smooth inputs (the images and
keyword features of tests/converter_zoo.py), gathered by forward passes in training mode, so the
exported eval-mode programs compute realistic activations. Cached like converter_zoo
(``$PEMESH_MODEL_CACHE``, one folder per hash of this file and the torch version);
``python -m tests.torch_zoo`` fills it. Needs torch (the CPU wheel).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from tests import converter_zoo as cz
from tests import model_cache

MODELS = ("resnet8", "dscnn", "autoencoder")
SEEDS = {"resnet8": 41, "dscnn": 42, "autoencoder": 43}


def source_hash() -> str:
    return model_cache.source_hash(__file__, "torch", "torch-")


def cache_dir() -> Path:
    return cz.cache_dir().parent / source_hash()


def smooth_inputs(model: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth float32 inputs in the torch layout (NCHW images / features)."""
    x = cz.smooth_inputs(model, n, seed=seed)
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))) if x.ndim == 4 else x


def _modules():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = nn.Conv2d(cin, cout, 1, stride) if stride != 1 else None

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu((self.short(x) if self.short is not None else x) + y)

    class ResNet8(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(3, 16, 3, 1, 1)
            self.b0 = nn.BatchNorm2d(16)
            self.stacks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.pool = nn.AvgPool2d(8)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = self.stacks(torch.relu(self.b0(self.c0(x))))
            x = self.fc(torch.flatten(self.pool(x), 1))
            return x if self.logits else torch.softmax(x, dim=-1)

    class DSCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(1, 64, (10, 4), (2, 2), (5, 1))
            self.b0 = nn.BatchNorm2d(64)
            layers = []
            for _ in range(4):
                layers += [nn.Conv2d(64, 64, 3, 1, 1, groups=64), nn.BatchNorm2d(64), nn.ReLU(),
                           nn.Conv2d(64, 64, 1), nn.BatchNorm2d(64), nn.ReLU()]
            self.body = nn.Sequential(*layers)
            self.pool = nn.AvgPool2d((25, 5))
            self.fc = nn.Linear(64, 12)

        def forward(self, x):
            x = self.body(torch.relu(self.b0(self.c0(x))))
            x = self.fc(torch.flatten(self.pool(x), 1))
            return x if self.logits else torch.softmax(x, dim=-1)

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
            layers = []
            for a, b in zip(dims[:-1], dims[1:]):
                layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
            self.body = nn.Sequential(*layers)
            self.out = nn.Linear(128, 640)

        def forward(self, x):
            return self.out(self.body(x))

    return {"resnet8": ResNet8, "dscnn": DSCNN, "autoencoder": AutoEncoder}


def build(model: str, logits: bool = False):
    """The eval-mode module of ``model`` (seeded weights, BatchNorm statistics of smooth
    inputs) and its example input (a batch of one); ``logits``: without the final softmax."""
    import torch

    torch.manual_seed(SEEDS[model])
    net = _modules()[model]()
    net.logits = logits
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = None                       # a cumulative average of the batches
    net.train()
    with torch.no_grad():
        for k in range(4):
            net(torch.from_numpy(smooth_inputs(model, 32, seed=SEEDS[model] + k)))
    net.eval()
    return net, (torch.from_numpy(smooth_inputs(model, 1, seed=SEEDS[model] + 99)),)


def generate(model: str, folder: Path | None = None) -> None:
    """Export ``{model}.pt2`` and (the classifiers) ``{model}_logits.pt2``."""
    import torch

    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for logits in (False, True) if model != "autoencoder" else (False,):
        net, example = build(model, logits)
        with torch.no_grad():
            program = torch.export.export(net, example)
        name = f"{model}_logits" if logits else model
        tmp = folder / f".{name}.tmp.pt2"
        torch.export.save(program, str(tmp))
        os.replace(tmp, folder / f"{name}.pt2")


def path(name: str) -> Path:
    """The cached ``{name}.pt2`` (``resnet8``, ``resnet8_logits``, ...), exported if missing."""
    model = name.split("_")[0]
    if model not in MODELS:
        raise KeyError(name)
    p = cache_dir() / f"{name}.pt2"
    if not p.exists():
        generate(model)
    return p


def main(argv: list[str]) -> int:
    for model in argv or MODELS:
        print(path(model))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
