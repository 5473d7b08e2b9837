"""Ship the top-level data trees (templates/, boards/, zephyr_app/) inside the wheel.

The design card fixes these folders at the repository's top level; an installed pemesh finds
them under ``generator/_data/`` (see ``generator/paths.py``).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_TREES = ("templates", "boards", "zephyr_app")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "generator" / "_data"
        for tree in DATA_TREES:
            target = dest / tree
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(root / tree, target,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build"))


setup(cmdclass={"build_py": BuildPyWithData})
