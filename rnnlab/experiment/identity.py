"""Run identity: the canonical JSON of a configuration (sorted keys, no whitespace, floats at 12
significant digits) and ``run_id``, 12 hex characters of its sha256. ``Experiment.fingerprint``
hashes the same canonical form.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rnnlab.experiment.schema import RunConfig, normalise_float

# --------------------------------------------------------------------------- canonical form


def _normalise(obj: Any) -> Any:
    if isinstance(obj, float):
        return normalise_float(obj)
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_normalise(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats at 12 significant digits: the text that gets hashed."""
    return _dumps(_normalise(obj))


def run_id(config: RunConfig) -> str:
    """12 hex characters of the sha256 of the run's canonical JSON (seed included)."""
    # A RunConfig's floats are normalised by validation, so canonical_json's pass is not needed.
    return hashlib.sha256(_dumps(config.to_dict()).encode()).hexdigest()[:12]
