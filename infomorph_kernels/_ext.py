"""Optional loading of the compiled engines (``_cpu``, ``_cuda``).

Importing the package never needs them: a backend asks here, once, and gets the module or None
plus the import error to show in its ``unavailable_reason()``.
"""
from __future__ import annotations

import importlib
from typing import Dict, Optional, Tuple

_CACHE: Dict[str, Tuple[Optional[object], Optional[str]]] = {}


def load(name: str) -> Tuple[Optional[object], Optional[str]]:
    """(module, None) if ``infomorph_kernels.<name>`` imports, else (None, the import error)."""
    if name not in _CACHE:
        try:
            _CACHE[name] = (importlib.import_module(f"infomorph_kernels.{name}"), None)
        except ImportError as e:
            _CACHE[name] = (None, str(e))
    return _CACHE[name]
