"""The contract: enforcement lattice, requirement kinds, identities, budgets, support
tables, spec decoding and validation, report sealing."""

import itertools
import json
import re

import msgspec
import pytest

from bvisor.contract import (
    MAX_INPUT_BYTES,
    UNSUPPORTED,
    AdmittedBudget,
    BackendProfile,
    BackendProfileSnapshot,
    BoundaryReport,
    BoundaryReportBody,
    BudgetDimension,
    BudgetFinding,
    BudgetProfile,
    BudgetRequest,
    BudgetRequirements,
    BudgetUsage,
    Capability,
    CaptureRef,
    CeilingCell,
    Enforcement,
    EnvEntry,
    EnvPolicy,
    EnvSource,
    EvidenceClaim,
    EvidenceRequirements,
    ExitStatus,
    FdPolicy,
    FsAccess,
    HostControl,
    InputFileError,
    KillGuarantee,
    MinGuarantee,
    NetDest,
    NetPolicy,
    ObservedFact,
    Outcome,
    ProbeFact,
    ReportVerdict,
    RequirementKind,
    SpawnPolicy,
    SpecError,
    StdStreams,
    SupportMatrix,
    SupportVerdict,
    canonical_bytes,
    decode_report_json,
    decode_spec_json,
    decode_spec_toml,
    domain_digest,
    encode_report_json,
    fresh_attempt_id,
    load_spec,
    read_input_file,
    requirement_kind,
    seal,
    snapshot_drift,
    spec_problems,
    verify_report,
    verify_report_json,
    witness_budgets,
)
from fake_backend import UNLIMITED_MEDIATED, seed_spec

E = Enforcement


# --- enforcement lattice ---------------------------------------------------------------


def test_meet_is_commutative_associative_idempotent():
    for a, b, c in itertools.product(E, repeat=3):
        assert a.meet(b) is b.meet(a)
        assert a.meet(b).meet(c) is a.meet(b.meet(c))
        assert a.meet(a) is a


def test_unsupported_absorbs_and_enforced_is_identity():
    for a in E:
        assert a.meet(E.Unsupported) is E.Unsupported
        assert a.meet(E.Enforced) is a
    assert E.Enforced.meet(E.Mediated) is E.Mediated


def test_meet_is_the_weaker_by_strength():
    assert [e.strength for e in (E.Unsupported, E.Mediated, E.Enforced)] == [0, 1, 2]
    for a, b in itertools.product(E, repeat=2):
        assert a.meet(b).strength == min(a.strength, b.strength)


def test_satisfies_min_guarantee():
    assert E.Enforced.satisfies(MinGuarantee.Enforced)
    assert E.Enforced.satisfies(MinGuarantee.Mediated)
    assert E.Mediated.satisfies(MinGuarantee.Mediated)
    assert not E.Mediated.satisfies(MinGuarantee.Enforced)
    assert not E.Unsupported.satisfies(MinGuarantee.Mediated)


def test_support_verdict_meet_floors_enforcement_and_intersects_evidence():
    a = SupportVerdict(E.Enforced, frozenset({EvidenceClaim.ProcessTree, EvidenceClaim.TerminalOutcome}))
    b = SupportVerdict(E.Mediated, frozenset({EvidenceClaim.ProcessTree, EvidenceClaim.DeniedAttempts}))
    assert a.meet(b) == SupportVerdict(E.Mediated, frozenset({EvidenceClaim.ProcessTree}))
    assert a.meet(b) == b.meet(a)
    assert a.meet(a) == a
    assert a.meet(UNSUPPORTED) == UNSUPPORTED


def test_enum_values_are_snake_case():
    for enum_type in (E, MinGuarantee, Outcome, RequirementKind, EvidenceClaim, BudgetDimension, BudgetFinding, FsAccess):
        for member in enum_type:
            assert member.value == member.value.lower() and " " not in member.value
    assert len(RequirementKind) == 17 and len(EvidenceClaim) == 10 and len(Outcome) == 7


# --- requirement kinds -----------------------------------------------------------------

