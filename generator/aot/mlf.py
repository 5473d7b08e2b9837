"""Model Library Format (MLF) v7, the tar layout microTVM used (PROJECT_API.md).

``metadata.json`` keeps the v7 fields an old TVM reader expects; pemesh adds ``shape`` to each
io tensor and a ``pemesh`` block (memory plan, operators) that old readers ignore. The tar is
deterministic: sorted members, zero mtimes and owners, and ``export_datetime`` from
``SOURCE_DATE_EPOCH`` (default: the epoch) so that two compiles of one model are byte-equal.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from generator.aot.stage import CompiledStage

MLF_VERSION = 7


def _export_datetime() -> str:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _io(specs) -> dict[str, Any]:
    return {s.name: {"size": s.nbytes, "dtype": s.dtype, "shape": list(s.shape)} for s in specs}


def metadata(stage: "CompiledStage") -> dict[str, Any]:
    """The v7 ``metadata.json`` of a stage."""
    return {
        "version": MLF_VERSION,
        "modules": {
            stage.name: {
                "model_name": stage.name,
                "export_datetime": _export_datetime(),
                "target": [stage.target],
                "executors": ["aot"],
                "style": "full-model",
                "memory": {
                    "functions": {
                        "main": [{
                            "device": 1,
                            "workspace_size_bytes": stage.workspace_size,
                            "constants_size_bytes": stage.constants_size,
                            "io_size_bytes": stage.io_size,
                            "inputs": _io(stage.inputs),
                            "outputs": _io(stage.outputs),
                        }],
                        "operator_functions": [
                            {"function_name": op.c_name,
                             "workspace": [{"device": 1, "workspace_size_bytes": op.temp_bytes}]}
                            for op in stage.ops
                        ],
                    },
                },
                "pemesh": {
                    # metadata.json is written with sorted keys, so the io dicts above lose
                    # their order; these lists keep it (stream index = position)
                    "input_order": [t.name for t in stage.inputs],
                    "output_order": [t.name for t in stage.outputs],
                    "memory_plan": stage.plan.to_json(),
                    "ops": [op.to_json() for op in stage.ops],
                    "macs": stage.macs,
                    "offload": [d.to_json() for d in stage.offload],
                },
            }
        },
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def mlf_members(stage: "CompiledStage") -> dict[str, bytes]:
    """Member name → contents of the MLF tar of ``stage``."""
    members = {"metadata.json": (json.dumps(metadata(stage), indent=2, sort_keys=True)
                                 + "\n").encode()}
    for rel, text in stage.files.items():
        members[rel] = text.encode()
    members[f"src/{stage.name}.relax.py"] = stage.relax_text.encode()
    return members


def write_mlf(stage: "CompiledStage", tar_path: Path, unpack_dir: Path | None = None) -> None:
    """Write the MLF tar (and, if asked, the same files unpacked into ``unpack_dir``)."""
    members = mlf_members(stage)
    tar_path = Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            _add_bytes(tar, name, members[name])
    if unpack_dir is not None:
        for name, data in members.items():
            dest = Path(unpack_dir) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)


def read_mlf_metadata(tar_path: Path) -> dict[str, Any]:
    """Read ``metadata.json`` of an MLF tar (pemesh's, or an old TVM's)."""
    from generator.errors import UsageError

    try:
        with tarfile.open(tar_path) as tar:
            for name in ("metadata.json", "./metadata.json"):
                try:
                    f = tar.extractfile(name)
                except KeyError:
                    continue
                if f is not None:
                    return json.load(f)
    except (tarfile.TarError, OSError) as err:
        raise UsageError(f"{tar_path}: not a readable Model Library Format tar ({err})",
                         hint="pass OUT/stages/<stage>/model.tar written by 'pemesh compile'")
    raise UsageError(f"{tar_path}: no metadata.json inside; not a Model Library Format tar",
                     hint="pass OUT/stages/<stage>/model.tar written by 'pemesh compile'")
