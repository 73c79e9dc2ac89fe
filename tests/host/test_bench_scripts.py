"""The bench scripts still fit the code they measure.

`make bench` runs for over an hour and no test runs its scripts, so a script that calls what
the host code no longer has (a function moved to another module, a renamed argument) would
fail only there, an hour in. mypy checks bench/ against the host code, the simulator and their
libraries.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_bench_scripts_call_what_the_code_has(tmp_path):
    scripts = sorted(str(p.relative_to(REPO)) for p in (REPO / "bench").glob("*.py"))
    assert "bench/run_all.py" in scripts and len(scripts) > 10
    # The editable install's finder is not one mypy follows: `musket` is found in host/, and
    # `musket_sim` (the sim/ folder) through a link of that name.
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / "musket_sim").symlink_to(REPO / "sim")
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(REPO / "host"),
                                                    str(tmp_path / "packages")]))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "mypy-cache"), *scripts],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
