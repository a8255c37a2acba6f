#!/usr/bin/env bash
# Every demo number in README.md, from a fresh clone, on a CPU (no download, no GPU):
#
#   bash scripts/reproduce_demo.sh            # then read the Markdown it prints
#
# Runs: the demo Table 2 (Full label, Naive AN, LL-R, LL-Ct, LL-Cp, seeds 0-2, the quick start's
# flags: its LL-R row is the quick start over three seeds), with the records the analyses need, which
# change no number; VLPL and AEVLP (seeds 0-2); the methods after the paper (seed 0); then the analyses (Table 1 and Fig. 1,
# Fig. 4, Fig. 3, Table 4). The quick start is the LL-R row's seed 0; "Your own data" has its own
# four commands. Finished runs are skipped, so an interrupted call continues where it stopped.
# Everything lands in runs/. Time: 27 runs of about 70 s each on the idle 2-core CPU machine (the
# quick start's epochs), so about 32 minutes, plus a minute and a half for the backbone once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
T2=runs/table2_end_to_end

$PY scripts/table2_end_to_end.py --demo --seeds 3 --methods full AN LL-R LL-Ct LL-Cp --record_losses --record_labels_for 6
# The vision-language rows, from the demo backbone's own head as the zero-shot scorer (README
# "Beyond the paper"): the scores once, then seeds 0-2 beside the rows above.
$PY scripts/table2_end_to_end.py --demo --seeds 3 --methods VLPL AEVLP
$PY scripts/collect.py table "$T2"
# The baselines under Cole et al.'s protocol (one search pair), and the methods after the paper
# (README "Beyond the paper"), seed 0.
$PY scripts/table2_end_to_end.py --demo --seeds 1 --methods WAN LSAN EPR ROLE --save_path runs/baselines
$PY scripts/table2_end_to_end.py --demo --seeds 1 --methods EM EM-APL GR-Loss LL-R+BoostLU LL-Ct+BoostLU LL-Cp+BoostLU --save_path runs/beyond
$PY scripts/collect.py table runs/beyond

$PY scripts/analyze.py memorization "$T2/demo_AN_ll_s0"
for seed in 0 1 2; do
  $PY scripts/analyze.py precision "$T2/demo_LL-R_ll_s$seed" "$T2/demo_LL-Ct_ll_s$seed" "$T2/demo_LL-Cp_ll_s$seed"
done
$PY scripts/analyze.py trajectories "$T2/demo_LL-R_ll_s0"
for seed in 0 1 2; do
  $PY scripts/analyze.py pointing "$T2/demo_AN_ll_s$seed" "$T2/demo_LL-R_ll_s$seed" "$T2/demo_LL-Ct_ll_s$seed" "$T2/demo_LL-Cp_ll_s$seed"
done
# CSL's selective mode with its default two-stage prior (README "CSL"), seed 0.
$PY main.py --dataset demo --mod_scheme CSL --arch resnet18 --weights demo --image_size 64 --lr 1e-4 --num_epochs 6 --num_workers 2 --amp none --save_path runs/csl
