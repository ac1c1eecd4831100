"""Crieur's benchmarks: `python -m bench` measures against bare baselines, writes a report."""

# Every figure is a ratio to a baseline measured in the same run, so that a shared, noisy machine
# moves both sides of the ratio together. docs/BENCHMARKS.md has the figures and the method.
