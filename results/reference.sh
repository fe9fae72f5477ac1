#!/usr/bin/env bash
# Regenerates every committed reference run under results/reference/, the claims section of
# results/README.md (the PNGs and tables) and the runs' pages in docs/reference-results/.
# Run from the repository root: bash results/reference.sh
# About 40 minutes on 2 CPU cores (Intel Xeon): claims-cnf 6, Table 1 6, cnf-peers 14, Table 2 15.
set -euo pipefail
cd "$(dirname "$0")/.."
ODEBENCH="${ODEBENCH:-.venv/bin/odebench}"
PYTHON="${PYTHON:-.venv/bin/python}"
OUT=results/reference

# (a)-(d): memory, the tolerance dial and the NFE ratios on the CNF, torch backends
"$ODEBENCH" run --task cnf --backend torch-adjoint,torch-adjoint-seminorm,torch-backprop \
  --tol 1e-3,1e-4,1e-5,1e-6,1e-7 --out "$OUT" --run-id claims-cnf
# (e) Table 1: ODE-Net (adjoint, backprop) and ResNet, then RK-Net
"$ODEBENCH" run --task mnist --model odenet,resnet --backend torch-adjoint,torch-backprop \
  --tol 1e-1,1e-3 --out "$OUT" --run-id table1
"$ODEBENCH" run --task mnist --backend torch-backprop --solver rk4 --solver-opt step_size=0.25 \
  --out "$OUT" --run-id table1-rknet
# (f) odebench's backends and the peers on the CNF
"$ODEBENCH" run --task cnf --tol 1e-3,1e-5 --out "$OUT" --run-id cnf-peers \
  --backend torch-adjoint,torch-adjoint-seminorm,torch-backprop,torchdiffeq-adjoint,torchdiffeq-adjoint-seminorm,torchdiffeq-backprop,torchode-adjoint,torchode-backprop,jax-adjoint,jax-backprop,diffrax-backsolve,diffrax-recursive-checkpoint,diffrax-direct,jaxode-adjoint
# (e) Table 2 (paper size; see results/README.md)
for n in 30 50 100; do
  "$ODEBENCH" run --task latent-spiral --model latent-ode,rnn --backend torch-backprop \
    --opt n_obs=$n --opt n_train=1000 --opt n_test=200 --opt batch_size=1000 --opt window=200 --opt lr=0.01 \
    --steps 2000 --out "$OUT" --run-id table2-n$n
done
"$PYTHON" -m odebench.claims --results "$OUT" --readme results/README.md
# every run as a page of the site, and the claims with them (alone: make reference-pages)
"$PYTHON" -m odebench.reference_pages --results "$OUT" --out docs/reference-results