ONE_OF_EACH_KIND = {
    RequirementKind.Filesystem: Capability.Filesystem(access=FsAccess.Read, roots=["/data"], system_roots=True),
    RequirementKind.NetworkDenyAll: Capability.Network(policy=NetPolicy.DenyAll()),
    RequirementKind.NetworkAllowList: Capability.Network(policy=NetPolicy.AllowList([NetDest(host="example", port=443)])),
    RequirementKind.ChildSpawnDenyNewTasks: Capability.ChildSpawn(policy=SpawnPolicy.DenyNewTasks()),
    RequirementKind.ChildSpawnAllowThreads: Capability.ChildSpawn(policy=SpawnPolicy.AllowThreadsWithinBoundary()),
    RequirementKind.ChildSpawnAllowDescendants: Capability.ChildSpawn(policy=SpawnPolicy.AllowDescendantsWithinBoundary()),
    RequirementKind.Environment: Capability.Environment(policy=EnvPolicy.Exact([EnvEntry.literal("PATH", "/usr/bin")])),
    RequirementKind.InheritedFdsNone: Capability.InheritedFds(policy=FdPolicy.Nothing()),
    RequirementKind.InheritedFdsOnly: Capability.InheritedFds(policy=FdPolicy.Only([3, 4])),
    RequirementKind.LaunchWorkload: HostControl.LaunchWorkload(),
    RequirementKind.CaptureStreams: HostControl.CaptureStreams(streams=StdStreams.capture_out_err()),
    RequirementKind.TempRoot: HostControl.TempRoot(path="/tmp"),
    RequirementKind.ExposePath: HostControl.ExposePath(source="/srv/in", dest="/in", access=FsAccess.ReadWrite),
    RequirementKind.CommitArtifact: HostControl.CommitArtifact(),
    RequirementKind.DiscardArtifact: HostControl.DiscardArtifact(),
    RequirementKind.Kill: HostControl.Kill(guarantee=KillGuarantee.Atomic),
    RequirementKind.ListOutputs: HostControl.ListOutputs(),
}


def test_every_kind_has_exactly_the_requirements_that_map_to_it():
    assert set(ONE_OF_EACH_KIND) == set(RequirementKind)
    for kind, requirement in ONE_OF_EACH_KIND.items():
        assert requirement_kind(requirement) is kind


def test_requirement_kind_rejects_non_requirements():
    with pytest.raises(TypeError):
        requirement_kind(NetPolicy.DenyAll())


# --- identities ------------------------------------------------------------------------


def test_canonical_bytes_do_not_depend_on_set_construction_order():
    claims = list(EvidenceClaim)
    forward = BudgetRequest(limit=1, guarantee=MinGuarantee.Mediated, evidence=frozenset(claims))
    backward = BudgetRequest(limit=1, guarantee=MinGuarantee.Mediated, evidence=frozenset(reversed(claims)))
    assert canonical_bytes(forward) == canonical_bytes(backward)


def test_domain_digest_separates_domains_and_is_hex():
    value = NetDest(host="h", port=1)
    a, b = domain_digest("bvisor.a.v1", value), domain_digest("bvisor.b.v1", value)
    assert a != b
    assert len(a) == 64 and int(a, 16) >= 0
    assert domain_digest("bvisor.a.v1", value) == a


def test_attempt_ids_are_fresh_hex():
    first, second = fresh_attempt_id(), fresh_attempt_id()
    assert first != second
    assert all(len(x) == 64 and set(x) <= set("0123456789abcdef") for x in (first, second))


# --- budgets ---------------------------------------------------------------------------


def test_budget_requirements_uniform_get_and_canonical_items():
    budgets = BudgetRequirements.uniform(8, MinGuarantee.Mediated)
    assert [dimension for dimension, _ in budgets.items()] == list(BudgetDimension)
    assert [d.value for d in BudgetDimension] == [
        "wall", "cpu", "resident_memory", "process_count", "handle_count", "storage", "network",
    ]
    assert budgets.get(BudgetDimension.Storage) == BudgetRequest(limit=8, guarantee=MinGuarantee.Mediated)


