"""``pemesh report OUT [--format text|json|html]``: plan vs built memory, cycles, the mesh."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generator.report.html import render_html
from generator.report.summary import collect, render_text


def report_command(args: argparse.Namespace) -> int:
    """Print the report of OUT/ in the asked format."""
    data = collect(Path(args.out))
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    elif args.format == "html":
        print(render_html(data), end="")
    else:
        print(render_text(data), end="")
    return 0
