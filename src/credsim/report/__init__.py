"""A self-contained HTML report on a run folder (``credsim report DIR``)."""

from credsim.report.html import REPORT_NAME, write_report

__all__ = ["REPORT_NAME", "write_report"]
