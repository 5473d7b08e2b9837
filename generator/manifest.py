"""OUT/: the one owner of its layout and of the records pemesh keeps there.

Every command reads and writes OUT/ through this module; no other module knows a path inside
OUT/ or the fields of its JSON files. The layout (the CLI contract, DESIGN.md "OUT/"):

    OUT/mesh.json               Manifest       written by `compile`
    OUT/west.yml                               the workspace manifest (pins Zephyr)
    OUT/modules/pemesh/                        the PE runtime, vendored
    OUT/stages/<stage>/         model.tar (MLF) and model/ (its unpacked copy)
    OUT/pes/<pe>/               one Zephyr app per PE
    OUT/reference/              input_<i>.npy, output_<i>.npy: the anchor's reference
    OUT/build/build.json        BuildRecord    written by `build`; OUT/build/<pe>/ the images
    OUT/run.json                RunRecord      written by `run`;   OUT/run/ the PE logs

The records are frozen dataclasses with ``to_json``/``from_json``; the JSON is deterministic
(sorted keys) and its field names are those of docs/CONTRACTS.md.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from generator.errors import UsageError
from generator.types import Route, TensorSpec

MANIFEST_VERSION = 1
BUILD_VERSION = 1

#: what `compile`, `build` and `run` write into OUT; a new compile replaces all of it, so that no
#: app, stage or image of an earlier compile survives beside the new ones
GENERATED_ENTRIES = ("mesh.json", "west.yml", "run.json", "stages", "pes", "reference",
                     "modules", "build", "run")


# --- the layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutTree:
    """Paths inside one OUT/ folder."""

    root: Path

    @property
    def mesh_json(self) -> Path:
        return self.root / "mesh.json"

    @property
    def west_yml(self) -> Path:
        return self.root / "west.yml"

    @property
    def runtime_dir(self) -> Path:
        return self.root / self.runtime_rel

    runtime_rel = "modules/pemesh"

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def build_json(self) -> Path:
        return self.build_dir / "build.json"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def run_dir(self) -> Path:
        """Where `run` puts the PE logs and emulator output."""
        return self.root / "run"

    @staticmethod
    def stage_rel(stage: str) -> str:
        return f"stages/{stage}"

    @staticmethod
    def pe_app_rel(pe: str) -> str:
        return f"pes/{pe}"

    def pe_app_dir(self, pe: str) -> Path:
        return self.root / self.pe_app_rel(pe)

    def image_dir(self, pe: str) -> Path:
        """Where `build` puts the image of one PE."""
        return self.build_dir / pe

    def is_pemesh_out(self) -> bool:
        return self.mesh_json.is_file()

    def partial_path(self) -> Path:
        """The sibling folder a compile writes first (see :meth:`partial`)."""
        root = self.root.resolve()
        return root.with_name(root.name + ".pemesh-partial")

    def partial(self) -> "OutTree":
        """A sibling folder to compile into; :meth:`adopt` moves it into OUT when it succeeded,
        so a failed compile loses nothing and a good one leaves nothing stale behind."""
        part = OutTree(self.partial_path())
        if part.root.exists():
            shutil.rmtree(part.root)
        return part

    def adopt(self, partial: "OutTree") -> None:
        """Replace OUT's generated entries with everything in ``partial`` (then removed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.clear_generated()
        for entry in sorted(partial.root.iterdir()):
            shutil.move(str(entry), str(self.root / entry.name))
        shutil.rmtree(partial.root, ignore_errors=True)

    @classmethod
    def of_stage_mlf(cls, mlf: Path) -> "tuple[OutTree, str] | None":
        """(OUT, stage) when ``mlf`` is ``OUT/stages/<stage>/model.tar`` of a pemesh OUT."""
        mlf = Path(mlf).resolve()
        if mlf.name != "model.tar" or mlf.parent.parent.name != "stages":
            return None
        tree = cls(mlf.parent.parent.parent)
        return (tree, mlf.parent.name) if tree.is_pemesh_out() else None

    def clear_generated(self) -> None:
        """Remove what an earlier compile/build/run wrote (only pemesh's own entries)."""
        for name in GENERATED_ENTRIES:
            p = self.root / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path, missing_hint: str, bad_hint: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} not found", hint=missing_hint) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not valid JSON: {err}", hint=bad_hint) from None


