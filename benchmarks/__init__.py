"""Benchmarks of notifier: each `benchmarks/<name>.py` runs alone; see README.md."""
