"""Butcher tableaus of the explicit Runge-Kutta methods shipped with odebench.

Every coefficient is a Python float.  Rational coefficients are written as the exact
fraction (``3 / 40``), which Python evaluates to the correctly rounded double.  Tsitouras'
coefficients are not rational: the paper prints them to ~16 digits; here they are written with
~23 significant digits of the high-precision solution of his order conditions (the values
used by OrdinaryDiffEq.jl and diffrax), more than a double holds, so that each literal rounds
to the nearest double and the order conditions hold to roundoff.

Conventions (see ``odebench.specs.Tableau``): ``A`` is strictly lower triangular and
given row by row (row i holds a_i0 .. a_i(i-1)); ``b_err = b - b_hat`` so the local error
estimate is ``h * sum_j b_err[j] * k_j``; ``error_order`` is the order of the embedded
solution ``b_hat``; ``dense`` holds, per stage, the coefficients of b_j(theta) in theta^1,
theta^2, ... such that ``y(t + theta h) = y + h * sum_j b_j(theta) k_j``.  ``dopri8``
(Hairer's DOP853) has two error estimates, ``b_err`` and ``b_err_low``, combined by its own
error norm; its ``error_order`` is that norm's (7), not an embedded solution's.

Names: ``dopri8`` is DOP853, the method of scipy's ``solve_ivp(method="DOP853")``;
torchdiffeq's ``dopri8`` is a different method, Prince & Dormand's RK8(7)13M, here ``rk8_13m``.

The mathematics of each tableau (row sums, all rooted-tree order conditions, the embedded
order, FSAL structure, dense output) is checked in ``tests/test_tableaus.py``.
"""

from __future__ import annotations

from odebench.specs import Tableau

__all__ = [
    "euler",
    "midpoint",
    "rk4",
    "adaptive_heun",
    "bosh3",
    "dopri5",
    "tsit5",
    "dopri8",
    "rk8_13m",
    "ALL_TABLEAUS",
]

# ---------------------------------------------------------------------------------------
# Fixed-step methods
# ---------------------------------------------------------------------------------------

euler = Tableau(
    name="euler",
    c=(0.0,),
    A=((),),
    b=(1.0,),
    order=1,
    description="Explicit (forward) Euler method: one stage, first order, fixed step.",
    reference=(
        "L. Euler, Institutionum calculi integralis, vol. I, 1768; "
        "E. Hairer, S. P. Norsett, G. Wanner, Solving Ordinary Differential Equations I, "
        "2nd ed., Springer, 1993, Sec. I.7."
    ),
)

midpoint = Tableau(
    name="midpoint",
    c=(0.0, 1 / 2),
    A=(
        (),
        (1 / 2,),
    ),
    b=(0.0, 1.0),
    order=2,
    description="Explicit midpoint rule (Runge's second-order method): two stages, fixed step.",
    reference=(
        "C. Runge, Ueber die numerische Aufloesung von Differentialgleichungen, "
        "Math. Ann. 46 (1895) 167-178."
    ),
)

rk4 = Tableau(
    name="rk4",
    c=(0.0, 1 / 2, 1 / 2, 1.0),
    A=(
        (),
        (1 / 2,),
        (0.0, 1 / 2),
        (0.0, 0.0, 1.0),
    ),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
    description="Classic fourth-order Runge-Kutta method: four stages, fixed step.",
    reference=(
        "W. Kutta, Beitrag zur naeherungsweisen Integration totaler Differentialgleichungen, "
        "Z. Math. Phys. 46 (1901) 435-453."
    ),
)

# ---------------------------------------------------------------------------------------
# Adaptive (embedded) methods
# ---------------------------------------------------------------------------------------

# Heun's second-order method; the embedded solution is the Euler step (b_hat = (1, 0)).
adaptive_heun = Tableau(
    name="adaptive_heun",
    c=(0.0, 1.0),
    A=(
        (),
        (1.0,),
    ),
    b=(1 / 2, 1 / 2),
    order=2,
    b_err=(1 / 2 - 1.0, 1 / 2),
    error_order=1,
    description="Heun's method (explicit trapezoidal rule), order 2, with an embedded Euler step "
    "for error control: a 2(1) pair.",
    reference=(
        "K. Heun, Neue Methode zur approximativen Integration der Differentialgleichungen einer "
        "unabhaengigen Veraenderlichen, Z. Math. Phys. 45 (1900) 23-38."
    ),
)

