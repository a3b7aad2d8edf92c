"""Benchmarks of lisa-choreo that print ratios side by side (``python -m bench.run``).

Each module measures one thing; ``bench.run`` runs them all against one real broker, prints the
table (metric, value, target, pass/short) and writes the JSON report and the PNG plots.
"""
