"""The runtime's RAM reserve of each QEMU PE kind is what the built runtime takes.

The partitioner plans a PE's RAM as arena + io + the kind's ``runtime_reserve.ram_bytes``; the
linker then places the same image. Here a model is compiled and built for each kind and the
runtime's share of the ELF's RAM is measured: data + bss − the stage's arena and io buffers, plus
the stack the linker script keeps free. The reserve must cover it and not exceed it by more than
1 KiB (so the plan neither overflows the PE nor wastes its RAM).
"""

from __future__ import annotations

import json
import re

import pytest

from generator.boards.catalog import load_pe_kind
from generator.cli import main
from tests import paths
from tests.model_zoo import ZOO, save
from tests.markers import needs_arm



def _stack_bytes() -> int:
    ld = (paths.RUNTIME / "ports" / "lm3s6965" / "lm3s6965.ld").read_text()
    m = re.search(r"__stack_size = DEFINED\(__stack_size\) \? __stack_size : (\d+)K;", ld)
    assert m, "the linker script's stack size moved"
    return int(m.group(1)) * 1024


@needs_arm
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["qemu_cortex_m3", "qemu_cortex_m3_mac"])
def test_runtime_ram_reserve_is_measured(tmp_path, kind, capsys):
    out = tmp_path / "out"
    model = save(ZOO["conv2d_strided"](), tmp_path / "m.onnx")
    assert main(["compile", str(model), "-o", str(out), "--board", kind]) == 0
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    sizes = json.loads((out / "build" / "build.json").read_text())["images"]["pe0"]["sizes"]
    stage = json.loads((out / "mesh.json").read_text())["stages"][0]
    runtime = sizes["data"] + sizes["bss"] - stage["workspace_size"] - stage["io_size"] \
        + _stack_bytes()
    reserve = load_pe_kind(kind).reserve_ram_bytes
    assert runtime <= reserve <= runtime + 1024, (
        f"{kind}: the runtime takes {runtime} B of RAM, boards/pe/{kind}.yaml reserves {reserve} B")
    capsys.readouterr()
