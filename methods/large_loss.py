"""The paper's methods (Kim et al., Large Loss Matters, CVPR 2022): Naive AN, LL-R, LL-Ct, LL-Cp (the
pure functions are in losses.py), the appendix's absolute-threshold variants, the Full label upper
bound, the authors' delta_rel per dataset, and the numbers of the paper's Tables 2 and 3 (SPEC 9)
for these rows and for the two rows of Table 3 it quotes from other papers.
"""
import losses
from methods import Flag, Method, Row, register, register_row

CITATION = "Kim et al., Large Loss Matters, CVPR 2022"
# The best delta_rel (percent per epoch) the authors published for each dataset (upstream issue #4; SPEC 6).
PAPER_DELTA_REL = {"pascal": {"LL-R": 0.2, "LL-Ct": 0.2, "LL-Cp": 0.1},
                   "coco": {"LL-R": 0.4, "LL-Ct": 0.2, "LL-Cp": 0.2},
                   "nuswide": {"LL-R": 0.4, "LL-Ct": 0.2, "LL-Cp": 0.2},
                   "cub": {"LL-R": 0.4, "LL-Ct": 0.4, "LL-Cp": 0.2}}
GROUPS = ("G1", "G2", "G3", "G4", "G5")


def table2(end_to_end, linear_init):
    """Published Table 2 numbers: (VOC, COCO, NUS-WIDE, CUB) end-to-end and with LinearInit."""
    datasets = ("pascal", "coco", "nuswide", "cub")
    return {"table2_end_to_end": {d: {"test_map": v} for d, v in zip(datasets, end_to_end)},
            "table2_linear_init": {d: {"test_map": v} for d, v in zip(datasets, linear_init)}}


def table3(*values):
    """Published Table 3 numbers: G1, G2, G3, G4, G5, all."""
    return {"table3_openimages": {"openimages": {**{f"test_map_{g}": v for g, v in zip(GROUPS, values)},
                                                 "test_map": values[-1]}}}


def _settings(name):
    """The authors' delta_rel of an LL scheme on a dataset of the paper (none elsewhere)."""
    return lambda dataset: ({"delta_rel": PAPER_DELTA_REL[dataset][name]} if dataset in PAPER_DELTA_REL else {})


def _naive_an(logits, labels, batch):
    return losses.large_loss(logits, labels, correct=False)


def _k(logits, batch, rate):
    return losses.num_to_modify(*logits.shape, rate(batch.epoch, batch.cfg.delta_rel))


def _ll_r(logits, labels, batch):
    return losses.large_loss(logits, labels, correct=False, k=_k(logits, batch, losses.growing_rate))


def _ll_ct(logits, labels, batch):
    return losses.large_loss(logits, labels, correct=True, k=_k(logits, batch, losses.growing_rate))


def _ll_cp(logits, labels, batch):
    return losses.large_loss(logits, labels, correct=True, k=_k(logits, batch, losses.constant_rate))


LLCP_WRITE = Flag("llcp_write", "which corrected entries LL-Cp writes permanently as positives: authors (as "
                  "the authors' code, which made the paper's numbers: those whose loss is strictly above the k-th "
                  "largest, k - 1 of the k per batch, so none where k = 1, as with their VOC setting) or all (the "
                  "paper's text read literally: all k). Default authors", type=str, default="authors",
                  choices=losses.LLCP_WRITE_RULES, legacy="all")


def _llcp_corrections(logits, labels, modified, batch):
    k = _k(logits, batch, losses.constant_rate)
    return losses.permanent_corrections(logits, labels, modified, k, batch.cfg.method_options["llcp_write"])


def _rate_folder(args, options):
    return f"{args.mod_scheme}_d{args.delta_rel:g}"


