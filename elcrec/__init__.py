"""elcrec: a streaming recommender that learns users' intents continuously.

Click events arrive on Kafka, ingest consumers keep each user's recent sequence
in RocksDB, and a trainer updates an ELCRec model (a transformer sequence encoder
with learnable intent centers) mini-batch by mini-batch, publishing versioned
models and intent-drift metrics.

Package layout: ``elcrec`` holds the model, offline training and the CLI;
``elcrec.stream`` (folder ``stream/``) the Kafka wire format and clients;
``elcrec.state`` (``state/``) the RocksDB state store; ``elcrec.consumers``
(``consumers/``) the long-running consumer processes.
"""

import logging

__version__ = "0.1.0"

# Library code logs under "elcrec.*"; the CLI decides where it goes.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # Lazy so that "import elcrec" stays cheap (no torch) for the CLI and tools.
    if name == "Recommender":
        from elcrec.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'elcrec' has no attribute {name!r}")
