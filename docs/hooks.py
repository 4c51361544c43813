"""MkDocs hook: the configuration reference, generated from the config classes when the site
is built (so it cannot drift from the code). It replaces ``<!-- config-reference -->``."""
from __future__ import annotations

import dataclasses

MARKER = "<!-- config-reference -->"


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


def on_page_markdown(markdown, page, config, files):
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
