"""The tidings benchmark harness: ``python bench/run.py [--quick | --smoke]`` (see run.py)."""