register(Method("AN", _naive_an, "Naive assume-negative (Eq. 2)", CITATION, display="Naive AN"),
         rows=[Row("full", "Full label", ("--mod_scheme", "AN", "--train_set_variant", "clean"), "AN", clean=True,
                   published=table2((90.2, 78.0, 54.5, 32.9), (91.1, 77.2, 54.9, 34.0)), order=0),
               Row("AN", "Naive AN", ("--mod_scheme", "AN"), "AN", order=1,
                   published={**table2((85.1, 64.1, 42.0, 19.1), (86.9, 68.7, 47.6, 20.9)),
                              **table3(77.1, 78.7, 81.5, 84.1, 88.8, 82.0)})])
def _register_ll(name, loss, summary, rate, order, published, **extra):
    """An LL scheme: its entry (the authors' delta_rel, its rate, whether it rejects) and its row."""
    register(Method(name, loss, summary, CITATION, settings=_settings(name), modification_rate=rate,
                    rejects=loss is _ll_r, folder_name=_rate_folder, **extra),
             rows=[Row(name, name, ("--mod_scheme", name), name, published=published, order=order)])


_register_ll("LL-R", _ll_r, "reject large losses (Eq. 4)", losses.growing_rate, 9,
             {**table2((89.2, 71.0, 47.4, 19.5), (89.4, 71.9, 49.1, 21.5)), **table3(77.4, 79.1, 82.0, 84.5, 89.5, 82.5)})
_register_ll("LL-Ct", _ll_ct, "correct large losses temporarily (Eq. 5-6)", losses.growing_rate, 10,
             {**table2((89.0, 70.5, 48.0, 20.4), (89.3, 71.6, 49.6, 21.8)), **table3(77.7, 79.3, 82.1, 84.7, 89.4, 82.6)})
_register_ll("LL-Cp", _ll_cp, "correct large losses permanently (Eq. 7-9)", losses.constant_rate, 11,
             {**table2((88.4, 70.7, 48.3, 20.1), (88.3, 71.0, 49.4, 21.4)), **table3(77.6, 79.1, 81.9, 84.6, 89.4, 82.5)},
             flags=(LLCP_WRITE,), advice=f"LL-Cp ({CITATION}; the permanent write)", corrections=_llcp_corrections)


# The appendix's absolute variants: modify the unobserved entries whose loss exceeds R(t) = R0 - t delta_abs.
def _threshold(epoch, cfg):
    return {"ll_threshold": losses.absolute_threshold(epoch, cfg.R0, cfg.delta_abs)} if epoch > 1 else {}


def _absolute(correct):
    def loss(logits, labels, batch):
        threshold = losses.absolute_threshold(batch.epoch, batch.cfg.R0, batch.cfg.delta_abs)
        return losses.large_loss(logits, labels, correct, threshold=threshold)
    return loss


def _needs_threshold(options, args):
    if args.R0 is None or args.delta_abs is None:
        return (f"{args.mod_scheme} needs --R0 and --delta_abs (the threshold R(t) = R0 - t * delta_abs, in BCE "
                f"loss units); the paper publishes no default")
    return None


def _threshold_folder(args, options):
    return f"{args.mod_scheme}_R{args.R0:g}_da{args.delta_abs:g}"


register(Method("LL-R-abs", _absolute(correct=False), "LL-R above an absolute loss threshold (--R0, --delta_abs)",
                CITATION, schedule=_threshold, validate=_needs_threshold, rejects=True, folder_name=_threshold_folder,
                display="LL-R (abs)"), rows=[])
register(Method("LL-Ct-abs", _absolute(correct=True), "LL-Ct above an absolute threshold", CITATION,
                schedule=_threshold, validate=_needs_threshold, folder_name=_threshold_folder, display="LL-Ct (abs)"),
         rows=[])

# Other papers' methods that the LL paper quotes in Table 3 (no code of theirs is needed; SPEC 9).
register_row(Row("Curriculum", "Curriculum", published=table3(70.4, 71.3, 76.2, 80.5, 86.8, 77.1), order=7))
register_row(Row("IMCL", "IMCL", published=table3(71.0, 72.6, 77.6, 81.8, 87.3, 78.1), order=8))
