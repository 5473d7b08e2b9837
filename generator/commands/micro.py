"""``pemesh micro create-project|build|flash|run`` — the Project API flow from the command line.

Like ``tvmc micro``: every action starts the project's (or template's) server, and
``--project-option NAME=VALUE`` values are parsed by the type the server declares for NAME.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from generator.commands.run import output_path, save_outputs
from generator.errors import CheckError, RunError, UsageError
from generator.project_api.client import GeneratedProject, TemplateProject, fill_options
from generator.project_api.protocol import JSONRPCError, ProjectOption, coerce_option_value

log = logging.getLogger(__name__)

REFERENCE_DIR = "reference"
def parse_option_value(option: ProjectOption, text: str) -> Any:
    """``text`` converted to the option's declared type (bool: true/false/yes/no/1/0/on/off)."""
    try:
        return coerce_option_value(option, text)
    except ValueError as exc:
        raise UsageError(str(exc), hint=f"{option.name}: {option.help}") from None


def parse_project_options(declared: Sequence[ProjectOption], items: Sequence[str]) -> dict:
    """``["NAME=VALUE", ...]`` → a checked dict (unknown names and bad values raise UsageError)."""
    by_name = {o.name: o for o in declared}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--project-option {item!r}: want NAME=VALUE",
                             hint="e.g. -x board=qemu_cortex_m3")
        if name not in by_name:
            raise UsageError(f"unknown project option {name!r}",
                             hint=f"the server offers: {', '.join(sorted(by_name))}")
        out[name] = parse_option_value(by_name[name], text)
    fill_options(list(declared), out)    # checks types and choices
    return out


def _open_project(project_dir: Path, items: Sequence[str]) -> GeneratedProject:
    project = GeneratedProject.from_directory(project_dir)
    try:
        project.options = fill_options(project.project_options,
                                       parse_project_options(project.project_options, items))
    except BaseException:
        project.close()
        raise
    return project


#: beside the reference arrays: the compiled model (generator.manifest.ModelRecord)
MODEL_JSON = "model.json"


def _one_stage_model(mlf: Path):
    """(ModelRecord, anchor) of the pemesh OUT whose only stage ``mlf`` is, else (None, ...)."""
    from generator.manifest import OutTree, read_manifest

    found = OutTree.of_stage_mlf(mlf)
    if found is None:
        return None, "tvm"
    try:
        manifest = read_manifest(found[0].root)
    except UsageError:
        return None, "tvm"
    if [s.name for s in manifest.stages] != [found[1]]:
        return None, "tvm"
    return manifest.model, str(manifest.reference.get("anchor", "tvm"))


def _find_reference(mlf: Path) -> Path | None:
    """The reference of an MLF: ``<mlf dir>/reference``, or OUT's reference when the MLF is the
    only stage of a pemesh OUT (the model's reference is then the stage's)."""
    from generator.manifest import OutTree, read_manifest

    cands = [mlf.parent / REFERENCE_DIR]
    found = OutTree.of_stage_mlf(mlf)
    if found is not None:
        tree, stage = found
        try:
            manifest = read_manifest(tree.root)
        except UsageError:
            manifest = None
        if manifest is not None and [s.name for s in manifest.stages] == [stage]:
            cands.append(tree.reference_dir)
    for cand in cands:
        if cand.is_dir() and any(cand.glob("input_*.npy")):
            return cand
    return None


def create_project(args: argparse.Namespace) -> int:
    from generator.paths import templates_dir

    template_dir = Path(args.template_dir) if args.template_dir else templates_dir() / "project_api"
    project_dir = Path(args.project_dir).resolve()
    mlf = Path(args.mlf).resolve()
    if not mlf.is_file():
        raise UsageError(f"no MLF tar at {mlf}", hint="pass OUT/stages/<stage>/model.tar")
    import tarfile
    if not tarfile.is_tarfile(mlf):
        raise UsageError(f"{mlf} is not a Model Library Format tar",
                         hint="pass OUT/stages/<stage>/model.tar, written by 'pemesh compile'")
    if project_dir.exists():
        if not args.force:
            raise UsageError(f"{project_dir} already exists", hint="use --force to replace it")
        shutil.rmtree(project_dir)
    with TemplateProject.from_directory(template_dir) as template:
        options = parse_project_options(template.project_options, args.project_option)
        template.generate_project(mlf, project_dir, options).close()
    ref = _find_reference(mlf)
    if ref is not None:
        dest = project_dir / REFERENCE_DIR
        dest.mkdir()
        for f in sorted(ref.glob("*.npy")):
            shutil.copy2(f, dest / f.name)
        model, anchor = _one_stage_model(mlf)
        if model is not None:       # the model itself: --check computes references for any input
            (dest / MODEL_JSON).write_text(json.dumps({**model.to_json(), "anchor": anchor},
                                                      indent=2, sort_keys=True))
    print(f"generated {project_dir}" + (f" (reference from {ref})" if ref else ""))
    return 0