def _write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def _specs(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_json(t) for t in items)


def _jspecs(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [t.to_json() for t in specs]


# --- mesh.json -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRecord:
    """The compiled model: where it came from and its io."""

    name: str
    source: str
    format: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "format": self.format,
                "inputs": _jspecs(self.inputs), "outputs": _jspecs(self.outputs)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ModelRecord":
        return cls(d["name"], d.get("source", ""), d.get("format", ""), _specs(d["inputs"]),
                   _specs(d["outputs"]))


@dataclass(frozen=True)
class StageRecord:
    """One pipeline stage: its slice of the program, io, and planned memory."""

    name: str
    index: int
    steps: tuple[int, int]                  # [first, last + 1) of the fused program
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_tensors: tuple[int, ...]
    output_tensors: tuple[int, ...]
    workspace_size: int
    constants_size: int
    io_size: int
    macs: int
    arena_lower_bound: int
    cost_cycles: int
    memory: dict[str, Any] = field(default_factory=dict)
    ops: tuple[dict[str, Any], ...] = ()
    offload: tuple[dict[str, Any], ...] = ()

    @property
    def mlf(self) -> str:
        return f"{OutTree.stage_rel(self.name)}/model.tar"

    @property
    def model_dir(self) -> str:
        return f"{OutTree.stage_rel(self.name)}/model"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "steps": list(self.steps),
                "inputs": _jspecs(self.inputs), "outputs": _jspecs(self.outputs),
                "input_tensors": list(self.input_tensors),
                "output_tensors": list(self.output_tensors), "mlf": self.mlf,
                "model_dir": self.model_dir, "workspace_size": self.workspace_size,
                "constants_size": self.constants_size, "io_size": self.io_size,
                "macs": self.macs, "arena_lower_bound": self.arena_lower_bound,
                "cost_cycles": self.cost_cycles, "memory": self.memory,
                "ops": list(self.ops), "offload": list(self.offload)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StageRecord":
        return cls(name=d["name"], index=int(d.get("index", 0)),
                   steps=tuple(d.get("steps", (0, 0))), inputs=_specs(d["inputs"]),
                   outputs=_specs(d["outputs"]),
                   input_tensors=tuple(d.get("input_tensors", ())),
                   output_tensors=tuple(d.get("output_tensors", ())),
                   workspace_size=int(d["workspace_size"]),
                   constants_size=int(d["constants_size"]), io_size=int(d["io_size"]),
                   macs=int(d.get("macs", 0)), arena_lower_bound=int(d.get("arena_lower_bound", 0)),
                   cost_cycles=int(d.get("cost_cycles", 0)), memory=dict(d.get("memory", {})),
                   ops=tuple(d.get("ops", ())), offload=tuple(d.get("offload", ())))


@dataclass(frozen=True)
class PeRecord:
    """One PE: where it sits, what it runs, whom it talks to."""

    name: str
    id: int
    coords: tuple[int, int]
    chip: int
    stage: str
    stage_index: int
    replica: int
    host_link: bool
    routes: tuple[Route, ...]
    memory: dict[str, Any] = field(default_factory=dict)
    shard: int = 0
    role: str = "stage"

    @property
    def app(self) -> str:
        return OutTree.pe_app_rel(self.name)

    def describe(self) -> str:
        return (f"PE {self.id} ({self.name}, stage {self.stage}, replica {self.replica}, "
                f"coords ({self.coords[0]}, {self.coords[1]}))")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "coords": list(self.coords), "chip": self.chip,
                "stage": self.stage, "stage_index": self.stage_index, "shard": self.shard,
                "replica": self.replica, "app": self.app, "host_link": self.host_link,
                "routes": [r.to_json() for r in self.routes], "role": self.role,
                "memory": self.memory}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PeRecord":
        return cls(name=d.get("name", f"pe{d['id']}"), id=int(d["id"]),
                   coords=tuple(int(c) for c in d.get("coords", (0, 0))),
                   chip=int(d.get("chip", 0)), stage=str(d.get("stage", "")),
                   stage_index=int(d.get("stage_index", 0)), replica=int(d.get("replica", 0)),
                   host_link=bool(d.get("host_link", False)),
                   routes=tuple(Route.from_json(r) for r in d.get("routes") or ()),
                   memory=dict(d.get("memory", {})), shard=int(d.get("shard", 0)),
                   role=str(d.get("role", "stage")))


