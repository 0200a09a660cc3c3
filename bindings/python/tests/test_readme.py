"""The README's Python example is examples/quickstart.py verbatim, and it runs."""

import subprocess
import sys

from conftest import REPO


def test_the_readme_example_is_the_quickstart_and_runs():
    readme = (REPO / "README.md").read_text()
    example = (REPO / "bindings" / "python" / "examples" / "quickstart.py").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert block == example, "README's Python example differs from examples/quickstart.py"
    run = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "running on memory" in run.stdout
    assert "refused:" in run.stdout
