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


def _train_commands():
    """Every `meharl train ...` command line in the README and the docs, as its key=value
    arguments (placeholders such as RUN and bracketed optional parts left out)."""
    import re
    import shlex

    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for line in path.read_text().splitlines():
            for m in re.finditer(r"meharl train((?: [^\s`#]+)*)", line):
                args = [a for a in shlex.split(m.group(1)) if "=" in a and not a.startswith(("[", "--"))]
                yield f"{path.relative_to(ROOT)}: {m.group(0)}", args


def test_every_documented_train_command_resolves():
    """The keys, values and task names of every documented command are valid today (a command
    that rots fails here, before anyone copies it)."""
    from meharl.config import parse_overrides, resolve

    commands = list(_train_commands())
    assert len(commands) > 15
    for where, args in commands:
        try:
            resolve(parse_overrides(args))
        except ValueError as e:
            raise AssertionError(f"{where}: {e}") from e


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block, executed as written (in a scratch working directory)."""
    import re

    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["exp"].rows[-1]["env_steps"] == namespace["exp"].cfg.total_steps


def test_list_and_train_help_show_every_key_with_its_default_and_meaning(capsys):
    from meharl.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "total_steps" in out and "1000000" in out and "env steps of the run, warmup included" in out
    main(["list"])
    out = capsys.readouterr().out
    for name, algo in ALGORITHMS.items():
        assert f"algo={name}: {algo.description}" in out
        for f in dataclasses.fields(algo.Config):
            assert f.name in out and f.metadata["help"] in out, (name, f.name)
