"""Helpers of benchmarks/compression.py: codec operating points, distortion metrics, the harness, the report.

points.py      OperatingPoint and the third-party baselines (zstd, blosc2, parquet, sparse, SZ3, ZFP)
e2e_points.py  the hook where e2ecompress's own operating points are added
metrics.py     per-jet distortion and physics quantities, and their summary per operating point
harness.py     data scenarios, timing, the classifier, one pass of a codec over a scenario
report.py      results/compression.md and the rate-distortion PNGs
"""
