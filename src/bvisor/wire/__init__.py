"""The one protocol between the host and the launcher: the place to learn it.

- ``frame``: how a launch plan travels (a sealed frame in a memfd, the fds and environment
  the one-shot launcher is started with, its exit codes).
- ``vocabulary``: every name the plan uses, each defined once: message fields, descriptor
  roles and kinds, launcher states, the primitives a schedule may name (with their phase and
  the target fields each applies) and the digests that bind an entry to those fields.
- ``attest``: the notes the launcher writes to say what it installed; the host requires the
  very same notes before a run counts as confined.
- ``warm``: the warm launcher server's request and reply messages.
- ``plan``: the host's typed msgspec view of the launch plan (the launcher never imports it;
  it validates the same maps by ``vocabulary`` alone).

Nothing is imported here, so the launcher pays only for the modules it names.
"""
