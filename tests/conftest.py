"""Shared test helpers."""
import pytest

from meharl.experiment import Experiment


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
