"""The sequential template: HASAC on it gives the numbers it gave before the move."""
import json
from pathlib import Path

import numpy as np
import pytest

from meharl.experiment import train

BEFORE = json.loads((Path(__file__).parent / "data" / "hasac_before_template.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BEFORE))
def test_hasac_on_the_template_reproduces_its_numbers_from_before_the_move(case, tmp_path):
    """Short fixed-seed runs recorded with HASAC's own loop (commit f740a85, this CPU) before it
    moved onto algorithms/sequential.py. Same program, same key splits: equal to float32
    rounding (rtol 1e-5: XLA may fuse the moved code's ops in another order). Two of the four
    recordings remain (CI time): continuous actions (MPE) and SMAX with one actor per agent;
    the discrete matrix game and SMAX with a shared actor were dropped on 2026-12-06."""
    before = BEFORE[case]
    rows = train(before["overrides"], run_dir=tmp_path, quiet=True).rows
    assert len(rows) == len(before["rows"])
    for got, want in zip(rows, before["rows"]):
        for k, v in want.items():
            if isinstance(v, float) or (isinstance(v, list) and all(isinstance(x, float) for x in v)):
                np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6, err_msg=f"{case} {k} at {want['env_steps']}")
            else:
                assert got[k] == v, (case, k)
