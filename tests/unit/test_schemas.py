"""The committed JSON Schemas are what the types generate, and real documents — a sealed
report (signed or not), the example spec, an admitted plan — conform to them."""

import json
import re
from pathlib import Path

import msgspec
import pytest

from bvisor.contract import SpecError, decode_spec_json, decode_spec_toml, encode_report_json
from bvisor.contract.schemas import SCHEMAS, VERSIONS, file_name, generate
from bvisor.evidence.signing import HostSigningKey
from bvisor.example_spec import EXAMPLE_TOML
from bvisor.planner import BoundaryPlanner
from bvisor.runner import BoundaryRunner
from fake_backend import seed_spec

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"
REGENERATE = "regenerate with `python -m bvisor.contract.schemas docs/schemas`"


# --- the committed files ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(generate()))
def test_the_committed_schema_is_current(name):
    path = SCHEMA_DIR / name
    assert path.is_file(), f"docs/schemas/{name} is missing: {REGENERATE}"
    assert path.read_bytes() == generate()[name], f"docs/schemas/{name} is stale: {REGENERATE}"


def test_every_other_schema_file_is_a_superseded_version():
    current = generate()
    for path in SCHEMA_DIR.glob("*.schema.json"):
        if path.name in current:
            continue
        match = re.fullmatch(r"(\w+)\.v(\d+)\.schema\.json", path.name)
        assert match and match[1] in SCHEMAS, f"docs/schemas/{path.name} is not a bvisor schema"
        assert int(match[2]) < VERSIONS[match[1]], f"docs/schemas/{path.name} is newer than the types"


def test_the_files_are_sorted_indented_and_name_their_version():
    for name in SCHEMAS:
        data = generate()[file_name(name)]
        document = json.loads(data)
        assert data.decode() == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert document["$id"] == f"bvisor/{name}/v{VERSIONS[name]}"
        assert document["title"] == f"bvisor {name} v{VERSIONS[name]}"
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_report_schema_version_is_the_report_format_version(report_json):
    report_schema = json.loads(generate()[file_name("report")])
    assert "schema_version is the report format version" in report_schema["description"]
    assert json.loads(report_json)["schema_version"] == VERSIONS["report"]
    assert file_name("report") == f"report.v{VERSIONS['report']}.schema.json"


# --- a minimal checker (enough for the keywords msgspec emits) ---------------------------

CHECKED = {"$ref", "anyOf", "type", "enum", "pattern", "properties", "required", "additionalProperties", "items", "uniqueItems"}
# The bounds contract/validate.py enforces, stated in the schemas (see contract/annotate.py).
BOUNDS = {
    "minimum": lambda value, bound: not isinstance(value, (int, float)) or value >= bound,
    "maximum": lambda value, bound: not isinstance(value, (int, float)) or value <= bound,
    "minLength": lambda value, bound: not isinstance(value, str) or len(value) >= bound,
    "minItems": lambda value, bound: not isinstance(value, list) or len(value) >= bound,
    "maxItems": lambda value, bound: not isinstance(value, list) or len(value) <= bound,
}
CHECKED |= set(BOUNDS)
# Keywords that describe but never constrain. `discriminator` is an OpenAPI hint; `anyOf`
# does the choosing.
ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default", "discriminator"}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _keywords(schema: dict) -> set[str]:
    found = set(schema)
    for key, sub in schema.items():
        if key in ("properties", "$defs"):
            found |= set().union(*(_keywords(s) for s in sub.values()))
        elif key == "anyOf":
            found |= set().union(*(_keywords(s) for s in sub))
        elif key in ("items", "additionalProperties") and isinstance(sub, dict):
            found |= _keywords(sub)
    return found


