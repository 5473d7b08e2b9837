#!/usr/bin/env python3
"""Regenerate the bundled example models from the test model zoo (deterministic bytes).

    python examples/make_examples.py            # rewrite examples/*.onnx
    python examples/make_examples.py --check    # exit 1 if a bundled file differs

The models are built in code by tests/model_zoo.py with fixed seeds, so the output is the same
on every run and machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import model_zoo  # noqa: E402

#: bundled file name -> zoo model
EXAMPLES = {"tiny_cnn.onnx": "tiny_cnn"}


def build(name: str) -> bytes:
    """The serialized bytes of bundled example ``name``."""
    return model_zoo.ZOO[EXAMPLES[name]]().SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--out", default=str(HERE), help="folder to write to (default: examples/)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    status = 0
    for name in sorted(EXAMPLES):
        data, path = build(name), out / name
        if args.check:
            same = path.exists() and path.read_bytes() == data
            print(f"{'ok' if same else 'DIFFERS'}  {path}")
            status |= 0 if same else 1
        else:
            path.write_bytes(data)
            print(f"wrote {path} ({len(data)} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
