"""Inference on the ``device`` fixture (QEMU by default, a real board with --serial-port)."""

from __future__ import annotations

import numpy as np
import pytest

from generator.project_api.inference import run_inference
from generator.types import TensorSpec

pytestmark = [pytest.mark.qemu, pytest.mark.hil, pytest.mark.timeout(300)]

TOY_OUTPUTS = (TensorSpec("y", (2, 2), "float32"), TensorSpec("z", (3,), "int8"))


def test_device_inference(device, toy_io):
    inputs, expected = toy_io
    for _ in range(2):    # the PE serves inference after inference
        outputs, stats = run_inference(device, inputs, output_specs=TOY_OUTPUTS)
        for got, want in zip(outputs, expected):
            np.testing.assert_array_equal(got, want)
