"""Load benchmarks for the mock upstream; not shipped in the wheel, run with ``nox -s bench``."""
