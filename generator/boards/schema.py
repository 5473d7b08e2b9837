"""Reading the board YAML files: line-numbered errors, JSON Schema validation, quantities.

The loader in :mod:`generator.boards.catalog` builds dataclasses from what this module returns. Every
problem is a :class:`~generator.errors.BoardError` naming the file, the line, the field path
(e.g. ``pe_kind.accelerator.mac_array[1]``) and what is wrong.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from generator.errors import BoardError
from generator.paths import boards_dir

_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "kB": 1000, "KB": 1000,
          "MB": 1000 ** 2, "GB": 1000 ** 3, "Hz": 1, "kHz": 1000, "MHz": 1000 ** 2,
          "GHz": 1000 ** 3}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_HINT_SCHEMA = "compare with the shipped files in {dir} and the schema in {dir}/schema"


def _field_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _node_at(node: yaml.Node | None, parts: Iterable[Any]) -> yaml.Node | None:
    """The deepest YAML node along a field path (for line numbers)."""
    for p in parts:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == p), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and p < len(node.value):
            nxt = node.value[p]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
    return node


class YamlDoc:
    """A parsed YAML file: data, its node tree (for line numbers) and where it came from."""

    def __init__(self, source: str, data: Any, node: yaml.Node | None):
        self.source, self.data, self.node = source, data, node

    def error(self, parts: Iterable[Any], problem: str, hint: str | None = None) -> BoardError:
        """A BoardError at field path ``parts`` (with its line and column when known)."""
        parts = list(parts)
        node = _node_at(self.node, parts)
        where = (f"{self.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
                 if node is not None else self.source)
        return BoardError(f"{where}: {_field_path(parts)}: {problem}",
                          hint or _HINT_SCHEMA.format(dir=boards_dir()))


def _check_duplicate_keys(doc: YamlDoc, node: yaml.Node | None, parts: list[Any]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            if k.value in seen:
                raise doc.error(parts + [k.value], "key appears twice", "remove one of the two")
            seen.add(k.value)
            _check_duplicate_keys(doc, v, parts + [k.value])
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_duplicate_keys(doc, v, parts + [i])


def read_yaml(path: Path) -> YamlDoc:
    """Parse a YAML file, keeping its node tree for line numbers; BoardError on bad YAML or a
    key given twice."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BoardError(f"cannot read {path}: {err.strerror or err}",
                         "check the path; 'pemesh boards' lists the shipped names") from err
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(x for x in (err.context, err.problem) if x)
        raise BoardError(f"{where}: malformed YAML: {problem}",
                         "fix the YAML syntax there (indentation, quotes around text "
                         "containing ': ')") from err
    except yaml.YAMLError as err:
        raise BoardError(f"{path}: malformed YAML: {err}", "fix the YAML syntax") from err
    doc = YamlDoc(str(path), data, node)
    _check_duplicate_keys(doc, node, [])
    return doc


@lru_cache(maxsize=None)
def _schema(kind: str) -> dict[str, Any]:
    path = boards_dir() / "schema" / f"{kind}.schema.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def validate(doc: YamlDoc, kind: str, data: Any, prefix: tuple[Any, ...] = ()) -> None:
    """Validate ``data`` (found at ``prefix`` in ``doc``) against a schema; raise the first
    problems as one BoardError."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema(kind))
    errors = sorted(validator.iter_errors(data),
                    key=lambda e: ([str(p) for p in e.absolute_path], e.message))
    if not errors:
        return
    lines = []
    for e in errors[:8]:
        parts = list(prefix) + list(e.absolute_path)
        if e.validator in ("anyOf", "oneOf") and "description" in e.schema:
            problem = f"{e.instance!r} is not {e.schema['description']}"
        else:
            problem = e.message
        lines.append(str(doc.error(parts, problem)).split("\n")[0])
    more = f"\n  (and {len(errors) - 8} more)" if len(errors) > 8 else ""
    raise BoardError("invalid " + ("PE kind" if kind == "pe_kind" else "mesh") + ":\n  "
                     + "\n  ".join(lines) + more, _HINT_SCHEMA.format(dir=boards_dir()))


def quantity(value: int | str) -> int:
    """A schema-valid size or frequency (``256 KiB``, ``12 MHz`` or a plain int) in bytes or Hz."""
    if isinstance(value, int):
        return value
    m = _QUANTITY.match(value)
    assert m is not None, value     # the schema's pattern guarantees the shape
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))
