"""The spec reference is what the types generate, every schema definition and field is
described, and what the descriptions mark as never available is what the shipped backends'
support tables say."""

import inspect
import json
import re
from pathlib import Path

import pytest

from bvisor.backends import inert
from bvisor.backends.linux import ceiling as linux
from bvisor.backends.linux.budgets import linux_budget_profile
from bvisor.backends.linux.facts import parse_facts
from bvisor.backends.observed import uncapped_budget_profile
from bvisor.contract import Enforcement, EvidenceClaim, RequirementKind
from bvisor.contract.reference import ALWAYS_REFUSED, generate, main
from bvisor.contract.schemas import SCHEMAS, file_name
from bvisor.contract.schemas import generate as generate_schemas
from bvisor.contract.spec import _KIND_OF_POLICY, _KIND_OF_REQUIREMENT

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"
SHIPPED_FAMILIES = (linux.FAMILY, inert.FAMILY)


def test_the_committed_reference_is_current():
    assert REFERENCE.read_text() == generate(), "docs/spec-reference.md is stale: python -m bvisor.contract.reference > docs/spec-reference.md"


def test_the_module_prints_the_reference(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == generate()
    assert main(["extra"]) == 2


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_definition_and_field_is_described(name):
    """A field added to the contract without a description fails here (the `kind` tag of a
    union variant is described by its definition)."""
    definitions = json.loads(generate_schemas()[file_name(name)])["$defs"]
    undescribed = [d for d, schema in definitions.items() if not schema.get("description")]
    undescribed += [
        f"{d}.{field}"
        for d, schema in definitions.items()
        for field, prop in schema.get("properties", {}).items()
        if field != "kind" and not prop.get("description")
    ]
    assert undescribed == []


def test_every_field_of_the_spec_is_in_the_reference():
    definitions = json.loads(generate_schemas()[file_name("spec")])["$defs"]
    reference = generate()
    for name, schema in definitions.items():
        assert f"### `{name}`" in reference
        for field in schema.get("properties", {}):
            assert field == "kind" or f"| `{field}` |" in reference, f"{name}.{field}"


def _variant_kinds() -> dict[type, RequirementKind]:
    """Each type whose docstring speaks for one requirement kind: a capability or control,
    or the policy where the policy decides the kind."""
    variants = {**_KIND_OF_REQUIREMENT, **_KIND_OF_POLICY}
    assert set(variants.values()) == set(RequirementKind)
    return variants


def test_the_kinds_marked_always_refused_are_those_no_shipped_backend_supports():
    supported = {
        cell.kind for family in SHIPPED_FAMILIES for cell in family.cells if cell.verdict.enforcement is not Enforcement.Unsupported
    }
    marked = {kind for variant, kind in _variant_kinds().items() if inspect.cleandoc(variant.__doc__ or "").startswith(ALWAYS_REFUSED)}
    assert marked == set(RequirementKind) - supported
    assert RequirementKind.CommitArtifact in marked and RequirementKind.Filesystem not in marked


def test_the_reference_lists_every_always_refused_kind_up_front():
    listed = generate().split("## Always refused in this version", 1)[1].split("\n## ", 1)[0]
    for variant, kind in _variant_kinds().items():
        marked = inspect.cleandoc(variant.__doc__ or "").startswith(ALWAYS_REFUSED)
        assert (f"[`{variant.__name__}`]" in listed) == marked, kind


# Every mechanism a host can have, so the budget evidence below is the most any host backs.
_EVERY_BUDGET_MECHANISM = {
    "launcher.userns_pid": "ok",
    "launcher.userns_mount": "ok",
    "launcher.userns_netns": "ok",
    "cgroup.kill": "cgroup.kill",
    "cgroup.cpu": "v2",
    "cgroup.memory": "v2",
    "cgroup.pids": "v2",
}


def test_the_claims_described_as_never_backed_are_those_no_shipped_backend_backs():
    backed = {claim for family in SHIPPED_FAMILIES for cell in family.cells for claim in cell.verdict.evidence}
    for profile in (linux_budget_profile(parse_facts(_EVERY_BUDGET_MECHANISM)), uncapped_budget_profile()):
        backed |= {claim for _, availability in profile.items() for claim in availability.evidence}
    described = re.search(r"Never backed in this version: ([a-z_, ]+) \(", " ".join(EvidenceClaim.__doc__.split()))
    assert described is not None
    assert {EvidenceClaim(name.strip()) for name in described[1].split(",")} == set(EvidenceClaim) - backed