def _admitted(limit: int, required: MinGuarantee) -> AdmittedBudget:
    return AdmittedBudget(
        dimension=BudgetDimension.Wall,
        limit=limit,
        required=required,
        supplied=required.enforcement,
        required_evidence=frozenset(),
        mechanism="clock",
    )


@pytest.mark.parametrize(
    ("required", "observed", "finding"),
    [
        (MinGuarantee.Enforced, None, BudgetFinding.ObservationUnavailable),
        (MinGuarantee.Enforced, 9, BudgetFinding.WithinLimit),
        (MinGuarantee.Enforced, 10, BudgetFinding.LimitReached),  # a counter the cap stopped
        (MinGuarantee.Enforced, 11, BudgetFinding.LimitReached),
        (MinGuarantee.Mediated, 0, BudgetFinding.WithinLimit),
        (MinGuarantee.Mediated, 10, BudgetFinding.WithinLimit),
        (MinGuarantee.Mediated, 11, BudgetFinding.ExceededMediated),
    ],
)
def test_witness_findings(required, observed, finding):
    [witness] = witness_budgets([_admitted(10, required)], BudgetUsage(wall=observed))
    assert witness.finding is finding
    assert witness.observed == observed
    assert (witness.limit, witness.required, witness.mechanism) == (10, required, "clock")


def test_witness_json_field_names_match_the_design():
    [witness] = witness_budgets([_admitted(10, MinGuarantee.Enforced)], BudgetUsage())
    assert list(json.loads(msgspec.json.encode(witness))) == [
        "dimension", "limit", "required", "supplied", "mechanism", "observed", "finding",
    ]


def test_capped_only_where_a_cap_was_asked():
    assert _admitted(1, MinGuarantee.Enforced).capped
    assert not _admitted(1, MinGuarantee.Mediated).capped


# --- support tables --------------------------------------------------------------------


def test_absent_ceiling_cell_is_unsupported_with_a_reason():
    profile = BackendProfile(backend="x", cells=[])
    cell = profile.ceiling(RequirementKind.Kill)
    assert cell.verdict == UNSUPPORTED
    assert cell.reason == "not implemented by this backend"
    assert cell.remediation


def test_a_cell_short_of_enforced_must_explain_itself():
    with pytest.raises(ValueError, match="needs a reason"):
        CeilingCell(kind=RequirementKind.Kill, verdict=SupportVerdict(E.Mediated), mechanism="killpg")
    with pytest.raises(msgspec.ValidationError, match="needs a reason"):
        msgspec.json.decode(
            b'{"kind":"kill","verdict":{"enforcement":"unsupported"},"mechanism":"none"}', type=CeilingCell
        )


def test_tables_are_normalized_so_equal_content_hashes_equally():
    cells = [
        CeilingCell(kind=kind, verdict=SupportVerdict(E.Enforced), mechanism=kind.value)
        for kind in (RequirementKind.Kill, RequirementKind.Filesystem)
    ]
    forward, backward = BackendProfile(backend="x", cells=cells), BackendProfile(backend="x", cells=cells[::-1])
    assert forward == backward and canonical_bytes(forward) == canonical_bytes(backward)
    assert forward.enforced_kinds() == [RequirementKind.Filesystem, RequirementKind.Kill]
    with pytest.raises(ValueError, match="two cells for kill"):
        BackendProfile(backend="x", cells=[cells[0], cells[0]])


def test_support_matrix_best_case_defaults_to_unsupported():
    matrix = SupportMatrix.of({RequirementKind.Kill: SupportVerdict(E.Mediated)})
    assert matrix.best_case(RequirementKind.Kill) == SupportVerdict(E.Mediated)
    assert matrix.best_case(RequirementKind.TempRoot) == UNSUPPORTED


