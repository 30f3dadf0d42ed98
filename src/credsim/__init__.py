"""credsim: executable models of China's social credit systems, run over synthetic populations.

credsim simulates; it never scores real people. See README.md.

Public API (kept small; heavy modules load on first use)::

    import credsim
    result = credsim.run("suzhou", population=100_000, days=365, seed=1, out="runs/suzhou")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "run", "simulate", "load_scheme", "bundled_ids"]


def __getattr__(name: str) -> Any:
    if name in ("run", "simulate"):
        from credsim import api

        return getattr(api, name)
    if name in ("load_scheme", "bundled_ids"):
        from credsim.schemes import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'credsim' has no attribute {name!r}")