@dataclass(frozen=True)
class ReplicaRecord:
    """Where one copy of the pipeline takes model inputs and gives model outputs."""

    index: int
    entry: tuple[tuple[int, int, int], ...]     # (pe, input stream, model input index)
    exit: tuple[tuple[int, int, int], ...]      # (pe, stage output index, model output index)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "entry": [list(e) for e in self.entry],
                "exit": [list(e) for e in self.exit]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ReplicaRecord":
        def triples(v: Any) -> tuple[tuple[int, int, int], ...]:
            return tuple(tuple(int(x) for x in e) for e in v)  # type: ignore[misc]
        return cls(int(d["index"]), triples(d["entry"]), triples(d["exit"]))


@dataclass(frozen=True)
class Manifest:
    """OUT/mesh.json: what `compile` decided."""

    generator: str
    model: ModelRecord
    board: str
    pe_kind: str
    mesh: dict[str, Any]                    # the mesh (boards' Mesh.to_json) + num_pes, shape
    partition: dict[str, Any]
    stages: tuple[StageRecord, ...]
    pes: tuple[PeRecord, ...]
    replicas: tuple[ReplicaRecord, ...]
    reference: dict[str, Any]               # inputs/outputs: rel paths; anchor: who computed them
    compile_seconds: float = 0.0
    plan_seconds: float = 0.0
    runtime: str = OutTree.runtime_rel
    host_protocol: str = "pemesh"           # UART0 of the host-link PEs: frames or "eembc"
    schema_version: int = MANIFEST_VERSION

    def stage(self, name: str) -> StageRecord:
        for st in self.stages:
            if st.name == name:
                return st
        raise UsageError(f"mesh.json has no stage '{name}'", hint="re-run 'pemesh compile --force'")

    def pe(self, name: str) -> PeRecord:
        for pe in self.pes:
            if pe.name == name:
                return pe
        raise UsageError(f"mesh.json has no PE '{name}'", hint="re-run 'pemesh compile --force'")

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "generator": self.generator,
                "model": self.model.to_json(), "board": self.board, "pe_kind": self.pe_kind,
                "mesh": self.mesh, "runtime": self.runtime, "partition": self.partition,
                "stages": [s.to_json() for s in self.stages],
                "pes": [p.to_json() for p in self.pes],
                "replicas": [r.to_json() for r in self.replicas],
                "reference": self.reference, "compile_seconds": self.compile_seconds,
                "plan_seconds": self.plan_seconds, "host_protocol": self.host_protocol}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Manifest":
        return cls(generator=d.get("generator", ""), model=ModelRecord.from_json(d["model"]),
                   board=d.get("board", ""), pe_kind=d.get("pe_kind", ""),
                   mesh=dict(d.get("mesh") or {}), partition=dict(d.get("partition") or {}),
                   stages=tuple(StageRecord.from_json(s) for s in d.get("stages", ())),
                   pes=tuple(PeRecord.from_json(p) for p in d.get("pes", ())),
                   replicas=tuple(ReplicaRecord.from_json(r) for r in d.get("replicas", ())),
                   reference={k: (list(v) if isinstance(v, list) else v)
                              for k, v in (d.get("reference") or {}).items()},
                   compile_seconds=float(d.get("compile_seconds", 0.0)),
                   plan_seconds=float(d.get("plan_seconds", 0.0)),
                   runtime=d.get("runtime", OutTree.runtime_rel),
                   host_protocol=d.get("host_protocol", "pemesh"),
                   schema_version=int(d.get("schema_version", MANIFEST_VERSION)))


def read_manifest(out: Path) -> Manifest:
    """OUT/mesh.json, checked: UsageError naming the problem when it is missing or malformed."""
    path = OutTree(Path(out)).mesh_json
    doc = _read_json(path, "run 'pemesh compile MODEL -o OUT' first",
                     "re-run 'pemesh compile --force'")
    try:
        manifest = Manifest.from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UsageError(f"{path} is malformed ({type(err).__name__}: {err})",
                         hint="re-run 'pemesh compile --force'") from None
    if manifest.schema_version != MANIFEST_VERSION:
        raise UsageError(f"{path} has schema version {manifest.schema_version}, this pemesh "
                         f"reads {MANIFEST_VERSION}", hint="re-run 'pemesh compile --force'")
    if not manifest.pes:
        raise UsageError(f"{path} lists no PEs", hint="re-run 'pemesh compile --force'")
    if not manifest.replicas:
        raise UsageError(f"{path} lists no replicas (entry/exit PEs)",
                         hint="re-run 'pemesh compile --force'")
    return manifest


