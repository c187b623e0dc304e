"""The evidence store: sealed reports appended to an embedded, hash-chained SQLite file.

The store's names load on first use: the host's lowering imports ``bvisor.evidence.home``
on every run, and the store's own imports (sqlite3, pathlib) cost ~10 ms it never needs.
"""

__all__ = [
    "DEFAULT_STREAM_CAP",
    "ChainVerdict",
    "EvidenceStore",
    "StoreError",
    "StoredReport",
    "StreamRef",
    "default_store_path",
]


def __getattr__(name: str):
    if name in __all__:
        from bvisor.evidence import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
