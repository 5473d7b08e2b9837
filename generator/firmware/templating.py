"""The one Jinja2 environment for everything pemesh generates (StrictUndefined)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def template_env():
    """Jinja2 environment over ``templates/``: undefined names are errors, output is stable."""
    import jinja2

    from generator.paths import templates_dir

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