def write_manifest(out: Path, manifest: Manifest) -> Path:
    return _write_json(OutTree(Path(out)).mesh_json, manifest.to_json())


# --- reference/ ------------------------------------------------------------------------------

def write_reference(out: Path, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
                    anchor: str | None = None, note: str = "") -> dict[str, Any]:
    """Store the reference input(s) and the anchor's output(s); their paths relative to OUT,
    and which anchor computed the outputs (``note``: why it was not the format's own)."""
    tree = OutTree(Path(out))
    tree.reference_dir.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"inputs": [], "outputs": []}
    if anchor is not None:
        entry["anchor"] = anchor
    if note:
        entry["note"] = note
    for kind, arrays in (("input", inputs), ("output", outputs)):
        for i, a in enumerate(arrays):
            rel = f"reference/{kind}_{i}.npy"
            np.save(tree.root / rel, a)
            entry[kind + "s"].append(rel)
    return entry


def read_reference(out: Path, manifest: Manifest, kind: str) -> list[np.ndarray]:
    """The stored reference ``inputs`` or ``outputs`` (UsageError when they are missing)."""
    root = Path(out)
    rels = manifest.reference.get(kind) or []
    missing = [r for r in rels if not (root / r).is_file()]
    if not rels or missing:
        raise UsageError(f"no reference {kind} in {OutTree(root).reference_dir}"
                         + (f" ({missing[0]} is missing)" if missing else ""),
                         hint="recompile with 'pemesh compile' (it stores them)")
    return [np.load(root / r, allow_pickle=False) for r in rels]


# --- build/build.json ------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRecord:
    """The image one PE runs (paths relative to OUT)."""

    backend: str
    board: str
    app: str
    image: str
    bin: str | None
    sizes: dict[str, int]                   # text, data, bss
    sha256: str
    pes: tuple[str, ...]
    how: str = "built"                      # "built" | "stamped"
    source: str = ""                        # the PE whose build this is
    build_key: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "board": self.board, "app": self.app,
                "image": self.image, "bin": self.bin, "sizes": dict(self.sizes),
                "sha256": self.sha256, "pes": list(self.pes), "how": self.how,
                "from": self.source, "build_key": self.build_key}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ImageRecord":
        return cls(backend=d["backend"], board=d.get("board", ""), app=d["app"],
                   image=d["image"], bin=d.get("bin"),
                   sizes={k: int(v) for k, v in d["sizes"].items()}, sha256=d.get("sha256", ""),
                   pes=tuple(d.get("pes", ())), how=d.get("how", "built"),
                   source=d.get("from", ""), build_key=d.get("build_key", ""))


@dataclass(frozen=True)
class BuildRecord:
    """OUT/build/build.json: what `build` made, per PE, and for which compile."""

    backend: str
    images: dict[str, ImageRecord]          # by PE name, in mesh order
    totals: dict[str, int] = field(default_factory=dict)
    mesh_sha256: str = ""
    schema_version: int = BUILD_VERSION

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema_version": self.schema_version, "backend": self.backend,
                               "images": {k: v.to_json() for k, v in self.images.items()},
                               "totals": dict(self.totals)}
        if self.mesh_sha256:
            doc["mesh_sha256"] = self.mesh_sha256
        return doc

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "BuildRecord":
        return cls(backend=d["backend"],
                   images={k: ImageRecord.from_json(v) for k, v in d["images"].items()},
                   totals=dict(d.get("totals") or {}), mesh_sha256=d.get("mesh_sha256", ""),
                   schema_version=int(d.get("schema_version", BUILD_VERSION)))


