#!/usr/bin/env bash
# Every demo number in README.md, from a fresh clone, on a CPU (no download, no GPU):
#
#   bash scripts/reproduce_demo.sh            # then read the Markdown it prints
#
# Runs: the demo Table 2, seeds 0-2, the quick start's flags (its LL-R row is the quick start over
# three seeds): Full label, Naive AN, LL-R, LL-Ct, LL-Cp with the records the analyses need, which
# change no number, then the methods after the paper (README "Beyond the paper", and the other two
# BoostLU rows of docs/methods.md) into the same folder; the baselines under Cole et al.'s protocol
# (seed 0); LL-Cp writing all k (seeds 0-2); the analyses (Table 1 and Fig. 1, Fig. 4, Fig. 3,
# Table 4); CSL (seed 0). "Your own data" has its own four commands. Finished runs are skipped, so an
# interrupted call continues where it stopped. Everything lands in runs/. Time on the idle 2-core
# CPU machine: 47 runs, about 40 minutes (the first 44 took 36.7 minutes at 08f946f, the demo's data
# and backbone included; a second call, with every run finished, takes about a minute: the analyses).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
T2=runs/table2_end_to_end

$PY scripts/table2_end_to_end.py --demo --seeds 3 --methods full AN LL-R LL-Ct LL-Cp --record_losses --record_labels_for 6
# The methods after the paper; VLPL and AEVLP score with the demo backbone's own head (README "Beyond
# the paper"): the score files once, then their runs.
$PY scripts/table2_end_to_end.py --demo --seeds 3 --methods EM EM-APL GR-Loss LL-R+BoostLU LL-Ct+BoostLU LL-Cp+BoostLU VLPL AEVLP
$PY scripts/collect.py table "$T2"
# The baselines under Cole et al.'s protocol (one search pair), seed 0.
$PY scripts/table2_end_to_end.py --demo --seeds 1 --methods WAN LSAN EPR ROLE --save_path runs/baselines
$PY scripts/collect.py table runs/baselines
# LL-Cp with the paper's literal write rule (README "Results", docs/differences.md), seeds 0-2.
$PY scripts/table2_end_to_end.py --demo --seeds 3 --methods LL-Cp --llcp_write all --save_path runs/llcp_all
$PY scripts/collect.py table runs/llcp_all

$PY scripts/analyze.py memorization "$T2/demo_AN_ll_s0"
for seed in 0 1 2; do
  $PY scripts/analyze.py precision "$T2/demo_LL-R_ll_s$seed" "$T2/demo_LL-Ct_ll_s$seed" "$T2/demo_LL-Cp_ll_s$seed"
done
$PY scripts/analyze.py trajectories "$T2/demo_LL-R_ll_s0"
for seed in 0 1 2; do
  $PY scripts/analyze.py pointing "$T2/demo_AN_ll_s$seed" "$T2/demo_LL-R_ll_s$seed" "$T2/demo_LL-Ct_ll_s$seed" "$T2/demo_LL-Cp_ll_s$seed"
done
# CSL's selective mode with its default two-stage prior (docs/methods.md, "CSL"), seed 0.
# --resume continues an interrupted run (and starts a new one); a finished one is skipped.
CSL=runs/csl/demo_CSL-selective_resnet18_s0
[ -f "$CSL/results.json" ] || $PY main.py --dataset demo --mod_scheme CSL --arch resnet18 --weights demo --image_size 64 --lr 1e-4 --num_epochs 6 --num_workers 2 --amp none --save_path runs/csl --resume