def test_snapshot_facts_sorted_unique_and_drift_names_changes():
    budget = BudgetProfile.filled(UNLIMITED_MEDIATED)
    planned = BackendProfileSnapshot.of("x", {"userns": "1", "kernel": "6.1"}, budget)
    assert [fact.name for fact in planned.facts] == ["kernel", "userns"]
    assert planned.fact("userns") == "1" and planned.fact("missing") is None
    with pytest.raises(ValueError, match="appears twice"):
        BackendProfileSnapshot(backend="x", facts=[ProbeFact("a", "1"), ProbeFact("a", "2")], budget=budget)
    capped_wall = msgspec.structs.replace(budget, wall=msgspec.structs.replace(UNLIMITED_MEDIATED, enforcement=E.Enforced))
    probed = BackendProfileSnapshot.of("x", {"kernel": "6.2", "landlock": "4"}, capped_wall)
    assert snapshot_drift(planned, probed) == [
        "kernel: '6.1' -> '6.2'",
        "landlock: absent -> '4'",
        "userns: '1' -> absent",
        f"budget.wall: mediated {2**63 - 1} via fake_watch -> enforced {2**63 - 1} via fake_watch",
    ]
    assert snapshot_drift(planned, planned) == []


# --- spec decoding ---------------------------------------------------------------------

FULL_SPEC = seed_spec(
    capabilities=[
        ONE_OF_EACH_KIND[RequirementKind.Filesystem],
        ONE_OF_EACH_KIND[RequirementKind.NetworkAllowList],
        ONE_OF_EACH_KIND[RequirementKind.ChildSpawnAllowDescendants],
        ONE_OF_EACH_KIND[RequirementKind.Environment],
        ONE_OF_EACH_KIND[RequirementKind.InheritedFdsOnly],
    ],
    controls=[requirement for requirement in ONE_OF_EACH_KIND.values() if isinstance(requirement, HostControl.Any)],
    budgets=BudgetRequirements(
        wall=BudgetRequest(limit=1_000_000, guarantee=MinGuarantee.Enforced, evidence=frozenset({EvidenceClaim.ResourceUsage})),
        cpu=BudgetRequest(limit=500_000, guarantee=MinGuarantee.Mediated),
        resident_memory=BudgetRequest(limit=2**26, guarantee=MinGuarantee.Enforced),
        process_count=BudgetRequest(limit=4, guarantee=MinGuarantee.Enforced),
        handle_count=BudgetRequest(limit=64, guarantee=MinGuarantee.Mediated),
        storage=BudgetRequest(limit=0, guarantee=MinGuarantee.Mediated),
        network=BudgetRequest(limit=0, guarantee=MinGuarantee.Enforced),
    ),
    evidence=EvidenceRequirements(require_exit_status=True, claims=frozenset({EvidenceClaim.ProcessTree})),
)


def test_spec_json_round_trips():
    assert decode_spec_json(msgspec.json.encode(FULL_SPEC)) == FULL_SPEC


@pytest.mark.parametrize("kind", list(RequirementKind), ids=lambda kind: kind.value)
def test_every_requirement_variant_round_trips(kind):
    requirement = ONE_OF_EACH_KIND[kind]
    is_control = isinstance(requirement, HostControl.Any)
    spec = seed_spec(controls=[requirement]) if is_control else seed_spec(capabilities=[requirement])
    decoded = decode_spec_json(msgspec.json.encode(spec))
    assert decoded == spec
    assert requirement_kind(decoded.controls[0] if is_control else decoded.capabilities[0]) is kind


def test_spec_json_uses_kind_tags_and_snake_case():
    document = json.loads(msgspec.json.encode(seed_spec()))
    assert document["workload"] == {"kind": "process", "exe": "/bin/sh", "args": seed_spec().workload.args}
    assert document["capabilities"][0] == {"kind": "network", "policy": {"kind": "deny_all"}}
    assert document["budgets"]["resident_memory"] == {"limit": 8, "guarantee": "mediated", "evidence": []}


SEED_TOML = """
[workload]
kind = "process"
exe = "/bin/sh"
args = ["-c", "awk 'NR>2 && NF {print $1}' /proc/self/net/dev | wc -l; exit 0"]

[[capabilities]]
kind = "network"
policy = { kind = "deny_all" }

[[capabilities]]
kind = "environment"
policy = { kind = "exact", entries = [] }

[[controls]]
kind = "launch_workload"

[[controls]]
kind = "capture_streams"
streams = { stdout = true, stderr = true, stdin = false }

[budgets]
wall = { limit = 8, guarantee = "mediated" }
cpu = { limit = 8, guarantee = "mediated" }
resident_memory = { limit = 8, guarantee = "mediated" }
process_count = { limit = 8, guarantee = "mediated" }
handle_count = { limit = 8, guarantee = "mediated" }
storage = { limit = 8, guarantee = "mediated" }
network = { limit = 8, guarantee = "mediated" }
"""


