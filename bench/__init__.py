"""Benchmarks of cnncore (see bench/report.py for the numbers' conventions)."""
