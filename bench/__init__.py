"""Benchmarks; run each as a module, e.g. `.venv/bin/python -m bench.case_intake`."""