def _resolve(root: dict, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = root
    for step in ref[2:].split("/"):
        node = node[step]
    return node


def _same(a, b) -> bool:
    # JSON's true is not 1, although Python's True == 1.
    return type(a) is type(b) and a == b


def problems(schema: dict, value, root: dict, path: str = "$") -> list[str]:
    found = []
    if "$ref" in schema:
        found += problems(_resolve(root, schema["$ref"]), value, root, path)
    if "anyOf" in schema and all(problems(s, value, root, path) for s in schema["anyOf"]):
        found.append(f"{path}: matches no alternative")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [*found, f"{path}: {value!r} is not {schema['type']}"]
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        found.append(f"{path}: {value!r} does not match {schema['pattern']}")
    found += [f"{path}: {value!r} breaks {keyword} {schema[keyword]}" for keyword, holds in BOUNDS.items() if keyword in schema and not holds(value, schema[keyword])]
    if isinstance(value, dict):
        found += [f"{path}: missing {name}" for name in schema.get("required", []) if name not in value]
        declared = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in declared:
                found += problems(declared[name], item, root, f"{path}.{name}")
            elif extra is False:
                found.append(f"{path}.{name}: not declared")
            elif isinstance(extra, dict):
                found += problems(extra, item, root, f"{path}.{name}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += problems(schema.get("items", {}), item, root, f"{path}[{index}]")
        if schema.get("uniqueItems") and len({json.dumps(i, sort_keys=True) for i in value}) != len(value):
            found.append(f"{path}: items are not unique")
    return found


def _schema(name: str) -> dict:
    return json.loads(generate()[file_name(name)])


def test_the_checker_knows_every_keyword_the_schemas_use():
    for name in SCHEMAS:
        unknown = _keywords(_schema(name)) - CHECKED - ANNOTATIONS
        assert not unknown, f"{name} schema uses {unknown}: teach this test's checker about them"


# --- real documents -----------------------------------------------------------------------


@pytest.fixture
def plan(registry):
    return BoundaryPlanner(registry).plan(seed_spec(), "fake")


@pytest.fixture
def report_json(registry, plan) -> bytes:
    return encode_report_json(BoundaryRunner(registry).run(plan))


def test_a_sealed_report_conforms(report_json):
    schema = _schema("report")
    assert problems(schema, json.loads(report_json), schema) == []


def test_a_signed_report_conforms(registry, plan, tmp_path):
    signed = HostSigningKey.load_or_create(tmp_path).sign(BoundaryRunner(registry).run(plan))
    schema = _schema("report")
    assert problems(schema, json.loads(encode_report_json(signed)), schema) == []


def test_the_example_spec_conforms():
    schema = _schema("spec")
    document = json.loads(msgspec.json.encode(decode_spec_toml(EXAMPLE_TOML)))
    assert problems(schema, document, schema) == []


def test_an_admitted_plan_conforms(plan):
    schema = _schema("plan")
    assert problems(schema, json.loads(msgspec.json.encode(plan)), schema) == []


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda d: d.pop("body_hash"), "missing body_hash"),
        (lambda d: d.update(extra=1), "$.extra: not declared"),
        (lambda d: d.update(outcome="fine"), "$.outcome: 'fine' not in"),
        (lambda d: d.update(plan_id="X" * 64), "$.plan_id: 'XXX"),
        (lambda d: d.update(started_unix_ns="1"), "$.started_unix_ns: '1' is not integer"),
        (lambda d: d.update(schema_version=True), "$.schema_version: True not in"),
        (lambda d: d["workload"].update(kind="container"), "$.workload.kind: 'container' not in"),
        (lambda d: d["admitted"][0]["requirement"].update(kind="x"), "$.admitted[0].requirement: matches no alternative"),
        (lambda d: d["budget"][0].update(limit=None), "$.budget[0].limit: None is not integer"),
        (lambda d: d.update(signature={"alg": "rsa"}), "$.signature.alg: 'rsa' not in"),
    ],
)
def test_the_checker_finds_what_strict_decoding_refuses(report_json, tamper, problem):
    """The conformance tests above are not vacuous."""
    schema = _schema("report")
    document = json.loads(report_json)
    tamper(document)
    found = problems(schema, document, schema)
    assert any(p.startswith(problem) or problem in p for p in found), found



_TOO_MANY_ENTRIES = [{"name": f"V{i}", "source": {"kind": "literal", "value": ""}} for i in range(257)]


@pytest.mark.parametrize(
    ("definition", "tamper", "problem"),
    [
        ("BoundarySpec", lambda d: d["budgets"]["wall"].update(limit=-1), "$.budgets.wall.limit: -1 breaks minimum 0"),
        ("BoundarySpec", lambda d: d["budgets"]["wall"].update(limit=365 * 24 * 3600 * 10**6 + 1), "$.budgets.wall.limit: 31536000000001 breaks maximum"),
        ("BoundarySpec", lambda d: d["budgets"]["process_count"].update(limit=2**22 + 1), "$.budgets.process_count.limit: 4194305 breaks maximum"),
        ("BoundarySpec", lambda d: d["workload"].update(exe="bin/sh"), "$.workload.exe: 'bin/sh' does not match"),
        ("Exact", lambda d: d["capabilities"][1]["policy"]["entries"][0].update(name="A=B"), "$.entries[0].name: 'A=B' does not match"),
        ("Exact", lambda d: d["capabilities"][1]["policy"].update(entries=_TOO_MANY_ENTRIES), "$.entries: [{"),
        ("Filesystem", lambda d: d["capabilities"].append({"kind": "filesystem", "access": "read", "roots": []}), "$.roots: [] breaks minItems 1"),
        ("NetDest", lambda d: d["capabilities"].append({"kind": "network", "policy": {"kind": "allow_list", "dests": [{"host": "h", "port": 0}]}}), "$.port: 0 breaks minimum 1"),
    ],
)
def test_a_spec_the_validator_refuses_breaks_the_schema_bounds(definition, tamper, problem):
    """The bounds in the spec schema are the validator's: a value out of them is refused by
    the decoder and flagged by the schema alike (checked against the definition it breaks;
    inside a union the checker only says that no alternative matches)."""
    schema = _schema("spec")
    document = json.loads(msgspec.json.encode(decode_spec_toml(EXAMPLE_TOML)))
    tamper(document)
    part = {
        "BoundarySpec": lambda: document,
        "Exact": lambda: document["capabilities"][1]["policy"],
        "Filesystem": lambda: document["capabilities"][-1],
        "NetDest": lambda: document["capabilities"][-1]["policy"]["dests"][0],
    }[definition]()
    found = problems(schema["$defs"][definition], part, schema)
    assert any(p.startswith(problem) for p in found), found
    with pytest.raises(SpecError):
        decode_spec_json(json.dumps(document).encode())
