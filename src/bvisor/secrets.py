"""Secret leases: an environment value named by reference, resolved in the host just before
launch. Plans and reports carry only the reference; a resolver that cannot answer fails
closed (the run does not start), and its error never contains a value."""

import os


class SecretUnavailable(Exception):
    def __init__(self, ref: str, why: str):
        super().__init__(f"secret {ref!r} unavailable: {why}")
        self.ref = ref


class NoSecrets:
    """The default: every lease fails closed."""

    def resolve(self, ref: str) -> str:
        raise SecretUnavailable(ref, "no secret resolver is configured")


class MapSecretResolver:
    """An in-memory table, for tests and simple embedding."""

    def __init__(self, table: dict):
        self._table = dict(table)

    def resolve(self, ref: str) -> str:
        try:
            return self._table[ref]
        except KeyError:
            raise SecretUnavailable(ref, "unknown reference") from None


class EnvSecretResolver:
    """``env:NAME`` reads the caller's own environment variable NAME (the CLI's resolver)."""

    def resolve(self, ref: str) -> str:
        scheme, _, name = ref.partition(":")
        if scheme != "env" or not name:
            raise SecretUnavailable(ref, "expected a reference of the form env:NAME")
        value = os.environ.get(name)
        if value is None:
            raise SecretUnavailable(ref, f"the caller's environment has no {name}")
        return value
