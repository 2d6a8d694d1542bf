"""prcl_worker.schemas: the generated JSON Schemas (schemas/*.json) and their compiled validators.

Covers: every schema file is valid draft-07; the schema hash the worker announces is the
documented sha256; the op registry and ops.json agree; validation errors name the JSON path
of the offending value; and the fast validators (fastjsonschema) agree with the reference
implementation (jsonschema's Draft7Validator) on valid and invalid request headers.
"""

import hashlib
import json
import os

import jsonschema
import pytest

from prcl_worker.errors import BadMessage, InvalidArgument
from prcl_worker.ops import REGISTRY
from prcl_worker.schemas import DEFAULT_DIR, Schemas

SCHEMA_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "schemas"))
SCHEMA_FILES = sorted(n for n in os.listdir(SCHEMA_DIR) if n.endswith(".json"))


def load(name):
    with open(os.path.join(SCHEMA_DIR, name)) as f:
        return json.load(f)


def file_bytes(name):
    with open(os.path.join(SCHEMA_DIR, name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def schemas():
    return Schemas()


def request(**changes):
    """A valid request header, with top-level fields replaced (None removes one)."""
    h = {"v": 1, "kind": "req", "id": 7, "op": "echo", "instance": "0123abcd", "body": {},
         "tensors": [{"name": "x", "dtype": "float32", "shape": [2, 3], "frame": 1, "nbytes": 24}]}
    for k, v in changes.items():
        if v is None:
            h.pop(k)
        else:
            h[k] = v
    return h


def with_tensor(**changes):
    h = request()
    h["tensors"][0].update(changes)
    return h


# -- the files ----------------------------------------------------------------------------------

def test_the_expected_files_are_there():
    assert os.path.samefile(DEFAULT_DIR, SCHEMA_DIR)
    for name in ("request.json", "cancel.json", "reply.json", "error.json", "heartbeat.json", "hello.json",
                 "ops.json"):
        assert name in SCHEMA_FILES


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_file_is_a_draft7_schema(name):
    doc = load(name)
    assert doc.get("$schema") == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(doc)


@pytest.mark.parametrize("op", sorted(load("ops.json")["ops"]))
def test_every_op_schema_is_a_draft7_schema(op):
    spec = load("ops.json")["ops"][op]
    assert spec["tensors"] in ("none", "any") and spec["doc"]
    jsonschema.Draft7Validator.check_schema(spec["args"])
    jsonschema.Draft7Validator.check_schema(spec["result"])


def test_schema_hash(schemas):
    h = hashlib.sha256()
    for name in SCHEMA_FILES:
        h.update(f"{name}\n".encode())
        h.update(file_bytes(name))
    assert schemas.hash == h.hexdigest()[:16]
    assert len(schemas.hash) == 16 and int(schemas.hash, 16) >= 0


def test_schema_hash_changes_with_any_byte(tmp_path):
    for name in SCHEMA_FILES:
        (tmp_path / name).write_bytes(file_bytes(name))
    same = Schemas(str(tmp_path))
    (tmp_path / "error.json").write_bytes((tmp_path / "error.json").read_bytes() + b"\n")
    changed = Schemas(str(tmp_path))
    assert same.hash == Schemas().hash != changed.hash


def test_missing_schema_file(tmp_path):
    for name in SCHEMA_FILES:
        if name != "cancel.json":
            (tmp_path / name).write_bytes(file_bytes(name))
    with pytest.raises(RuntimeError, match="cancel.json is missing"):
        Schemas(str(tmp_path))
    with pytest.raises(RuntimeError, match="cannot read the schema directory"):
        Schemas(str(tmp_path / "nowhere"))


def test_registry_matches_ops_json(schemas):
    declared = load("ops.json")["ops"]
    assert set(REGISTRY) == set(declared) == set(schemas.ops)
    for name, op in REGISTRY.items():
        assert op.name == name
        assert op.tensors == declared[name]["tensors"], name
    assert set(schemas.args) == set(schemas.results) == set(declared)


# -- error paths ----------------------------------------------------------------------------------

def test_request_error_names_the_tensor_field(schemas):
    with pytest.raises(BadMessage) as ei:
        schemas.request(with_tensor(dtype="complex64"))
    assert "tensors[0].dtype" in ei.value.path
    assert "tensors[0].dtype" in str(ei.value) and "data" not in str(ei.value)


@pytest.mark.parametrize("header, path", [
    (request(id=-1), "id"),
    (request(id=2**32), "id"),
    (request(op="Echo"), "op"),
    (request(kind="rep"), "kind"),
    (request(instance=""), "instance"),
    (with_tensor(frame=0), "tensors[0].frame"),
    (with_tensor(shape=[2, -3]), "tensors[0].shape[1]"),
    (with_tensor(name=""), "tensors[0].name"),
])
def test_request_error_paths(schemas, header, path):
    with pytest.raises(BadMessage) as ei:
        schemas.request(header)
    assert ei.value.path == path


def test_args_error_path(schemas):
    with pytest.raises(InvalidArgument) as ei:
        schemas.args["sleep"]({"ms": "x"})
    assert ei.value.path == "body.ms"
    assert str(ei.value).startswith("body.ms ")
    with pytest.raises(InvalidArgument) as ei:
        schemas.args["sleep"]({"ms": -1})
    assert ei.value.path == "body.ms"
    with pytest.raises(InvalidArgument) as ei:
        schemas.args["sleep"]({})
    assert ei.value.path == "body" and "ms" in str(ei.value)
    schemas.args["sleep"]({"ms": 1.5})


def test_args_refuse_extra_properties(schemas):
    schemas.args["ping"]({})
    schemas.args["ping"]({"payload": {"anything": [1, "x", None]}})
    with pytest.raises(InvalidArgument) as ei:
        schemas.args["ping"]({"payload": 1, "extra": 2})
    assert ei.value.path == "body" and "extra" in str(ei.value)
    with pytest.raises(InvalidArgument):
        schemas.args["fail"]({"type": "SystemExit", "message": "x"})


def test_results_are_checked(schemas):
    schemas.results["ping"]({"pong": True})
    with pytest.raises(InvalidArgument) as ei:
        schemas.results["ping"]({"pong": False})
    assert ei.value.path == "result.pong"


def test_cancel_schema(schemas):
    schemas.cancel({"v": 1, "kind": "cancel", "id": 0, "instance": "a"})
    with pytest.raises(BadMessage) as ei:
        schemas.cancel({"v": 1, "kind": "cancel", "id": "3", "instance": "a"})
    assert ei.value.path == "id"


def test_op_pattern_is_anchored_like_ecmascript(schemas):
    """The driver's validator (ECMAScript regex) rejects "echo\\n"; so must the worker. Python's
    re with `$` would accept it (jsonschema does), fastjsonschema does not."""
    with pytest.raises(BadMessage) as ei:
        schemas.request(request(op="echo\n"))
    assert ei.value.path == "op"


# -- fastjsonschema vs jsonschema -------------------------------------------------------------

def without_tensor_field(key):
    h = request()
    del h["tensors"][0][key]
    return h


VALID = [
    request(),
    request(tensors=[]),
    request(id=0, op="a"),
    request(id=2**32 - 1, op="a" + "b" * 63),
    request(deadline_ms=12.5),
    request(deadline_ms=-3),
    request(body={"ms": 10, "nested": {"a": [1, 2]}}, op="sleep", tensors=[]),
    request(instance="i" * 64, extra_field=True),
    with_tensor(dtype="bfloat16", shape=[], nbytes=2),
    with_tensor(dtype="bool", shape=[0] * 16, nbytes=0, frame=1024, name="n" * 128),
    request(v=1.0),
]

INVALID = [
    request(v=2),
    request(v=True),
    request(kind=None),
    request(id=True),
    request(id=1.5),
    request(op="9lives"),
    request(op="a" + "b" * 64),
    request(instance="i" * 65),
    request(body=[]),
    request(deadline_ms="soon"),
    request(tensors={}),
    with_tensor(dtype="complex64"),
    with_tensor(shape=[1] * 17),
    with_tensor(frame=1025),
    with_tensor(nbytes=None),
    without_tensor_field("nbytes"),
    request(tensors=[request()["tensors"][0]] * 1025),
    "not a map",
]


@pytest.mark.parametrize("header, valid", [(h, True) for h in VALID] + [(h, False) for h in INVALID],
                         ids=[f"valid{i}" for i in range(len(VALID))] + [f"invalid{i}" for i in range(len(INVALID))])
def test_fast_and_reference_validators_agree(schemas, header, valid):
    reference = jsonschema.Draft7Validator(load("request.json")).is_valid(header)
    try:
        schemas.request(header)
        fast = True
    except BadMessage:
        fast = False
    assert fast == reference == valid