def test_toml_spec_decodes_to_the_seed_spec():
    assert decode_spec_toml(SEED_TOML) == seed_spec()


def _json_with(mutate) -> bytes:
    document = json.loads(msgspec.json.encode(seed_spec()))
    mutate(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        (lambda d: d["workload"].update(shell=True), "$.workload", "unknown field `shell`"),
        (lambda d: d["workload"].update(exe=7), "$.workload.exe", "Expected `str`, got `int`"),
        (lambda d: d["workload"].pop("exe"), "$.workload", "missing required field `exe`"),
        (lambda d: d["capabilities"][0]["policy"].update(kind="allow_all"), "$.capabilities[0].policy.kind", "Invalid value 'allow_all'"),
        (lambda d: d["budgets"]["cpu"].update(guarantee="unsupported"), "$.budgets.cpu.guarantee", "Invalid enum value 'unsupported'"),
        (lambda d: d["budgets"].pop("network"), "$.budgets", "missing required field `network`"),
        (lambda d: d["workload"].update(exe="bin/sh"), "$.workload.exe", "expected absolute path"),
        (lambda d: d["budgets"]["wall"].update(limit=-1), "$.budgets.wall.limit", "got -1"),
    ],
)
def test_strict_json_errors_name_the_field(mutate, path, message):
    with pytest.raises(SpecError) as raised:
        decode_spec_json(_json_with(mutate))
    assert raised.value.field_path == path
    assert message in raised.value.message
    text = str(raised.value)
    assert text.startswith(f"spec: {path}: ") and "\n" not in text


def test_toml_errors_name_the_field_too():
    with pytest.raises(SpecError) as raised:
        decode_spec_toml(SEED_TOML.replace('exe = "/bin/sh"', 'exe = "/bin/sh"\nuser = "root"'))
    assert str(raised.value) == "spec: $.workload: Object contains unknown field `user`"
    with pytest.raises(SpecError, match=r"^spec: \$: invalid TOML"):
        decode_spec_toml("[workload")


def test_malformed_json_is_a_spec_error_at_the_root():
    with pytest.raises(SpecError, match=r"^spec: \$: invalid JSON"):
        decode_spec_json(b"{")


def test_load_spec_chooses_by_extension(tmp_path):
    (tmp_path / "s.toml").write_text(SEED_TOML)
    (tmp_path / "s.json").write_bytes(msgspec.json.encode(seed_spec()))
    (tmp_path / "s.yaml").write_text("x")
    assert load_spec(tmp_path / "s.toml") == load_spec(str(tmp_path / "s.json")) == seed_spec()
    with pytest.raises(SpecError, match=r"\*\.toml or \*\.json"):
        load_spec(tmp_path / "s.yaml")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.json")


def test_read_input_file_reads_a_regular_file_up_to_the_limit(tmp_path):
    (tmp_path / "exact.json").write_bytes(b"x" * 16)
    (tmp_path / "empty.json").write_bytes(b"")
    assert read_input_file(tmp_path / "exact.json", limit=16) == b"x" * 16
    assert read_input_file(tmp_path / "empty.json", limit=16) == b""


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: (d / "big.json").write_bytes(b"x" * 17), "17 bytes, over the 16-byte limit"),
        (lambda d: (d / "big.json").mkdir(), "a directory, not a regular file"),
        (lambda d: (d / "big.json").symlink_to("/dev/zero"), "a character device, not a regular file"),
        # fstat says 0 bytes for /proc files: only the bounded read catches this one.
        (lambda d: (d / "big.json").symlink_to("/proc/self/maps"), "over the 16-byte limit"),
    ],
)
def test_read_input_file_refuses_what_is_not_a_small_regular_file(tmp_path, make, why):
    make(tmp_path)
    with pytest.raises(InputFileError, match=f"^{re.escape(repr(str(tmp_path / 'big.json')))} is .*{why}$"):
        read_input_file(tmp_path / "big.json", limit=16)


