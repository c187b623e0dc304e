"""The floor under a warm bvisor run in this design: its three Python processes, nothing else.

A warm run is a coordinator forked from the launcher server, the run's init made from the
coordinator, and the workload forked from the init, which then execs. This times exactly
that process structure (each parent waits for its child) in a process with the warm
server's image: every launcher module imported, the seccomp programs compiled, the heap
frozen. There are no namespaces, no confinement steps, no transcript and no host work.
Tuning the launcher's steps cannot bring a warm run below this figure, because this cost
comes from having three forked Python processes at all.

    python -E -s benchmarks/python_floor.py RUNS    # prints a JSON list of ms samples

``bench.py`` runs it as a row of its latency table.
"""

import gc
import json
import os
import sys

from bvisor.launcher import coordinator
from timing import timed

TRUE = "/bin/true"


def one_run() -> None:
    coordinator_pid = os.fork()
    if coordinator_pid == 0:
        init = os.fork()
        if init == 0:
            workload = os.fork()
            if workload == 0:
                os.execv(TRUE, [TRUE])
            os.waitpid(workload, 0)
            os._exit(0)
        os.waitpid(init, 0)
        os._exit(0)
    os.waitpid(coordinator_pid, 0)


def main() -> None:
    runs = int(sys.argv[1])
    coordinator.prepare()
    gc.freeze()
    samples = timed(one_run, runs, 5)
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
