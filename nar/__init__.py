"""NAR: neural action representations that generalise across animals.

The public API, importable from `nar` itself:
  load_run(workdir)              a trained run, read back from its folder
  embed(run, dataset, out_dir)   every window of every trial, one file per trial
  read_embeddings(out_dir)       an embedding folder, as one table
  standardise_embeddings(table)  that table, every animal's embeddings standardised on its own
  NAREstimator                   fit / transform on in-memory arrays (sklearn-style)

They are imported on first use, so that `import nar.data...` stays light.
"""

import importlib

from nar.version import __version__

_PUBLIC = {
    "load_run": "nar.run", "Run": "nar.run", "embed": "nar.embedding",
    "read_embeddings": "nar.embedding", "standardise_embeddings": "nar.embedding",
    "NAREstimator": "nar.estimator",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
  if name in _PUBLIC:
    return getattr(importlib.import_module(_PUBLIC[name]), name)
  raise AttributeError(f"module 'nar' has no attribute {name!r}")