def test_load_spec_reads_through_read_input_file(tmp_path):
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    with pytest.raises(SpecError, match=r"^spec: \$: .*zero.toml' is a character device, not a regular file$"):
        load_spec(tmp_path / "zero.toml")
    (tmp_path / "big.json").write_bytes(b" " * (MAX_INPUT_BYTES + 1))
    with pytest.raises(SpecError, match=f"is {MAX_INPUT_BYTES + 1} bytes, over the {MAX_INPUT_BYTES}-byte limit$"):
        load_spec(tmp_path / "big.json")


# --- validation ------------------------------------------------------------------------


def _env(*entries) -> list:
    return [Capability.Environment(policy=EnvPolicy.Exact(list(entries)))]


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (seed_spec(capabilities=_env(EnvEntry.literal("", "x"))), "capabilities[0].policy.entries[0].name", "must not be empty"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A=B", "x"))), "capabilities[0].policy.entries[0].name", "must not contain '='"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A\0", "x"))), "capabilities[0].policy.entries[0].name", "NUL"),
        (seed_spec(capabilities=_env(EnvEntry.literal("X\nY", "1"))), "capabilities[0].policy.entries[0].name", "'X\\nY' must not contain '=', NUL or a control character"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A\x1b[31m", "x"))), "capabilities[0].policy.entries[0].name", "control character"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A\x7f", "x"))), "capabilities[0].policy.entries[0].name", "control character"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A\x85", "x"))), "capabilities[0].policy.entries[0].name", "control character"),
        (seed_spec(capabilities=_env(EnvEntry.lease("A\tB", "env:HOME"))), "capabilities[0].policy.entries[0].name", "control character"),
        (seed_spec(capabilities=[Capability.InheritedFds(policy=FdPolicy.Nothing()), *_env(EnvEntry.literal("OK", "1"), EnvEntry.literal("\rB", "x"))]), "capabilities[1].policy.entries[1].name", "control character"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A", "1"), EnvEntry.lease("A", "vault:a"))), "capabilities[0].policy.entries[1].name", "duplicate name 'A'"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A", "x\0y"))), "capabilities[0].policy.entries[0].source.value", "NUL"),
        (seed_spec(capabilities=_env(EnvEntry.lease("A", ""))), "capabilities[0].policy.entries[0].source.ref", "non-empty"),
        (seed_spec(capabilities=_env(*(EnvEntry.literal(f"V{i}", "") for i in range(257)))), "capabilities[0].policy.entries", "257 entries exceed the limit of 256"),
        (seed_spec(capabilities=_env(EnvEntry.literal("A", "x" * 65536), EnvEntry.literal("B", "x" * 65536))), "capabilities[0].policy.entries", "bytes exceed the limit of 131072"),
        (seed_spec(capabilities=_env(EnvEntry.literal("BIG", "x" * 131068))), "capabilities[0].policy.entries[0].source.value", "per string"),
        (seed_spec(args=["-c", "a\0b"]), "workload.args[1]", "NUL"),
        (msgspec.structs.replace(seed_spec(), workload=msgspec.structs.replace(seed_spec().workload, exe="sh")), "workload.exe", "expected absolute path"),
        (seed_spec(capabilities=[Capability.Filesystem(access=FsAccess.Read, roots=[])]), "capabilities[0].roots", "at least one root"),
        (seed_spec(capabilities=[Capability.Filesystem(access=FsAccess.Read, roots=["/ok", "rel"])]), "capabilities[0].roots[1]", "absolute"),
        (seed_spec(policy=NetPolicy.AllowList([NetDest(host="h", port=0)])), "capabilities[0].policy.dests[0].port", "1..65535"),
        (seed_spec(policy=NetPolicy.AllowList([NetDest(host="", port=1)])), "capabilities[0].policy.dests[0].host", "non-empty"),
        (seed_spec(capabilities=[Capability.InheritedFds(policy=FdPolicy.Only([3, -1]))]), "capabilities[0].policy.fds[1]", ">= 0"),
        (seed_spec(capabilities=[Capability.InheritedFds(policy=FdPolicy.Only([3, 3]))]), "capabilities[0].policy.fds[1]", "listed twice"),
        (seed_spec(controls=[HostControl.ExposePath(source="/a", dest="b", access=FsAccess.Read)]), "controls[0].dest", "absolute"),
        (seed_spec(controls=[HostControl.TempRoot(path="tmp")]), "controls[0].path", "absolute"),
        (seed_spec(capabilities=[Capability.Network(policy=NetPolicy.DenyAll()), Capability.Network(policy=NetPolicy.AllowList([]))]), "capabilities[1]", "a second network (the first is capabilities[0])"),
        (seed_spec(controls=[HostControl.LaunchWorkload(), HostControl.LaunchWorkload()]), "controls[1]", "a second launch_workload"),
        (seed_spec(budgets=BudgetRequirements.uniform(-1, MinGuarantee.Mediated)), "budgets.wall.limit", "got -1"),
        (seed_spec(budgets=msgspec.structs.replace(BudgetRequirements.uniform(8, MinGuarantee.Mediated), cpu=BudgetRequest(limit=10**20, guarantee=MinGuarantee.Mediated))), "budgets.cpu.limit", "365 days"),
        (seed_spec(budgets=BudgetRequirements.uniform("8", MinGuarantee.Mediated)), "budgets.wall.limit", "Expected `int`, got `str`"),
        (seed_spec(controls=[Capability.Network(policy=NetPolicy.DenyAll())]), "controls[0].kind", "Invalid value 'network'"),
    ],
)
def test_spec_problems_name_the_field(spec, field, message):
    problems = spec_problems(spec)
    assert problems, "expected a problem"
    assert problems[0].field == field
    assert message in problems[0].message


