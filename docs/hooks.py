"""MkDocs hook: the configuration reference, generated from the config classes when the site
is built (so it cannot drift from the code). ``<!-- config-reference -->`` becomes every
section's keys; ``<!-- keys: happo, mappo -->`` on an algorithm's page becomes those
algorithms' keys."""
from __future__ import annotations

import dataclasses
import re

MARKER = "<!-- config-reference -->"
KEYS = re.compile(r"<!-- keys: ([a-z0-9_, ]+) -->")


def _rows(cls, skip=()):
    out = ["| key | default | type | meaning |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        choices = f.metadata.get("choices")
        help_ = f.metadata.get("help", "") + (f" (one of: {', '.join(map(str, choices))})" if choices else "")
        kind = str(f.type).replace("typing.", "").replace("|", "or")
        out.append(f"| `{f.name}` | `{default!r}` | {kind} | {help_} |")
    return "\n".join(out)


def reference() -> str:
    from meharl.algorithms import ALGORITHMS
    from meharl.config import EnvConfig, RunConfig

    parts = ["## Run section", _rows(RunConfig), "## Environment section", _rows(EnvConfig), "## Algorithm sections"]
    for name, algo in ALGORITHMS.items():
        parts += [f"### `algo={name}`", algo.description, _rows(algo.Config)]
    return "\n\n".join(parts)


def algorithm_keys(names: str) -> str:
    from meharl.algorithms import ALGORITHMS

    return "\n\n".join(f"`algo={n}`: {ALGORITHMS[n].description}\n\n" + _rows(ALGORITHMS[n].Config)
                       for n in (name.strip() for name in names.split(",")))


def on_page_markdown(markdown, page, config, files):
    markdown = markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
    return KEYS.sub(lambda m: algorithm_keys(m.group(1)), markdown)
