"""Several accelerators: the seed axis of a run is sharded over them, with the numbers of the
unsharded run. On CPU, XLA is told to show two host devices (in a child process: the flag
must be set before JAX starts)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from meharl.experiment import train

CONFIG = {"env": "matrix/hasac_3x3", "seeds": "0,1", "total_steps": 1500}
CHILD = """
import json, sys
import jax
from meharl.experiment import train
exp = train(json.loads(sys.argv[1]), run_dir=sys.argv[2], quiet=True)
leaf = jax.tree.leaves(exp.state.algo)[0]
print(json.dumps({"devices": len(jax.devices()), "holding": len(leaf.sharding.device_set),
                  "shard_seeds": leaf.sharding.shard_shape(leaf.shape)[0], "rows": exp.rows}))
"""


def _numbers(rows):
    """Every row's numbers in one flat list (the first row, at step 0, has no losses)."""
    return [v for r in rows for k, v in sorted(r.items()) if k not in ("wall_time", "eval_returns")]


@pytest.mark.slow
def test_the_seed_axis_is_sharded_over_two_devices_with_the_same_numbers(tmp_path):
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CONFIG), str(tmp_path / "sharded")], env=env,
                         capture_output=True, text=True, check=True)
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    assert (sharded["devices"], sharded["holding"], sharded["shard_seeds"]) == (2, 2, 1)  # one seed per device
    single = train(CONFIG, run_dir=tmp_path / "single", quiet=True).rows
    assert [sorted(r) for r in sharded["rows"]] == [sorted(r) for r in single]
    np.testing.assert_allclose(_numbers(sharded["rows"]), _numbers(single), rtol=1e-5)