def test_acceptable_specs_have_no_problems():
    assert spec_problems(seed_spec()) == []
    assert spec_problems(FULL_SPEC) == []
    repeated = seed_spec(
        capabilities=[
            Capability.Filesystem(access=FsAccess.Read, roots=["/a"]),
            Capability.Filesystem(access=FsAccess.Write, roots=["/b"]),
        ],
        controls=[
            HostControl.ExposePath(source="/x", dest="/x", access=FsAccess.Read),
            HostControl.ExposePath(source="/y", dest="/y", access=FsAccess.Read),
        ],
    )
    assert spec_problems(repeated) == []
    at_limits = seed_spec(capabilities=_env(*(EnvEntry.literal(f"V{i:03}", "") for i in range(256))))
    assert spec_problems(at_limits) == []
    # Only names are held to printable characters: a value may span lines; a name may be non-ASCII.
    printable_names = seed_spec(capabilities=_env(EnvEntry.literal("Ä_1 x", "line1\nline2\x1b"), EnvEntry.lease("K", "env:HOME")))
    assert spec_problems(printable_names) == []


def test_required_claims_include_the_flags():
    evidence = EvidenceRequirements(
        require_captured_streams=True, require_exit_status=True, claims=frozenset({EvidenceClaim.ProcessTree})
    )
    assert evidence.required_claims() == {
        EvidenceClaim.CapturedStreams, EvidenceClaim.TerminalOutcome, EvidenceClaim.ProcessTree,
    }
    assert EvidenceRequirements().required_claims() == frozenset()


def test_env_entry_constructors():
    assert EnvEntry.literal("A", "1") == EnvEntry(name="A", source=EnvSource.Literal("1"))
    assert EnvEntry.lease("T", "vault:t") == EnvEntry(name="T", source=EnvSource.SecretLease("vault:t"))


# --- reports ---------------------------------------------------------------------------


def test_exit_status_is_a_code_or_a_signal():
    assert msgspec.json.encode(ExitStatus(code=7)) == b'{"code":7}'
    assert msgspec.json.encode(ExitStatus(signal=15)) == b'{"signal":15}'
    for bad in ({}, {"code": 1, "signal": 2}):
        with pytest.raises(ValueError):
            ExitStatus(**bad)


