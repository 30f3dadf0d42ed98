"""Audit a run folder: who is recorded, listed and sanctioned, how wrongly, and at what cost.

``credsim audit DIR`` writes ``DIR/audit.json`` and prints a summary; definitions are in
``docs/audit.md``.
"""

from credsim.audit.metrics import compute
from credsim.audit.report import AUDIT_FILE, audit, flatten, summary, write_audit

__all__ = ["AUDIT_FILE", "audit", "compute", "flatten", "summary", "write_audit"]
