"""Continuous-normalizing-flow task: FFJORD's 2-D toy densities (see :mod:`odebench_tasks.cnf.data`)."""
