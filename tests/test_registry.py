"""The registry (methods/): a method lives in its family's file; nothing else branches on its name, and
adding a method is adding one file."""
import glob
import json
import os
import re
import subprocess
import sys
import uuid

import methods

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_nothing_outside_the_methods_files_compares_a_method_name():
    """No `== "LL-R"`, `!= "CSL"`, `in ("LL-R", ...)` on a registered name in any module but methods/*.py
    (tests aside): the training loop, the config checks, the scripts and the collector read the entries."""
    names = "|".join(re.escape(name) for name in methods.REGISTRY)
    comparison = re.compile(rf"""(==|!=)\s*["']({names})["']|["']({names})["']\s*(==|!=)|\bin\s+\([^)]*["']({names})["']""")
    offences = []
    for path in glob.glob(os.path.join(REPO, "**", "*.py"), recursive=True):
        relative = os.path.relpath(path, REPO)
        if relative.startswith(("methods" + os.sep, "tests" + os.sep, ".venv")):
            continue
        with open(path) as f:
            offences += [f"{relative}:{n}: {line.strip()}" for n, line in enumerate(f, 1)
                         if comparison.search(line) or 'index("--mod_scheme")' in line]
    assert not offences, "\n".join(offences)
    # The test can fail: it finds such a line.
    assert comparison.search('if cfg.mod_scheme == "CSL":') and comparison.search("x in ('AN', 'WAN')")


TOY = '''"""A toy method, written by tests/test_registry.py: adding a method is adding this one file."""
import torch

from methods import Flag, Method, end_to_end, in_range, register


def _loss(logits, labels, batch):
    weight = batch.cfg.method_options["toy_weight"]
    target = (labels == 1).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return weight * loss.mean(), torch.zeros_like(labels, dtype=torch.bool)


register(Method("{name}", _loss, "a toy method of the tests", "Nobody et al., 2026",
                flags=(Flag("toy_weight", "the weight of its loss", default=0.5, check=in_range(0, 10)),),
                advice="{name} (a toy method of the tests)", paper_row=False, display="Toy {name}",
                published=end_to_end({{"demo": 12.3}})))
'''


def test_a_new_method_is_one_new_file(demo_dir, tmp_path):
    """A method written into a new module of the package, and nothing else: main.py lists it with its
    flag, trains it, and the collector shows its row beside its published number."""
    name = f"toy{uuid.uuid4().hex[:8]}"
    module = os.path.join(REPO, "methods", f"{name}.py")
    with open(module, "w") as f:
        f.write(TOY.format(name=name))
    try:
        def cli(*args):
            result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            return result.stdout
        usage = cli("main.py", "--help")
        assert name in usage and "--toy_weight" in usage and f"{name} (a toy method of the tests)" in usage
        runs = tmp_path / "table2_end_to_end"
        cli("main.py", "--dataset", "demo", "--data_dir", demo_dir, "--save_path", str(runs), "--exp_name", "toy",
            "--arch", "resnet18", "--weights", "none", "--image_size", "32", "--num_workers", "0", "--lr", "1e-3",
            "--mod_scheme", name, "--toy_weight", "2", "--num_epochs", "1")
        assert json.loads((runs / "toy" / "config.json").read_text())["method_options"] == {"toy_weight": 2.0}
        table = cli(os.path.join("scripts", "collect.py"), "table", str(runs), "--paper", "table2_end_to_end")
        row = next(line for line in table.splitlines() if line.startswith(f"| Toy {name} |"))
        results = json.loads((runs / "toy" / "results.json").read_text())
        assert f"| {results['test_map']:.2f} | 12.3 |" in row
    finally:
        os.remove(module)
