"""odebench's built-in explicit Runge-Kutta solvers, registered as Butcher tableaus.

The tableaus are plain data (``odebench_solvers.tableaus``); any framework plugin that
runs a ``odebench.specs.Tableau`` runs all of them.
"""

from odebench.hookspecs import hookimpl

from .tableaus import ALL_TABLEAUS


@hookimpl
def odebench_register_solvers(register):
    for tableau in ALL_TABLEAUS:
        register(tableau)
