"""Benchmarks of notifier (issue 7): each `benchmarks/<name>.py` runs alone; see README.md."""
