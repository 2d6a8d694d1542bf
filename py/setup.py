"""Build hook: ship the generated JSON Schemas inside the package.

The worker validates every message against schemas/*.json, which `prcl schemas` writes at the
repository root, outside this project directory (py/). pyproject.toml cannot reach a directory
above the project, so the wheel's build_py copies them into prcl_worker/schema_files/, where
prcl_worker.schemas looks when the repository's schemas/ is not next to the package. An sdist
carries them as schemas/ at its root, so a wheel built from the sdist has them too.
"""

import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join("prcl_worker", "schema_files")


def schema_files():
    """The *.json files of the repository's schemas/ (a checkout), else of an sdist's schemas/."""
    for d in (os.path.join(HERE, "..", "schemas"), os.path.join(HERE, "schemas")):
        files = sorted(glob.glob(os.path.join(d, "*.json")))
        if os.path.isfile(os.path.join(d, "request.json")):
            return files
    raise SystemExit(f"prcl-worker: no schemas/*.json next to {HERE}: build from the repository's py/ "
                     "(run `prcl schemas` first) or from an sdist of it")


class build_py(_build_py):
    def run(self):
        if not getattr(self, "editable_mode", False):
            # A module deleted from the sources must not survive in a stale build/lib.
            shutil.rmtree(os.path.join(self.build_lib, "prcl_worker"), ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, which has ../schemas itself
        target = os.path.join(self.build_lib, TARGET)
        os.makedirs(target, exist_ok=True)
        for f in schema_files():
            shutil.copyfile(f, os.path.join(target, os.path.basename(f)))  # bytes as they are: same hash

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [
            os.path.join(self.build_lib, TARGET, os.path.basename(f)) for f in schema_files()]


class sdist(_sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        os.makedirs(os.path.join(base_dir, "schemas"), exist_ok=True)
        for f in schema_files():
            shutil.copyfile(f, os.path.join(base_dir, "schemas", os.path.basename(f)))


setup(cmdclass={"build_py": build_py, "sdist": sdist})
