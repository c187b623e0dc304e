"""JSON Schemas of the three documents bvisor reads and writes, generated from the types.

The committed copies live in ``docs/schemas/``; regenerate them with
``python -m bvisor.contract.schemas docs/schemas``. A breaking change to a document bumps
its schema file's version (and, for a plan or report, its ``schema_version`` field).
"""

import inspect
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec

from bvisor.contract.decode import ReportDocument
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.report import BoundaryReportBody
from bvisor.contract.spec import BoundarySpec

# A JSON Schema, or a node of one, as msgspec builds it: JSON of any shape below the top.
JsonSchema = dict[str, Any]

# The report's schema is of its JSON document (every body field at top level, then
# body_hash and an optional signature), not of the nested in-memory BoundaryReport.
SCHEMAS = MappingProxyType({"spec": BoundarySpec, "plan": BoundaryPlan, "report": ReportDocument})


def _schema_version(struct: type[msgspec.Struct]) -> int:
    [field] = [field for field in msgspec.structs.fields(struct) if field.name == "schema_version"]
    version: int = field.default
    return version


# A spec carries no version field; plans and reports carry theirs, and the file follows it.
VERSIONS = MappingProxyType(
    {"spec": 1, "plan": _schema_version(BoundaryPlan), "report": _schema_version(BoundaryReportBody)}
)

_DESCRIPTIONS = MappingProxyType(
    {
        "spec": "A bvisor boundary spec (a .json spec file; a .toml spec has the same shape).",
        "plan": "An admitted bvisor plan, as `bvisor plan --json` prints it. "
        "schema_version is the plan format version.",
        "report": "A sealed bvisor report, as `bvisor run --report` writes it. "
        "schema_version is the report format version: a breaking change bumps it together "
        "with this schema's version.",
    }
)


def file_name(name: str) -> str:
    return f"{name}.v{VERSIONS[name]}.schema.json"


def document(name: str) -> JsonSchema:
    """The schema of one document, fields in declaration order (the files sort them)."""
    version = VERSIONS[name]
    return {
        **_dedented(msgspec.json.schema(SCHEMAS[name])),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"bvisor/{name}/v{version}",
        "title": f"bvisor {name} v{version}",
        "description": _DESCRIPTIONS[name],
    }


def _dedented(node: Any) -> Any:
    """Descriptions are the types' docstrings, indentation and all; dedent them so the
    files read well."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value) if key == "description" and isinstance(value, str) else _dedented(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_dedented(item) for item in node]
    return node


def _pretty(document: JsonSchema) -> bytes:
    # Sorted keys and a fixed indent: the same types always give the same bytes.
    return msgspec.json.format(msgspec.json.encode(document, order="sorted"), indent=2) + b"\n"


def generate() -> dict[str, bytes]:
    return {file_name(name): _pretty(document(name)) for name in SCHEMAS}


def write(directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in generate().items():
        (directory / name).write_bytes(data)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m bvisor.contract.schemas DIRECTORY\n")
        return 2
    write(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
