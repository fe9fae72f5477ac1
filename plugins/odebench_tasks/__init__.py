"""Built-in tasks: benchmark problems for odebench (e.g. ``cnf``, continuous normalizing flows on 2-D toy densities)."""
