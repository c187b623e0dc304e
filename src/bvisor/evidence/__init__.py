"""The evidence store: sealed reports appended to an embedded, hash-chained SQLite file."""

from bvisor.evidence.store import (
    DEFAULT_STREAM_CAP,
    ChainVerdict,
    EvidenceStore,
    StoredReport,
    StoreError,
    StreamRef,
    default_store_path,
)

__all__ = [
    "DEFAULT_STREAM_CAP",
    "ChainVerdict",
    "EvidenceStore",
    "StoreError",
    "StoredReport",
    "StreamRef",
    "default_store_path",
]
