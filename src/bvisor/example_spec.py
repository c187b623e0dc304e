"""The spec ``bvisor spec --example`` prints: complete, valid, every section commented."""

EXAMPLE_TOML = """\
# A bvisor boundary spec. Run it with `bvisor run this.toml`; see what would be admitted
# on this host with `bvisor plan this.toml`. Unknown fields are errors, never ignored.

# What runs: an absolute exe path and its arguments (argv[0] is the exe path), started in
# cwd (a directory of the run's view; without cwd: yours if the view has it, else /).
[workload]
kind = "process"
exe = "/bin/sh"
args = ["-c", "echo hello from inside the boundary; cat /proc/self/net/dev"]
cwd = "/tmp"

# Capabilities: what the workload may (or may not) do. Each one is a requirement the host
# must really enforce, or the plan is refused before anything runs.

# No network: a new, empty network namespace (only a loopback device, no routes).
[[capabilities]]
kind = "network"
policy = { kind = "deny_all" }

# The environment is exactly this table; nothing is inherited, not even PATH.
# A value may also come from a secret lease: source = { kind = "secret_lease", ref = "env:NAME" }.
[[capabilities]]
kind = "environment"
[capabilities.policy]
kind = "exact"
entries = [
    { name = "PATH", source = { kind = "literal", value = "/usr/bin:/bin" } },
    { name = "LANG", source = { kind = "literal", value = "C.UTF-8" } },
]

# No host file descriptor survives into the workload beyond stdin/stdout/stderr.
[[capabilities]]
kind = "inherited_fds"
policy = { kind = "none" }

# Host controls: what bvisor does for the run.
[[controls]]
kind = "launch_workload"

# Capture stdout and stderr (counted, hashed, kept up to a cap, passed through live by the CLI).
[[controls]]
kind = "capture_streams"
streams = { stdout = true, stderr = true, stdin = false }

# Budgets: all seven dimensions, each a limit and the minimum guarantee asked for.
# "mediated" = watched and reported, never capped; "enforced" = a hard cap (refused at plan
# where this host cannot cap it). Units: wall/cpu in microseconds, memory/storage/network in
# bytes, process_count and handle_count as counts. 0 is a legitimate deny-all.
[budgets]
wall = { limit = 60_000_000, guarantee = "mediated" }
cpu = { limit = 60_000_000, guarantee = "mediated" }
resident_memory = { limit = 1_073_741_824, guarantee = "mediated" }
process_count = { limit = 64, guarantee = "mediated" }
handle_count = { limit = 1024, guarantee = "mediated" }
storage = { limit = 67_108_864, guarantee = "mediated" }
network = { limit = 0, guarantee = "mediated" }

# Evidence the report must be able to back, or the plan is refused.
[evidence]
require_captured_streams = true
require_exit_status = true
"""
