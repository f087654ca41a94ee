"""elcrec.state: the RocksDB store of user sequences and consumed offsets.

Owner side (one process per partition): :class:`SequenceStore` →
:class:`PartitionStore` → :class:`Transaction`. Readers in other processes:
:class:`SequenceReader`. The key layout is documented in
:mod:`elcrec.state.store`.
"""

from elcrec.state.exceptions import (
    PartitionLockedError,
    StateClosedError,
    StateCorruptError,
    StateError,
)
from elcrec.state.reader import SequenceReader
from elcrec.state.store import (
    CommitResult,
    Outcome,
    PartitionStore,
    Sequence,
    SequenceStore,
    StoreOptions,
    Transaction,
    partition_path,
)

__all__ = [
    "CommitResult",
    "Outcome",
    "PartitionLockedError",
    "PartitionStore",
    "Sequence",
    "SequenceReader",
    "SequenceStore",
    "StateClosedError",
    "StateCorruptError",
    "StateError",
    "StoreOptions",
    "Transaction",
    "partition_path",
]
