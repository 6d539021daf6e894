"The recipe section's pieces on planted data: the design, shared bases, structure against the null, the verdict keys."
import numpy as np
import torch
from amplitude_nb.model import GPT, GPTConfig
from amplitude_nb.amplitudes import target_names
from amplitude_nb.study import CLAIMS
from amplitude_nb.recipe import (CENTRE, TARGET_SETS, design, recipe_bases, shared_groups, run_structure,
                                 claim_verdicts, match_rate)

INTERACTIONS = [{'optimizer': 'sgd', 'basis': 'spectral'}, {'optimizer': 'sgd', 'basis': 'matrix'},
                {'optimizer': 'sgd', 'steps': 'long'}]

def test_design_is_one_factor_at_a_time_plus_interactions():
    cells = design(INTERACTIONS)
    assert len(cells) == 10 and cells[0] == CENTRE
    changed = [sum(c[k] != CENTRE[k] for k in CENTRE) for c in cells]
    assert changed == [0] + [1] * 6 + [2] * 3

def test_random_bases_orthonormal_and_shared_per_kind():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=64, n_ctx=16, n_embd=32, n_layer=4, n_head=2))
    names = target_names(m, TARGET_SETS['c_attn+c_proj'])
    for b in ('kind', 'matrix'):
        for P in recipe_bases(m, names, 8, b).values():
            assert torch.allclose(P @ P.T, torch.eye(8), atol=1e-5)
    assert sorted(len(v) for v in shared_groups(recipe_bases(m, names, 8, 'kind')).values()) == [4, 4]
    assert shared_groups(recipe_bases(m, names, 8, 'matrix')) == {}

def test_isotropic_is_noise_and_rank_two_is_structured():
    rng = np.random.default_rng(1)
    names = [f'transformer.h.{i}.attn.c_proj' for i in range(3)]
    iso = {n: rng.standard_normal((768, 8)) for n in names}        # GPT-2-small width, isotropic amplitudes
    s, per = run_structure(iso, {'attn.c_proj': names}, n_boot=100, n_null=100)
    assert not per.structured.any() and s['global_structured'] is False and not s['crystallizable']
    U = rng.standard_normal((2, 8))
    rank2 = {n: rng.standard_normal((128, 2)) @ U + 1e-3 * rng.standard_normal((128, 8)) for n in names}
    s2, per2 = run_structure(rank2, {'attn.c_proj': names}, n_boot=100, n_null=100)
    assert per2.structured.all() and s2['global_structured']
    assert 1.5 < s2['global_PR'] <= 2.05

def test_verdicts_one_per_claim():
    run = dict(run='r', val_before=6.0, val_after=5.9, groups=[], crystallizable=[], min_PR=3.0, min_PR_matrix='L0 c_attn', depth_rho=0.1, depth_p=0.6,
               max_kurtosis=2.0, max_kurtosis_matrix='L0 c_attn', kurtosis=1.0)
    v = claim_verdicts([run])
    assert set(v) == {'structured', 'global_pr', 'crystallizable', 'depth', 'kurtosis'} and set(v) <= set(CLAIMS)
    assert all(isinstance(x, str) and x for x in v.values())

def test_match_rate_picks_nearest_finite():
    assert match_rate({3.0: 5.95, 10.0: 5.86, 30.0: float('inf')}, 5.88) == 10.0
