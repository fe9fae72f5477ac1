"""Which odebench solver is which method of each peer library (framework-free data).

Names are odebench's (the tableau a method runs); values are the library's own.  Note
torchdiffeq's and diffrax's ``dopri8``/``Dopri8`` are Prince & Dormand's RK8(7)13M, odebench's
``rk8_13m`` (odebench's ``dopri8`` is Hairer's DOP853, which neither has).  A solver a peer
lacks is refused when the grid is planned.
"""

TORCHDIFFEQ = {"dopri5": "dopri5", "bosh3": "bosh3", "adaptive_heun": "adaptive_heun", "rk8_13m": "dopri8",
               "euler": "euler", "midpoint": "midpoint", "rk4": "rk4"}
TORCHODE = {"dopri5": "Dopri5", "tsit5": "Tsit5", "adaptive_heun": "Heun"}
DIFFRAX = {"dopri5": "Dopri5", "tsit5": "Tsit5", "bosh3": "Bosh3", "rk8_13m": "Dopri8", "euler": "Euler",
           "midpoint": "Midpoint", "adaptive_heun": "Heun"}
JAX_ODE = {"dopri5": "dopri5"}
