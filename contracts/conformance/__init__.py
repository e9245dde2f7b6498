"""Property-based conformance checks: one spec, any target (in-process mock, URL, live)."""

from contracts.conformance.runner import CHECK_NAMES, Failure, Outcome, Report, run_checks
from contracts.conformance.targets import TargetError

__all__ = ["CHECK_NAMES", "Failure", "Outcome", "Report", "TargetError", "run_checks"]