# Bogacki-Shampine 3(2); b_hat = (7/24, 1/4, 1/3, 1/8).
bosh3 = Tableau(
    name="bosh3",
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    A=(
        (),
        (1 / 2,),
        (0.0, 3 / 4),
        (2 / 9, 1 / 3, 4 / 9),
    ),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    order=3,
    b_err=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    error_order=2,
    description="Bogacki-Shampine 3(2) pair: four stages (three per step with FSAL), "
    "third-order solution, second-order error estimate (MATLAB's ode23).",
    reference=(
        "P. Bogacki, L. F. Shampine, A 3(2) pair of Runge-Kutta formulas, "
        "Appl. Math. Lett. 2(4) (1989) 321-325."
    ),
)

# Dormand-Prince 5(4) (RK5(4)7M); b_hat = (5179/57600, 0, 7571/16695, 393/640,
# -92097/339200, 187/2100, 1/40).  The dense output is the fourth-order continuous extension
# of Hairer, Norsett & Wanner (the DOPRI5 code), written as polynomials in theta:
#   y(t + theta h) = y + theta*dy + theta(1-theta)*(h k1 - dy)
#                  + theta^2 (1-theta) (2 dy - h k1 - h k7) + theta^2 (1-theta)^2 h sum_j d_j k_j
# with dy = h sum_j b_j k_j and d = (-12715105075/11282082432, 0, 87487479700/32700410799,
# -10690763975/1880347072, 701980252875/199316789632, -1453857185/822651844,
# 69997945/29380423); expanding in powers of theta gives the rows below.
dopri5 = Tableau(
    name="dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    A=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    order=5,
    b_err=(71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40),
    error_order=4,
    dense_order=4,
    dense=(
        (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
        (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
        (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
    description="Dormand-Prince 5(4) pair (RK5(4)7M): seven stages (six per step with FSAL), "
    "fifth-order solution, fourth-order error estimate, fourth-order dense output "
    "(MATLAB's ode45, torchdiffeq's default).",
    reference=(
        "J. R. Dormand, P. J. Prince, A family of embedded Runge-Kutta formulae, "
        "J. Comput. Appl. Math. 6(1) (1980) 19-26; dense output: E. Hairer, S. P. Norsett, "
        "G. Wanner, Solving Ordinary Differential Equations I, 2nd ed., Springer, 1993, "
        "Sec. II.6 (continuous Dormand-Prince method), cf. L. F. Shampine, Some practical "
        "Runge-Kutta formulas, Math. Comp. 46(173) (1986) 135-150."
    ),
)

# Tsitouras 5(4).  The paper lists c_2..c_5 and the coefficients as decimals; a_i1 follows from
# the row-sum condition.  b_hat = (0.09468075576583945807, 0.009183565540343253097,
# 0.4877705284247615708, 1.234297566930478986, -2.707712349983525455, 1.866628418170587036,
# 1/66) and b_err = b - b_hat.
tsit5 = Tableau(
    name="tsit5",
    c=(0.0, 0.161, 0.327, 0.9, 0.98002554090450968572981, 1.0, 1.0),
    A=(
        (),
        (0.161,),
        (-0.0084806554923569885444269, 0.33548065549235698854443),
        (2.8971530571054934321304, -6.3594484899750748431482, 4.3622954328695814110177),
        (
            5.3258648284392566044289,
            -11.748883564062827877747,
            7.4955393428898362083046,
            -0.092495066361755249256502,
        ),
        (
            5.8614554429464200286593,
            -12.920969317847109291706,
            8.1593678985761586431804,
            -0.071584973281400997224531,
            -0.028269050394068382909003,
        ),
        (
            0.096460766818065229518167,
            0.01,
            0.47988965041449957477525,
            1.3790085741037418931923,
            -3.2900695154360806799010,
            2.3247105240997739824154,
        ),
    ),
    b=(
        0.096460766818065229518167,
        0.01,
        0.47988965041449957477525,
        1.3790085741037418931923,
        -3.2900695154360806799010,
        2.3247105240997739824154,
        0.0,
    ),
    order=5,
    b_err=(
        0.0017800110522257714433790,
        0.00081643445965674690322364,
        -0.0078808780102619960103150,
        0.14471100717326290753720,
        -0.58235716545255522501990,
        0.45808210592918694666160,
        -1 / 66,
    ),
    error_order=4,
    # Tsitouras' continuous extension: b_j(theta) = r_j1 theta + r_j2 theta^2 + r_j3 theta^3 +
    # r_j4 theta^4, fourth order (the values of OrdinaryDiffEq.jl's Tsit5 interpolant and
    # diffrax's); b_j(1) = b_j and the order conditions are checked in tests/test_tableaus.py.
    dense_order=4,
    dense=(
        (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
        (0.0, 0.13169999999999998, -0.2234, 0.1017),
        (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
        (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
        (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
        (0.0, -27.896526289197286, 65.09189467479366, -34.8706578614966),
        (0.0, 1.5, -4.0, 2.5),
    ),
    description="Tsitouras 5(4) pair: seven stages (six per step with FSAL), fifth-order "
    "solution, fourth-order error estimate; derived without the row simplifying assumptions, "
    "it has smaller error constants than Dormand-Prince 5(4) (Julia's Tsit5, diffrax's default).",
    reference=(
        "Ch. Tsitouras, Runge-Kutta pairs of order 5(4) satisfying only the first column "
        "simplifying assumption, Comput. Math. Appl. 62(2) (2011) 770-775."
    ),
)

# Prince & Dormand RK8(7)13M.  The coefficients are the published rational approximations.
# b_hat = (13451932/455176623, 0, 0, 0, 0, -808719846/976000145, 1757004468/5645159321,
# 656045339/265891186, -3867574721/1518517206, 465885868/322736535, 53011238/667516719,
# 2/45, 0) and b_err = b - b_hat.  Not FSAL: the last row differs from b.  torchdiffeq ships
# this method under the name "dopri8"; odebench's dopri8 is Hairer's DOP853 (below).
rk8_13m = Tableau(
    name="rk8_13m",
    c=(
        0.0,
        1 / 18,
        1 / 12,
        1 / 8,
        5 / 16,
        3 / 8,
        59 / 400,
        93 / 200,
        5490023248 / 9719169821,
        13 / 20,
        1201146811 / 1299019798,
        1.0,
        1.0,
    ),
    A=(
        (),
        (1 / 18,),
        (1 / 48, 1 / 16),
        (1 / 32, 0.0, 3 / 32),
        (5 / 16, 0.0, -75 / 64, 75 / 64),
        (3 / 80, 0.0, 0.0, 3 / 16, 3 / 20),
        (
            29443841 / 614563906,
            0.0,
            0.0,
            77736538 / 692538347,
            -28693883 / 1125000000,
            23124283 / 1800000000,
        ),
        (
            16016141 / 946692911,
            0.0,
            0.0,
            61564180 / 158732637,
            22789713 / 633445777,
            545815736 / 2771057229,
            -180193667 / 1043307555,
        ),
        (
            39632708 / 573591083,
            0.0,
            0.0,
            -433636366 / 683701615,
            -421739975 / 2616292301,
            100302831 / 723423059,
            790204164 / 839813087,
            800635310 / 3783071287,
        ),
        (
            246121993 / 1340847787,
            0.0,
            0.0,
            -37695042795 / 15268766246,
            -309121744 / 1061227803,
            -12992083 / 490766935,
            6005943493 / 2108947869,
            393006217 / 1396673457,
            123872331 / 1001029789,
        ),
        (
            -1028468189 / 846180014,
            0.0,
            0.0,
            8478235783 / 508512852,
            1311729495 / 1432422823,
            -10304129995 / 1701304382,
            -48777925059 / 3047939560,
            15336726248 / 1032824649,
            -45442868181 / 3398467696,
            3065993473 / 597172653,
        ),
        (
            185892177 / 718116043,
            0.0,
            0.0,
            -3185094517 / 667107341,
            -477755414 / 1098053517,
            -703635378 / 230739211,
            5731566787 / 1027545527,
            5232866602 / 850066563,
            -4093664535 / 808688257,
            3962137247 / 1805957418,
            65686358 / 487910083,
        ),
        (
            403863854 / 491063109,
            0.0,
            0.0,
            -5068492393 / 434740067,
            -411421997 / 543043805,
            652783627 / 914296604,
            11173962825 / 925320556,
            -13158990841 / 6184727034,
            3936647629 / 1978049680,
            -160528059 / 685178525,
            248638103 / 1413531060,
            0.0,
        ),
    ),
    b=(
        14005451 / 335480064,
        0.0,
        0.0,
        0.0,
        0.0,
        -59238493 / 1068277825,
        181606767 / 758867731,
        561292985 / 797845732,
        -1041891430 / 1371343529,
        760417239 / 1151165299,
        118820643 / 751138087,
        -528747749 / 2220607170,
        1 / 4,
    ),
    order=8,
    b_err=(
        14005451 / 335480064 - 13451932 / 455176623,
        0.0,
        0.0,
        0.0,
        0.0,
        -59238493 / 1068277825 + 808719846 / 976000145,
        181606767 / 758867731 - 1757004468 / 5645159321,
        561292985 / 797845732 - 656045339 / 265891186,
        -1041891430 / 1371343529 + 3867574721 / 1518517206,
        760417239 / 1151165299 - 465885868 / 322736535,
        118820643 / 751138087 - 53011238 / 667516719,
        -528747749 / 2220607170 - 2 / 45,
        1 / 4,
    ),
    error_order=7,
    description="Prince-Dormand 8(7) pair (RK8(7)13M): thirteen stages, eighth-order "
    "solution, seventh-order error estimate (torchdiffeq calls this method dopri8; odebench's "
    "dopri8 is Hairer's DOP853).",
    reference=(
        "P. J. Prince, J. R. Dormand, High order embedded Runge-Kutta formulae, "
        "J. Comput. Appl. Math. 7(1) (1981) 67-75."
    ),
)

# Hairer's DOP853: the Dormand-Prince 8(5,3) method of Hairer, Norsett & Wanner (the DOP853
# Fortran code; also scipy's solve_ivp(method="DOP853")).  Twelve stages, c_12 = 1, and a
# thirteenth, f(t + h, y_new), which is the next step's first (FSAL): 12 evaluations a step.
# Most coefficients involve sqrt(6) (c_2 = (12 - 2 sqrt 6) / 135, c_3 = (6 - sqrt 6) / 45,
# c_4 = (6 - sqrt 6) / 30, c_5 = (6 + sqrt 6) / 30); they are written with the 30 significant
# digits of the published values, so each literal rounds to the nearest double.
#
# The error estimate is not b - b_hat of one embedded method: with the weights
#   E5 = (the published "er" weights), a fifth-order embedded solution b - E5, and
#   E3 = b - bhh, bhh = (31/127 at stage 1, 12675/17272 at stage 9, 3/136 at stage 12),
# a third-order one, and err5 = h sum E5_j k_j, err3 = h sum E3_j k_j, the step is accepted
# when  ||err5||^2 / sqrt(||err5||^2 + 0.01 ||err3||^2) <= 1  (RMS norms of err / scale).
# This behaves like ||err5|| where the two estimates agree and like 10 ||err5||^2 / ||err3||
# = O(h^8) for small steps, hence error_order = 7 (controller exponent 1/8), as in DOP853.
# The seventh-order dense output of DOP853 needs three extra stages and is not included.
_DOP853_B = (
    5.42937341165687622380535766363e-2,
    0.0,
    0.0,
    0.0,
    0.0,
    4.45031289275240888144113950566,
    1.89151789931450038304281599044,
    -5.8012039600105847814672114227,
    3.1116436695781989440891606237e-1,
    -1.52160949662516078556178806805e-1,
    2.01365400804030348374776537501e-1,
    4.47106157277725905176885569043e-2,
)
# the third-order embedded weights (nonzero at stages 1, 9 and 12 only)
_DOP853_BHH = {0: 31 / 127, 8: 12675 / 17272, 11: 3 / 136}

dopri8 = Tableau(
    name="dopri8",
    c=(
        0.0,
        0.526001519587677318785587544488e-1,
        0.789002279381515978178381316732e-1,
        0.118350341907227396726757197510,
        0.281649658092772603273242802490,
        1 / 3,
        1 / 4,
        4 / 13,
        127 / 195,
        3 / 5,
        6 / 7,
        1.0,
        1.0,
    ),
    A=(
        (),
        (5.26001519587677318785587544488e-2,),
        (1.97250569845378994544595329183e-2, 5.91751709536136983633785987549e-2),
        (2.95875854768068491816892993775e-2, 0.0, 8.87627564304205475450678981324e-2),
        (
            2.41365134159266685502369798665e-1,
            0.0,
            -8.84549479328286085344864962717e-1,
            9.24834003261792003115737966543e-1,
        ),
        (
            1 / 27,
            0.0,
            0.0,
            1.70828608729473871279604482173e-1,
            1.25467687566822425016691814123e-1,
        ),
        (
            19 / 512,
            0.0,
            0.0,
            1.70252211019544039314978060272e-1,
            6.02165389804559606850219397283e-2,
            -9 / 512,
        ),
        (
            3.70920001185047927108779319836e-2,
            0.0,
            0.0,
            1.70383925712239993810214054705e-1,
            1.07262030446373284651809199168e-1,
            -1.53194377486244017527936158236e-2,
            8.27378916381402288758473766002e-3,
        ),
        (
            6.24110958716075717114429577812e-1,
            0.0,
            0.0,
            -3.36089262944694129406857109825,
            -8.68219346841726006818189891453e-1,
            2.75920996994467083049415600797e1,
            2.01540675504778934086186788979e1,
            -4.34898841810699588477366255144e1,
        ),
        (
            4.77662536438264365890433908527e-1,
            0.0,
            0.0,
            -2.48811461997166764192642586468,
            -5.90290826836842996371446475743e-1,
            2.12300514481811942347288949897e1,
            1.52792336328824235832596922938e1,
            -3.32882109689848629194453265587e1,
            -2.03312017085086261358222928593e-2,
        ),
        (
            -9.3714243008598732571704021658e-1,
            0.0,
            0.0,
            5.18637242884406370830023853209,
            1.09143734899672957818500254654,
            -8.14978701074692612513997267357,
            -1.85200656599969598641566180701e1,
            2.27394870993505042818970056734e1,
            2.49360555267965238987089396762,
            -3.0467644718982195003823669022,
        ),
        (
            2.27331014751653820792359768449,
            0.0,
            0.0,
            -1.05344954667372501984066689879e1,
            -2.00087205822486249909675718444,
            -1.79589318631187989172765950534e1,
            2.79488845294199600508499808837e1,
            -2.85899827713502369474065508674,
            -8.87285693353062954433549289258,
            1.23605671757943030647266201528e1,
            6.43392746015763530355970484046e-1,
        ),
        _DOP853_B,
    ),
    b=_DOP853_B + (0.0,),
    order=8,
    # E5 (the published "er"): zero at stages 2-5 and at the FSAL stage
    b_err=(
        0.1312004499419488073250102996e-1,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.1225156446376204440720569753e1,
        -0.4957589496572501915214079952,
        0.1664377182454986536961530415e1,
        -0.3503288487499736816886487290,
        0.3341791187130174790297318841,
        0.8192320648511571246570742613e-1,
        -0.2235530786388629525884427845e-1,
        0.0,
    ),
    error_order=7,
    # E3 = b - bhh
    b_err_low=tuple(b - _DOP853_BHH.get(j, 0.0) for j, b in enumerate(_DOP853_B)) + (0.0,),
    description="Hairer's DOP853, the Dormand-Prince 8(5,3) method: thirteen stages (twelve "
    "per step with FSAL), eighth-order solution, step control by Hairer's combination of "
    "fifth- and third-order error estimates (scipy's DOP853).  Not the method torchdiffeq "
    "calls dopri8: that is Prince & Dormand's RK8(7)13M, here rk8_13m.",
    reference=(
        "E. Hairer, S. P. Norsett, G. Wanner, Solving Ordinary Differential Equations I, "
        "2nd ed., Springer, 1993, Sec. II.10, and the Fortran code DOP853 by E. Hairer and "
        "G. Wanner (http://www.unige.ch/~hairer/software.html)."
    ),
)

ALL_TABLEAUS = (euler, midpoint, rk4, adaptive_heun, bosh3, dopri5, tsit5, dopri8, rk8_13m)
