"""``detest``: solver accuracy and cost on the DETEST problems with closed-form solutions.

Nothing is trained: each cell solves the selected problems (``problems.py``) with one backend,
solver and tolerance, and records the largest absolute error against the closed forms, the NFE
and the forward time per solve, the points of a work-precision diagram (``odebench report``).
"""