def read_build(out: Path) -> BuildRecord:
    """OUT/build/build.json; UsageError when it is missing, malformed, or of an earlier compile."""
    tree = OutTree(Path(out).resolve())
    path = tree.build_json
    doc = _read_json(path, f"run 'pemesh build {tree.root}' first",
                     f"rebuild with 'pemesh build {tree.root}'")
    try:
        record = BuildRecord.from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UsageError(f"{path} is malformed ({type(err).__name__}: {err})",
                         hint=f"rebuild with 'pemesh build {tree.root}'") from None
    if (record.mesh_sha256 and tree.mesh_json.is_file()
            and sha256_file(tree.mesh_json) != record.mesh_sha256):
        raise UsageError(f"{path} belongs to an earlier compile: {tree.mesh_json} changed since "
                         "the build", hint=f"rebuild with 'pemesh build {tree.root}'")
    return record


def write_build(out: Path, record: BuildRecord) -> Path:
    """Write OUT/build/build.json, tied to the current mesh.json by its sha256."""
    tree = OutTree(Path(out))
    if tree.mesh_json.is_file():
        from dataclasses import replace
        record = replace(record, mesh_sha256=sha256_file(tree.mesh_json))
    return _write_json(tree.build_json, record.to_json())


# --- run.json --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeRunRecord:
    """What one PE reported (its last STATS) in a run."""

    id: int
    name: str
    stage: str
    replica: int
    coords: tuple[int, int]
    inferences: int
    cycles: int | None
    instructions: int | None = None
    accel_calls: int | None = None
    accel_macs: int | None = None
    rx_bad_frames: int | None = None
    rx_duplicates: int | None = None
    rank: int | None = None                 # MPI runs: the rank and host the PE ran on
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"id": self.id, "name": self.name, "stage": self.stage, "replica": self.replica,
             "coords": list(self.coords), "inferences": self.inferences, "cycles": self.cycles}
        for k in ("instructions", "accel_calls", "accel_macs", "rx_bad_frames", "rx_duplicates",
                  "rank", "host"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PeRunRecord":
        return cls(id=int(d["id"]), name=d["name"], stage=d.get("stage", ""),
                   replica=int(d.get("replica", 0)), coords=tuple(d.get("coords", (0, 0))),
                   inferences=int(d.get("inferences", 0)), cycles=d.get("cycles"),
                   instructions=d.get("instructions"), accel_calls=d.get("accel_calls"),
                   accel_macs=d.get("accel_macs"), rx_bad_frames=d.get("rx_bad_frames"),
                   rx_duplicates=d.get("rx_duplicates"), rank=d.get("rank"), host=d.get("host"))


@dataclass(frozen=True)
class RunRecord:
    """OUT/run.json: per-PE STATS, bytes per directed mesh link, throughput, fabric counters."""

    platform: str
    pes: dict[str, PeRunRecord]             # by PE name
    links: dict[str, int] = field(default_factory=dict)      # "a->b": bytes
    throughput: dict[str, Any] = field(default_factory=dict)
    fabric: dict[str, Any] = field(default_factory=dict)
    hops_per_inference: float = 0.0
    host_retransmissions: int = 0
    ranks: list[dict[str, Any]] = field(default_factory=list)   # MPI runs: per rank (host, frames)

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "pes": {k: v.to_json() for k, v in self.pes.items()},
                "links": dict(self.links), "throughput": dict(self.throughput),
                "fabric": dict(self.fabric), "hops_per_inference": self.hops_per_inference,
                "host_retransmissions": self.host_retransmissions,
                **({"ranks": list(self.ranks)} if self.ranks else {})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RunRecord":
        return cls(platform=d.get("platform", ""),
                   pes={k: PeRunRecord.from_json(v) for k, v in (d.get("pes") or {}).items()},
                   links={k: int(v) for k, v in (d.get("links") or {}).items()},
                   throughput=dict(d.get("throughput") or {}), fabric=dict(d.get("fabric") or {}),
                   hops_per_inference=float(d.get("hops_per_inference", 0.0)),
                   host_retransmissions=int(d.get("host_retransmissions", 0)),
                   ranks=list(d.get("ranks") or []))


def read_run(out: Path) -> RunRecord | None:
    """OUT/run.json, or None when no run happened (or it is unreadable: a report still works)."""
    path = OutTree(Path(out)).run_json
    if not path.is_file():
        return None
    try:
        return RunRecord.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def write_run(out: Path, record: RunRecord) -> Path:
    return _write_json(OutTree(Path(out)).run_json, record.to_json())
