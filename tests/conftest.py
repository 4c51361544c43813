"""Shared test helpers."""
import jax
import pytest

from meharl.experiment import Experiment


def random_return(exp, episodes=40):
    """The team return of the uniform random policy on the task of the experiment ``exp``."""
    from meharl.runners.offpolicy import play_episodes

    algo = exp.runner.algo

    def act(k, _, ts):
        keys = jax.random.split(k, ts.action_mask.shape[0])
        return algo.env_actions(jax.vmap(algo.random_actions)(ts.action_mask, keys))

    return float(play_episodes(exp.env, act, jax.random.PRNGKey(7), episodes)[0].mean())


@pytest.fixture
def interrupt_after_second_checkpoint(monkeypatch):
    """``run(exp)``: train until the second checkpoint is written, keep that state as
    ``exp.saved_state``, then stop as a Ctrl-C would. Checkpointing is normal afterwards."""
    original = Experiment.save_checkpoint

    def run(exp):
        calls = {"n": 0}

        def interrupting(self, rs, progress):
            original(self, rs, progress)
            calls["n"] += 1
            if calls["n"] == 2:
                self.saved_state = rs
                raise KeyboardInterrupt

        monkeypatch.setattr(Experiment, "save_checkpoint", interrupting)
        with pytest.raises(KeyboardInterrupt):
            exp.run()
        monkeypatch.setattr(Experiment, "save_checkpoint", original)

    return run


def pytest_itemcollected(item):
    """Tests sharing a module-scoped fixture (a trained run, a compiled rollout) are one
    xdist group (``--dist loadgroup``): they run on one worker, which builds the fixture once
    instead of every worker building its own. (Marked as collected: xdist reads the groups
    in its pytest_collection_modifyitems.)"""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    shared = sorted(name for name, d in defs.items() if d and d[-1].scope == "module")
    if shared:
        item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{shared[0]}"))


def pytest_collection_modifyitems(items):
    """The ``slow`` tests (CI-sized learning runs, tens of seconds each) first: xdist hands out
    work in collection order (after the fixture groups), so the long tests start in the first
    wave and short ones fill the workers at the end, instead of one long test running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    """One persistent XLA compilation cache for the session (and the CLI subprocesses it
    starts): tests that build the same program again (a resumed or extended run, the same
    config in another test) load it instead of compiling it. Programs, not results, are cached."""
    import os
    import tempfile

    import jax

    # XLA's CPU backend at optimisation level 2 instead of 3: the suite is mostly compilation of
    # small programs, which level 2 compiles faster at the same run time (docs/architecture.md, Tests)
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=2").strip()
    cache = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="meharl-xla-cache-"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
