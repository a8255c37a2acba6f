"""BoostLU (Kim et al., "Bridging the Gap between Model Explanations in Partially Annotated Multi-label
Classification", CVPR 2023; youngwk/BridgeGapExplanationPAMC): not a loss but a model option of any
method (--boostlu, models.py's boosted class activation map), combined in its paper with the LL
schemes. Its authors' defaults and its rows (LL-R + BoostLU, ...), added to Table 2 by name.
"""
import math

from methods import REGISTRY, Row, register_row

DEFAULT_ALPHA = 5.0
CITATION = ("Kim et al., Bridging the Gap between Model Explanations in Partially Annotated Multi-label "
            "Classification, CVPR 2023")
# BoostLU's README and config.py: Adam, lr 1e-5, every epoch run (their train.py keeps the best on val,
# no early stop), and one delta_rel per LL scheme on every dataset.
SETTINGS = dict(optimizer="adam", lr=1e-5, early_stop_drop=math.inf)
DELTA_REL = {"LL-R": 0.5, "LL-Ct": 0.2, "LL-Cp": 0.1}
# Published test mAP of LL + BoostLU: not verified here (the paper's table could not be read from this
# machine); left empty rather than guessed.
PUBLISHED = {}


def settings(method):
    """The BoostLU authors' defaults for a run of ``method`` with --boostlu."""
    return {**SETTINGS, **({"delta_rel": DELTA_REL[method]} if method in DELTA_REL else {})}


for _method in DELTA_REL:
    register_row(Row(f"{_method}+BoostLU", f"{REGISTRY[_method].display or _method} + BoostLU",
                     ("--mod_scheme", _method, "--boostlu"), _method, paper_row=False, boostlu=True,
                     published=PUBLISHED.get(_method, {})))
