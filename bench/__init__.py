"""Benchmarks for tabletlog: machine limits, tabletlog itself and peer systems (``make bench``).

Every figure is measured in the same run on the same machine, because the project's machines are
shared and noisy: only ratios taken within one run are meaningful.
"""
