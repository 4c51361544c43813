"""The docs site builds in strict mode (a broken link or reference fails), and its generated
configuration reference has a description for every key."""
import dataclasses
import re
import shlex
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


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _train_commands():
    """Every `meharl train ...` command line in the README and the docs, as its key=value
    arguments (placeholders such as RUN and bracketed optional parts left out)."""
    for path in DOCS:
        for line in path.read_text().splitlines():
            for m in re.finditer(r"meharl train((?: [^\s`#]+)*)", line):
                args = [a for a in shlex.split(m.group(1)) if "=" in a and not a.startswith(("[", "--"))]
                yield f"{path.relative_to(ROOT)}: {m.group(0)}", args


def _shell_commands():
    """Every other `meharl ...` command of the README's and the docs' shell blocks, as its
    arguments (comments left out)."""
    for path in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
            for line in block.splitlines():
                m = re.match(r"\s*meharl ((?!train)\w+.*?)\s*(#.*)?$", line)
                if m:
                    yield f"{path.relative_to(ROOT)}: {m.group(0).strip()}", shlex.split(m.group(1))


@pytest.mark.slow
def test_every_documented_train_command_builds_and_traces(tmp_path):
    """Every documented `meharl train` command: its keys, values and task resolve, and its
    whole training program (init, warmup, a chunk of blocks, the evaluation) is built and
    traced with abstract values (jax.eval_shape: every shape and code path of that config,
    without compiling or running it; host-stepped environments: built, the learner's state
    traced). A command that rots fails here, before anyone copies it."""
    import jax

    from meharl.cli import DEFAULT_MAIN
    from meharl.config import parse_overrides, resolve
    from meharl.envs import is_host
    from meharl.experiment import Experiment

    commands, traced = list(_train_commands()), set()
    assert len(commands) > 15
    for where, args in commands:
        try:
            cfg = resolve(parse_overrides(args) if args else dict(DEFAULT_MAIN))  # bare `meharl train`: the main job
            if repr(cfg.to_dict()) in traced:
                continue
            traced.add(repr(cfg.to_dict()))
            exp = Experiment(cfg, tmp_path, quiet=True)
            rs = exp.loop.template(exp.seed_keys())
            if not is_host(cfg.env):
                rs = jax.eval_shape(exp.loop.warmup, rs)
                jax.eval_shape(exp.loop.chunk, rs, 1)
                jax.eval_shape(exp.loop.evaluate, rs.algo, exp.eval_keys(0))
            exp.runner.close()
        except Exception as e:
            raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e


def test_every_other_documented_command_parses_and_the_cheap_ones_run(tmp_path, monkeypatch, capsys):
    """The README's and the docs' `meharl eval / plot / report / sweep / solve / list` lines:
    each parses (its options exist and take their values); `sweep` lines run as a dry run (the
    grid's every key and value valid for every algorithm of it), `solve` and `list` run."""
    from meharl.cli import main, parser

    commands = list(_shell_commands())
    assert {a[0] for _, a in commands} >= {"eval", "plot", "report", "sweep", "solve", "list"}
    monkeypatch.chdir(tmp_path)
    for where, args in commands:
        try:
            parser(args).parse_args(args)
        except SystemExit as e:
            raise AssertionError(f"{where}: does not parse: {capsys.readouterr().err}") from e
        if args[0] in ("solve", "list") or (args[0] == "sweep" and "..." not in args):
            run = args + ["--dry-run"] if args[0] == "sweep" and "--dry-run" not in args else args
            if "--file" in run:  # the grid file the docs describe
                (tmp_path / run[run.index("--file") + 1]).write_text("algo: [hasac, happo]\nseeds: 0-2\n")
            capsys.readouterr()
            assert main(run) == 0, f"{where}: {capsys.readouterr().err}"


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block, executed as written (in a scratch working directory)."""
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
