import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ci_runs_exactly_the_readme_test_command():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    ci_cmd = [ln for ln in ci.splitlines() if ln.startswith("pip install \".[test]\"")]
    assert len(ci_cmd) == 1, ci_cmd
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert ci_cmd[0] in blocks[1], (ci_cmd[0], blocks[1])
    assert "pip install torch==2.13.0" in blocks[1] and "pip install torch==2.13.0" in ci
    assert blocks[0].strip().endswith("subspace-linalg bench")


def test_readme_tour_runs():
    """The README's Python tour is executed as written (it cannot rot)."""
    import warnings

    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for code in blocks:
            exec(compile(code, "README.md", "exec"), {})
