"""Hydra sweeper plugin `hydra/sweeper=l2o_units`: launch an explicit list of jobs (l2o-study units)."""
