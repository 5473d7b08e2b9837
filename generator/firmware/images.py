"""``pemesh build``'s work: one image per distinct stage, the other PEs stamped (CONTRACTS §6).

PEs are grouped by :func:`build_key` (everything in the AppSpec but the identity); each group's
first PE app is built (groups in parallel), every other PE of the group gets a copy of that image
in OUT/build/<pe>/ with its own 128-byte identity block stamped in (:mod:`generator.firmware.
stamp`). Stamped images equal direct builds of the PEs' own apps byte for byte because build.py
compiles in the app folder with ``-ffile-prefix-map=<app>=.`` (and the host link has no
build-id). A single PE is a group of one: the same code builds it.

The record of the build is OUT/build/build.json (:class:`generator.manifest.BuildRecord`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from generator.errors import BuildError, UsageError
from generator.firmware.build import BuildResult, build_app, load_app_spec, resolve_backend
from generator.firmware.stamp import load_stamp_source, pack_pe_config, stamp
from generator.firmware.toolchain import ImageSizes
from generator.manifest import (BuildRecord, ImageRecord, Manifest, OutTree, read_build,
                                read_manifest, sha256_file, write_build)
from generator.types import AppSpec

log = logging.getLogger(__name__)

#: AppSpec fields that only go into struct pemesh_pe_config (stamped after linking)
PER_PE_FIELDS = ("pe_id", "pe_name", "routes", "flags")


def build_key(spec: AppSpec, app_dir: Path, backend: str) -> str:
    """What decides an image: backend, board, stage and every AppSpec field except the per-PE
    identity (:data:`PER_PE_FIELDS`), ``model_dir`` resolved. PEs with equal keys run one
    image, stamped per PE. (``role`` counts: it may change what the templates generate.)"""
    d = {k: v for k, v in spec.to_json().items() if k not in PER_PE_FIELDS}
    d["model_dir"] = str((Path(app_dir) / spec.model_dir).resolve())
    d["backend"] = backend
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ImagePlan:
    """One image to build and the PEs that run it (the first PE's app is built)."""

    name: str                   # folder under OUT/build/ (the first PE's name)
    app: str                    # app folder relative to OUT
    pes: tuple[str, ...]
    key: str = ""               # build_key of the group ("" when not grouped)


def plan_images(manifest: Manifest, out: Path | None = None,
                backend: str = "") -> list[ImagePlan]:
    """Which images to build: with ``out``, one per distinct :func:`build_key` (PEs in mesh
    order, the first PE of each group is built); without, one per PE."""
    if out is None:
        return [ImagePlan(pe.name, pe.app, (pe.name,)) for pe in manifest.pes]
    return group_pes(manifest, Path(out), backend)[0]


def group_pes(manifest: Manifest, out: Path,
              backend: str) -> tuple[list[ImagePlan], dict[str, AppSpec]]:
    """Group the PEs of ``manifest`` by :func:`build_key`: the plans and every PE's AppSpec."""
    groups: dict[str, list[str]] = {}
    apps: dict[str, str] = {}
    specs: dict[str, AppSpec] = {}
    for pe in manifest.pes:
        if pe.name in specs:
            raise UsageError(f"PE name '{pe.name}' appears twice in {OutTree(out).mesh_json}",
                             hint="re-run 'pemesh compile --force'")
        apps[pe.name] = pe.app
        specs[pe.name] = load_app_spec(out / pe.app)
        groups.setdefault(build_key(specs[pe.name], out / pe.app, backend), []).append(pe.name)
    plans = [ImagePlan(pes[0], apps[pes[0]], tuple(pes), key) for key, pes in groups.items()]
    return plans, specs


@dataclass(frozen=True)
class PeImage:
    """The image of one PE: built from its own app, or stamped from its group's built image."""

    pe: str
    result: BuildResult
    how: str                    # "built" | "stamped"
    source: str                 # the PE whose build this is (itself when built)
    sha256: str                 # of the .bin (or the executable)
    key: str


def stamp_copies(out: Path, plan: ImagePlan, built: BuildResult,
                 specs: Mapping[str, AppSpec], apps: Mapping[str, str],
                 on_stamped: Callable[[str], None] = lambda pe: None) -> list[PeImage]:
    """The built image of ``plan`` (its first PE, in OUT/build/<first>/) plus a stamped copy in
    OUT/build/<pe>/ for every other PE of the plan. The built image's identity block must be
    what :func:`pack_pe_config` gives for its own PE (else C and Python disagree: BuildError)."""
    tree = OutTree(out)
    first = specs[plan.name]
    images = [PeImage(plan.name, built, "built", plan.name,
                      sha256_file(built.bin or built.image), plan.key)]
    if len(plan.pes) == 1:
        return images
    source = load_stamp_source(built.image, built.bin)
    if source.config != pack_pe_config(first):
        raise BuildError(
            f"the identity block built into {built.image} differs from the one generator/"
            f"firmware/stamp.py packs for {first.pe_name}: {source.config.hex()} != "
            f"{pack_pe_config(first).hex()}",
            hint="templates/pe_app/src/pe_config.c.j2 and generator/firmware/stamp.py disagree "
                 "on struct pemesh_pe_config (CONTRACTS §1, §6); fix the one that is wrong")
    src_dir = tree.image_dir(plan.name)
    elf_rel = built.image.relative_to(src_dir)
    bin_rel = built.bin.relative_to(src_dir) if built.bin else None
    for pe in plan.pes[1:]:
        dst = tree.image_dir(pe)
        elf_out, bin_out = dst / elf_rel, (dst / bin_rel if bin_rel else None)
        new_elf, new_bin = stamp(source, pack_pe_config(specs[pe]), elf_out, bin_out)
        (dst / "commands.txt").unlink(missing_ok=True)     # of an earlier direct build
        result = BuildResult(built.backend, (out / apps[pe]).resolve(), elf_out, bin_out,
                             built.sizes, (), built.board)
        sha = hashlib.sha256(new_bin if new_bin is not None else new_elf).hexdigest()
        images.append(PeImage(pe, result, "stamped", plan.name, sha, plan.key))
        on_stamped(pe)
    return images


@dataclass(frozen=True)
class MeshBuild:
    """What ``pemesh build`` did."""

    backend: str
    images: Mapping[str, PeImage]   # by PE name, in mesh order
    built: int
    stamped: int
    build_seconds: float            # wall time until the last image was built (parallel)
    stamp_seconds: float            # time spent stamping copies (overlaps later builds)


class BuildProgress:
    """Hooks :func:`build_mesh_report` calls as it goes (the default does nothing)."""

    def begin(self, images: int, stamps: int) -> None:
        """Before anything runs: how many images will be built and how many stamped."""

    def built(self, plan: ImagePlan, seconds: float) -> None:
        """An image was built (from the first PE of ``plan``)."""

    def stamped(self, pe: str) -> None:
        """A PE's copy was stamped."""

    def end(self) -> None:
        """All done (also after an error)."""


def split_jobs(jobs: int | None, images: int) -> tuple[int, int]:
    """(images built at once, compile jobs per image) for ``jobs`` parallel commands."""
    jobs = max(1, jobs or os.cpu_count() or 1)
    outer = max(1, min(jobs, images))
    return outer, max(1, jobs // outer)


def build_mesh_report(out: Path, backend: str, *, jobs: int | None = None,
                      progress: BuildProgress | None = None) -> MeshBuild:
    """Build every distinct image of OUT/ once (in parallel), stamp each other PE's identity
    into a copy (OUT/build/<pe>/), and write OUT/build/build.json."""
    out = Path(out).resolve()
    tree = OutTree(out)
    progress = progress or BuildProgress()
    manifest = read_manifest(out)
    first = load_app_spec(out / manifest.pes[0].app)
    backend = resolve_backend(backend, first.board)
    plans, specs = group_pes(manifest, out, backend)
    apps = {pe.name: pe.app for pe in manifest.pes}
    outer, inner = split_jobs(jobs, len(plans))
    log.info("%d PEs, %d distinct images: building %d at a time (%d compile jobs each)",
             len(specs), len(plans), outer, inner)
    progress.begin(len(plans), len(specs) - len(plans))
    images: dict[str, PeImage] = {}
    stamp_seconds = 0.0
    t0 = builds_done = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=outer) as pool:
            def build_one(plan: ImagePlan) -> tuple[BuildResult, float, float]:
                start = time.monotonic()
                r = build_app(out / plan.app, tree.image_dir(plan.name), backend, jobs=inner)
                end = time.monotonic()
                return r, end - start, end
            futures = {pool.submit(build_one, plan): plan for plan in plans}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    plan = futures[fut]
                    result, seconds, end = fut.result()
                    builds_done = max(builds_done, end)
                    progress.built(plan, seconds)
                    start = time.monotonic()
                    for img in stamp_copies(out, plan, result, specs, apps, progress.stamped):
                        images[img.pe] = img
                    stamp_seconds += time.monotonic() - start
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        progress.end()
    ordered = {pe.name: images[pe.name] for pe in manifest.pes}
    report = MeshBuild(backend, ordered, len(plans), len(specs) - len(plans),
                       builds_done - t0, stamp_seconds)
    write_build(out, build_record(out, report))
    return report


def build_mesh(out: Path, backend: str, *, jobs: int | None = None) -> dict[str, BuildResult]:
    """Build every image of OUT/ (see :func:`build_mesh_report`); a BuildResult per PE."""
    report = build_mesh_report(out, backend, jobs=jobs)
    return {pe: img.result for pe, img in report.images.items()}


def _image_record(out: Path, img: PeImage) -> ImageRecord:
    r = img.result

    def rel(p: Path | None) -> str | None:
        return None if p is None else os.path.relpath(p, out)
    return ImageRecord(backend=r.backend, board=r.board, app=rel(r.app_dir), image=rel(r.image),
                       bin=rel(r.bin), sizes=r.sizes.to_json(), sha256=img.sha256,
                       pes=(img.pe,), how=img.how, source=img.source, build_key=img.key)


def build_record(out: Path, report: MeshBuild) -> BuildRecord:
    """The build.json record of ``report``: per PE its image, sizes, sha256, and how it was
    made; totals. Deterministic: no timings."""
    results = [img.result for img in report.images.values()]
    totals = {"pes": len(results), "images_built": report.built,
              "images_stamped": report.stamped,
              "flash_bytes": sum(r.sizes.flash for r in results),
              "bin_bytes": sum(r.bin.stat().st_size for r in results if r.bin is not None)}
    return BuildRecord(report.backend,
                       {k: _image_record(Path(out), v) for k, v in report.images.items()},
                       totals)


def result_of(out: Path, rec: ImageRecord) -> BuildResult:
    """The BuildResult an ImageRecord of OUT/build/build.json describes."""
    def path(p: str | None) -> Path | None:
        return None if p is None else (Path(out) / p).resolve()
    s = rec.sizes
    return BuildResult(backend=rec.backend, app_dir=path(rec.app), image=path(rec.image),
                       bin=path(rec.bin), sizes=ImageSizes(s["text"], s["data"], s["bss"]),
                       commands=(), board=rec.board or "qemu_cortex_m3")


def load_build(out: Path) -> tuple[BuildRecord, dict[str, BuildResult]]:
    """OUT/build/build.json and a BuildResult per PE (UsageError when there is no build of the
    current compile)."""
    out = Path(out).resolve()
    record = read_build(out)
    return record, {name: result_of(out, rec) for name, rec in record.images.items()}
