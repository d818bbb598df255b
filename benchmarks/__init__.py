"""Benchmark harness for greentic_session: `python -m benchmarks [--quick] [--redis-url URL]`.

Not part of the installed package. See docs/benchmarks.md for what each row means.
"""
