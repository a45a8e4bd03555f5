"""Evaluation sweeps: seeded test problems, tuned baselines, statistics, plots and tables."""
