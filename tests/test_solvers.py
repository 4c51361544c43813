"""The exact solver reproduces Table 3 of the HASAC paper (Appendix B) to 4 decimals."""
import json
import subprocess
import sys

import numpy as np
import pytest

from meharl.envs import PAYOFFS
from meharl.solvers import haspi, qre_residual, solve_game

# alpha: (policy of agent 1 after the first update, converged policy of both agents)
TABLE_3 = {
    1: ([0.9990, 0.0001, 0.0009], [1.0000, 0.0000, 0.0000]),
    2: ([0.9603, 0.0107, 0.0290], [1.0000, 0.0000, 0.0000]),
    5: ([0.7083, 0.1171, 0.1747], [0.9849, 0.0075, 0.0076]),
    10: ([0.5254, 0.2136, 0.2609], [0.0221, 0.0224, 0.9555]),
    15: ([0.4596, 0.2522, 0.2882], [0.1278, 0.1354, 0.7368]),
    20: ([0.4269, 0.2722, 0.3009], [0.2514, 0.2790, 0.4697]),
}


@pytest.mark.parametrize("alpha", sorted(TABLE_3))
def test_table_3(alpha):
    first, converged = TABLE_3[alpha]
    res = solve_game("hasac_3x3", alpha)
    np.testing.assert_array_equal(np.round(res["first_update"][0], 4), first)
    for agent in range(2):
        np.testing.assert_array_equal(np.round(res["converged"][agent], 4), converged)
    # Theorem 1: the limit is a QRE
    assert res["qre_residual"] < 1e-10


def test_alpha_zero_is_the_suboptimal_nash():
    res = solve_game("hasac_3x3", 0.0)
    assert res["converged"] == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]


def test_qre_check_rejects_non_equilibria():
    payoff = PAYOFFS["hasac_3x3"][0]
    uniform = [np.full(3, 1 / 3)] * 2
    assert qre_residual(payoff, uniform, 10.0) > 0.05  # ~0.097; a QRE scores < 1e-10


def test_three_agent_game_converges_to_a_qre():
    payoff = np.random.default_rng(0).normal(size=(2, 3, 2))
    _, conv, _ = haspi(payoff, alpha=1.0)
    assert qre_residual(payoff, conv, 1.0) < 1e-9


def test_solve_cli_json():
    out = subprocess.run([sys.executable, "-m", "meharl.cli", "solve", "--game", "hasac_3x3", "--alpha", "10", "--json"],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(res) >= {"first_update", "converged"}
    assert np.round(res["converged"][0], 4).tolist() == TABLE_3[10][1]


def test_unknown_game_names_choices():
    with pytest.raises(ValueError, match="hasac_3x3"):
        solve_game("nope", 1.0)
