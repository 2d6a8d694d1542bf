"""The generated JSON Schemas (schemas/*.json, written by `prcl schemas`) as compiled validators.

fastjsonschema compiles a schema to Python code: ~3.5 us per header check against ~50 us for
jsonschema's Draft7Validator (2-core box), which matters for a round trip near 100 us.
"""

import hashlib
import json
import os

import fastjsonschema

from .errors import BadMessage, InvalidArgument

_HERE = os.path.dirname(os.path.abspath(__file__))
# A checkout (or the npm package): py/prcl_worker/ next to schemas/, which `prcl schemas` rewrites.
REPO_DIR = os.path.join(_HERE, "..", "..", "schemas")
# An installed wheel (pip install ./py): the copy py/setup.py puts inside the package at build time.
PACKAGED_DIR = os.path.join(_HERE, "schema_files")
# The repository's files when they are there, else the packaged copy. Both hold the same bytes under
# the same names, so the hash the worker announces is the same either way.
DEFAULT_DIR = REPO_DIR if os.path.isfile(os.path.join(REPO_DIR, "request.json")) else PACKAGED_DIR


def _path(exc):
    # fastjsonschema names the value "data.a[0].b"; report it relative to the validated object.
    name = exc.name or "data"
    return name[len("data"):].lstrip(".") or "/"


class Validator:
    def __init__(self, schema, error_cls, prefix=""):
        self._check = fastjsonschema.compile(schema)
        self._error_cls = error_cls
        self._prefix = prefix

    def __call__(self, value):
        try:
            self._check(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            path = _path(exc)
            full = f"{self._prefix}.{path}" if self._prefix and path != "/" else (self._prefix or path)
            message = exc.message.replace(exc.name or "data", full, 1) if exc.name else exc.message
            raise self._error_cls(message, full) from None


class Schemas:
    """Validators for the envelope and for every op's arguments and results."""

    def __init__(self, directory=None):
        self.directory = os.path.abspath(directory or DEFAULT_DIR)
        texts = {}
        try:
            for name in sorted(os.listdir(self.directory)):
                if name.endswith(".json"):
                    with open(os.path.join(self.directory, name), "rb") as f:
                        texts[name] = f.read()
        except OSError as exc:
            raise RuntimeError(f"cannot read the schema directory {self.directory}: {exc}") from exc
        for required in ("request.json", "cancel.json", "abort.json", "ops.json", "losses.json", "loss-spec.json"):
            if required not in texts:
                raise RuntimeError(f"{os.path.join(self.directory, required)} is missing; run `prcl schemas`")
        h = hashlib.sha256()
        for name in sorted(texts):
            h.update(f"{name}\n".encode())
            h.update(texts[name])
        self.hash = h.hexdigest()[:16]
        docs = {name: json.loads(text) for name, text in texts.items()}
        self.request = Validator(docs["request.json"], BadMessage)
        self.cancel = Validator(docs["cancel.json"], BadMessage)
        self.abort = Validator(docs["abort.json"], BadMessage)
        self.ops = docs["ops.json"]["ops"]
        self.args = {op: Validator(spec["args"], InvalidArgument, "body") for op, spec in self.ops.items()}
        self.results = {op: Validator(spec["result"], InvalidArgument, "result") for op, spec in self.ops.items()}
        losses = docs["losses.json"]
        self.losses = losses["losses"]
        self.loss_spec = Validator(docs["loss-spec.json"], InvalidArgument, "loss")
        self.loss_params = {name: fastjsonschema.compile(spec["params"]) for name, spec in self.losses.items()}
        # The names a loss term may read (declared by the driver): `model.<output>`, `batch.<tensor>`,
        # and those a labeled-only step provides.
        self.model_outputs = tuple(losses["refs"]["model"])
        self.batch_tensors = tuple(losses["refs"]["batch"])
        self.labeled_only = tuple(losses["labeled_only"])

    def check_loss_params(self, op, params, where, path, error=InvalidArgument):
        """Refuse `params` that do not fit loss op `op`'s schema: an `error` whose message starts
        with `where` and whose path starts with `path`."""
        try:
            self.loss_params[op](params)
        except fastjsonschema.JsonSchemaValueException as exc:
            full = path + (exc.name or "data")[len("data"):]
            raise error(f"{where}: {exc.message.replace(exc.name or 'data', full, 1)}", full) from None
