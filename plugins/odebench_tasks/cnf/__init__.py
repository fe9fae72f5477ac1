"""Continuous-normalizing-flow task: FFJORD's 2-D toy densities (see ``odebench_tasks.cnf.data``)."""
