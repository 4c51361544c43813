"""The docs site builds in strict mode (a broken link or reference fails), and its generated
configuration reference has a description for every key."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from meharl.algorithms import ALGORITHMS
from meharl.config import EnvConfig, RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_key_has_a_description():
    missing = [f"{cls.__name__}.{f.name}" for cls in (RunConfig, EnvConfig, *(a.Config for a in ALGORITHMS.values()))
               for f in dataclasses.fields(cls) if not f.metadata.get("help", "").strip()]
    assert not missing, missing


def test_the_docs_site_builds_strict_with_the_generated_reference(tmp_path):
    pytest.importorskip("mkdocstrings", reason="the docs tools are test extras: pip install -e .[test]")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    reference = (tmp_path / "configuration" / "index.html").read_text()
    for name, algo in ALGORITHMS.items():  # every algorithm's section and keys are on the page
        assert f"algo={name}" in reference
        assert all(f"<code>{f.name}</code>" in reference for f in dataclasses.fields(algo.Config)), name
