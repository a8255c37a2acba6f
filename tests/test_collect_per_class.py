"""scripts/collect.py per_class on fabricated run folders."""
import json

from test_scripts import collect, fabricate


def add_per_class(run_dir, aps):
    results = json.loads((run_dir / "results.json").read_text())
    results["test_per_class_ap"] = aps
    (run_dir / "results.json").write_text(json.dumps(results))


def test_per_class_ap_across_methods(tmp_path, capsys):
    runs = tmp_path / "mine"
    for name, scheme, seed, aps in (("an_s0", "AN", 0, {"cat": 50.0, "dog": 70.0}),
                                    ("an_s1", "AN", 1, {"cat": 60.0, "dog": 80.0}),
                                    ("llr_s0", "LL-R", 0, {"cat": 90.0, "dog": None})):
        fabricate(runs, name, "custom", scheme, seed, 0.0, delta=0.2)
        add_per_class(runs / name, aps)
    fabricate(runs, "old_s0", "custom", "LL-Ct", 0, 0.0)            # an older run: no per-class AP
    assert collect.main(["per_class", str(runs), "--png", str(tmp_path / "pc.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| class | Naive AN | LL-R |"
    # cat over the two AN seeds: mean 55, sample std sqrt(50) = 7.07; dog's LL-R AP is undefined.
    assert lines[2] == "| cat | 55.00 ± 7.07 (n=2) | 90.00 |"
    assert lines[3] == "| dog | 75.00 ± 7.07 (n=2) | - |"
    assert (tmp_path / "pc.png").read_bytes()[:4] == b"\x89PNG"