def _report() -> BoundaryReport:
    body = BoundaryReportBody(
        attempt_id="a" * 64,
        plan_id="b" * 64,
        backend="fake",
        profile_hash="c" * 64,
        admission_hash="d" * 64,
        profile=BackendProfileSnapshot.of("fake", {"kernel": "6.1"}, BudgetProfile.filled(UNLIMITED_MEDIATED)),
        workload=seed_spec().workload,
        outcome=Outcome.Failed,
        exit=ExitStatus(code=7),
        admitted=[],
        observed=[ObservedFact("stream_captured", "stdout=3")],
        budget=witness_budgets([_admitted(10, MinGuarantee.Enforced)], BudgetUsage(wall=3)),
        captured=[CaptureRef(stream="stdout", bytes=3, kept=3, truncated=False, blake3="e" * 64)],
        started_unix_ns=10,
        finished_unix_ns=20,
    )
    return seal(body)


def test_sealed_report_verifies_and_any_change_breaks_the_seal():
    report = _report()
    assert verify_report(report)
    changed = msgspec.structs.replace(report, body=msgspec.structs.replace(report.body, exit=ExitStatus(code=0)))
    assert not verify_report(changed)


def test_report_json_is_flat_with_the_design_fields():
    document = json.loads(encode_report_json(_report()))
    assert document["outcome"] == "failed"
    assert document["exit"] == {"code": 7}
    assert document["observed"] == [{"kind": "stream_captured", "detail": "stdout=3"}]
    assert document["plan_id"] == "b" * 64
    assert document["body_hash"] == _report().body_hash
    assert list(document)[-1] == "body_hash"
    assert document["budget"][0]["finding"] == "within_limit"
    assert "body" not in document


def test_report_json_round_trips_and_verifies():
    data = encode_report_json(_report())
    assert decode_report_json(data) == _report()
    verdict = verify_report_json(data)
    assert isinstance(verdict, ReportVerdict.Valid) and verdict.report == _report()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.update(outcome="completed"),
        lambda d: d["exit"].update(code=0),
        lambda d: d["observed"].append({"kind": "x", "detail": "y"}),
        lambda d: d.update(body_hash="0" * 64),
        lambda d: d.update(extra=1),
        lambda d: d.update(outcome="fine"),
        lambda d: d.pop("plan_id"),
    ],
)
def test_one_changed_field_is_tampering(tamper):
    document = json.loads(encode_report_json(_report()))
    tamper(document)
    assert isinstance(verify_report_json(json.dumps(document).encode()), ReportVerdict.Tampered)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"refused": {"requirement": "x"}}', msgspec.json.encode(seed_spec())])
def test_documents_that_are_not_reports(data):
    assert isinstance(verify_report_json(data), ReportVerdict.NotAReport)


def test_spec_problems_come_in_field_order():
    spec = seed_spec(
        args=["a\0"],
        capabilities=[
            Capability.Filesystem(access=FsAccess.Read, roots=[]),
            Capability.Network(policy=NetPolicy.DenyAll()),
            Capability.Network(policy=NetPolicy.DenyAll()),
        ],
        controls=[HostControl.TempRoot(path="tmp")],
        budgets=BudgetRequirements.uniform(-1, MinGuarantee.Mediated),
    )
    assert [problem.field for problem in spec_problems(spec)] == [
        "workload.args[0]",
        "capabilities[0].roots",
        "capabilities[2]",
        "controls[0].path",
        *(f"budgets.{dimension.value}.limit" for dimension in BudgetDimension),
    ]


def test_an_unset_cwd_is_left_out_of_the_canonical_bytes_so_older_reports_still_verify():
    from bvisor.contract.spec import Workload

    plain = canonical_bytes(Workload.Process(exe="/bin/true"))
    assert b"cwd" not in plain
    assert b"cwd" in canonical_bytes(Workload.Process(exe="/bin/true", cwd="/tmp"))
    assert msgspec.msgpack.decode(plain, type=Workload.Process).cwd is msgspec.UNSET
