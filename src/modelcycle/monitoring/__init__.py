"""Monitoring: data and prediction drift between a reference and current data, multivariate
drift, and classifier performance estimated without labels.

`modelcycle.monitoring.service.DriftService` is the entry point; the modules below it hold
one idea each: column kinds (`kinds`), where tables come from (`sources`), reference
sketches (`sketches`), the statistical tests (`stattests`, `wasserstein`, `domain`), the
per-column comparison and the dataset verdict (`drift`), PCA reconstruction error
(`multivariate`), confidence-based performance estimation (`estimate`) and the HTML
report (`report`, `plots`).
"""
