#!/usr/bin/env python3
"""Set-up and the two everyday jobs, needing nothing but python3 and pip.

    python3 dev.py demo   # install into ./.venv if needed, run the Suzhou demo, print its summary
    python3 dev.py test   # install into ./.venv if needed, run the whole test suite

The virtual environment is (re)installed when it is missing or pyproject.toml has changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".credsim-installed"


def sh(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def ensure_env() -> None:
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want and PY.exists():
        return
    if not PY.exists():
        sh(sys.executable, "-m", "venv", VENV)
    sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]")
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    ensure_env()
    if argv[0] == "demo":
        cmd = [str(BIN / "credsim"), "run", "suzhou", "--population", "100000",
               "--days", "365", "--seed", "1"]
    else:
        cmd = [str(PY), "-m", "pytest"]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