def _reference(folder: Path, kind: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{kind}_*.npy"), key=lambda f: int(f.stem.split("_")[-1]))
    return [np.load(f) for f in files]


def run_project(args: argparse.Namespace) -> int:
    from generator.firmware.build import load_app_spec
    from generator.project_api.inference import run_inference

    from generator.verify.inputs import load_items

    project_dir = Path(args.project_dir).resolve()
    spec = load_app_spec(project_dir)
    if spec.host_protocol == "eembc":
        raise UsageError(f"{project_dir} is an mlperftiny project: its UART0 speaks the EEMBC / "
                         "MLPerf Tiny text protocol, not the frames 'micro run' sends",
                         hint="drive it with the MLPerf Tiny runner on its serial port (open_"
                              "transport's bytes, a board's /dev/ttyACM0), or generate it "
                              "with project_type=aot_standalone_demo for 'micro run'")
    ref_dir = Path(args.reference) if args.reference else project_dir / REFERENCE_DIR
    if args.input:
        items = load_items(args.input, spec.inputs)
        if len(items) != 1:
            raise UsageError(f"micro run takes one input item, --input holds {len(items)}",
                             hint="use 'pemesh run' for datasets, or pass one item")
        inputs = items[0]
    else:
        inputs = _reference(ref_dir, "input")
        if not inputs:
            raise UsageError("no inputs", hint=f"pass --input, or put input_0.npy in {ref_dir}")
    output = output_path(args.output, len(spec.outputs)) if args.output else None
    expected, anchor = _expected(ref_dir, inputs, bool(args.input)) if args.check else ([], "")
    with _open_project(project_dir, args.project_option) as project:
        outputs, stats = run_inference(project, inputs, output_specs=spec.outputs)
    for i, out in enumerate(outputs):
        print(f"output {i}: shape {tuple(out.shape)} dtype {out.dtype}")
    print(f"stats: {stats}")
    if output is not None:
        save_outputs(output, outputs, spec.outputs)
        print(f"output written to {output}")
    if args.check:
        from generator.verify.check import check_outputs

        if len(expected) != len(outputs):
            raise CheckError(f"{len(outputs)} outputs but {len(expected)} references in {ref_dir}",
                             hint="pass --reference with the stage's own reference")
        got = [o.reshape(w.shape) if o.size == w.size else o for o, w in zip(outputs, expected)]
        check_outputs([got], [expected], project_dir, anchor=anchor)
        print("check: outputs match the reference")
    return 0


def _expected(ref_dir: Path, inputs: list[np.ndarray],
              own_input: bool) -> tuple[list[np.ndarray], str]:
    """Reference outputs for ``inputs`` and who computed them: the stored ones for the stored
    input; for the user's own input, the model's anchor run on it (as 'pemesh run --check')."""
    if not own_input:
        anchor = "tvm"
        if (ref_dir / MODEL_JSON).is_file():
            anchor = json.loads((ref_dir / MODEL_JSON).read_text()).get("anchor", "tvm")
        return _reference(ref_dir, "output"), anchor
    from generator.manifest import ModelRecord
    from generator.verify.anchors import run_anchor
    from generator.verify.check import load_recorded_model

    path = ref_dir / MODEL_JSON
    if not path.is_file():
        raise UsageError("--check with your own --input needs the model, and this project does "
                         f"not name one ({path} is missing)",
                         hint="create the project from OUT/stages/<stage>/model.tar of a "
                              "one-stage compile, or check against --reference")
    model = load_recorded_model(ModelRecord.from_json(json.loads(path.read_text())))
    run = run_anchor(model, inputs)
    return run.outputs, run.anchor


def micro_command(args: argparse.Namespace) -> int:
    """Entry point of ``pemesh micro ACTION``; server-side errors become RunError."""
    try:
        return _micro(args)
    except JSONRPCError as exc:
        raise RunError(f"micro {args.micro_action}: {exc}",
                       hint="the project's server reported this; rerun with -vv") from None


def _micro(args: argparse.Namespace) -> int:
    action = args.micro_action
    if action == "create-project":
        return create_project(args)
    if action == "run":
        return run_project(args)
    with _open_project(Path(args.project_dir).resolve(), args.project_option) as project:
        getattr(project, action)()
    print(f"{action}: done")
    return 0
