"Structure report (`amplitude-nb structure`) on planted files and bad input; planted updates: noise is noise."
import json, math
from pathlib import Path
import numpy as np
import pytest
from amplitude_nb.amplitudes import AmplitudeFileError, read_amplitude_file, save_amplitudes
from amplitude_nb.structure import (COLUMNS, global_rows, matrix_rows, null_pr, pr_inference, structure_report,
                                    structure_table)

@pytest.fixture
def rank1_file(tmp_path):
    "An amplitude file whose matrices are rank one: every row a multiple of one direction (PR = 1)."
    rng = np.random.default_rng(0)
    v = rng.uniform(0.5, 2.0, 8)
    amps = {f"transformer.h.{i}.attn.{k}": rng.standard_normal((rows, 1)) * v
            for i in range(2) for k, rows in (('c_attn', 48), ('c_proj', 16))}
    return save_amplitudes(amps, tmp_path/'ckpt'/'amplitudes.safetensors', basis='random', K=8, seed=0)

def test_text_report(rank1_file):
    txt = structure_report(rank1_file, n_boot=50)
    assert str(rank1_file) in txt
    assert 'Global amplitude structure' in txt and 'Per-layer structure' in txt
    for label in ('L0 c_attn', 'L0 c_proj', 'L1 c_attn', 'L1 c_proj'): assert label in txt
    assert txt.count('crystallizable') >= 5          # 4 matrices (+ global rows), plus the legend line
    assert 'compressible' not in txt

def test_json_report(rank1_file):
    recs = json.loads(structure_report(rank1_file.parent, as_json=True, n_boot=50))   # a checkpoint dir works too
    share = read_amplitude_file(rank1_file)[1].get('share', 'matrix')                 # what the file declares
    groups = ['global attn.c_attn', 'global attn.c_proj'] if share == 'kind' else []
    assert len(recs) == 4 + len(groups) and [r['matrix'] for r in recs[4:]] == groups
    for r in recs:
        assert list(r) == COLUMNS + ['class']
        assert math.isclose(r['PR'], 1.0, abs_tol=1e-6) and math.isclose(r['PC1'], 1.0, abs_tol=1e-6)
        assert r['k95'] == 1 and r['class'] == 'crystallizable'
    assert [r['layer'] for r in recs[:4]] == [0, 0, 1, 1]
    assert all(r['layer'] is None for r in recs[4:])

def test_global_rows_of_rank_one_amplitudes():
    "Bases shared per kind: one global row per kind (and 'global' for a single kind), each rank one."
    rng = np.random.default_rng(0)
    v = rng.uniform(0.5, 2.0, 8)
    amps = {f"transformer.h.{i}.attn.{k}": rng.standard_normal((rows, 1)) * v
            for i in range(2) for k, rows in (('c_attn', 48), ('c_proj', 16))}
    t = structure_table(amps, dict(share='kind'), n_boot=50)
    g = global_rows(t)
    assert g.matrix.tolist() == ['global attn.c_attn', 'global attn.c_proj'] and g.label.tolist() == ['global c_attn', 'global c_proj']
    assert g.rows.tolist() == [96, 32] and np.allclose(g.PR, 1) and g.structured.all()
    assert g.members.iloc[1] == ['transformer.h.0.attn.c_proj', 'transformer.h.1.attn.c_proj']
    one = structure_table({k: a for k, a in amps.items() if 'c_proj' in k}, dict(share='kind'), n_boot=50)
    assert global_rows(one).matrix.tolist() == ['global attn.c_proj', 'global']
    assert len(global_rows(structure_table(amps, dict(share='matrix'), n_boot=20))) == 0
    assert len(global_rows(structure_table(amps, n_boot=20))) == 0                # no metadata: per-matrix bases

def test_json_is_strict_with_undefined_values(tmp_path):
    p = save_amplitudes({'transformer.h.0.attn.c_proj': np.zeros((6, 8))}, tmp_path/'amplitudes.safetensors')
    txt = structure_report(p, as_json=True, n_boot=20)
    assert 'NaN' not in txt
    recs = json.loads(txt)
    assert recs[0]['PR'] is None and recs[0]['class'] is None

def test_missing_file(tmp_path):
    p = tmp_path/'nope.safetensors'
    with pytest.raises(AmplitudeFileError, match='nope.safetensors'): structure_report(p)

def test_directory_without_amplitudes(tmp_path):
    d = tmp_path/'empty_ckpt'; d.mkdir()
    with pytest.raises(AmplitudeFileError, match='empty_ckpt'): structure_report(d)

def test_not_safetensors(tmp_path):
    p = tmp_path/'model.safetensors'; p.write_text('this is not a safetensors file')
    with pytest.raises(AmplitudeFileError, match='model.safetensors'): structure_report(p)

# Planted updates: noise must read as noise, a rank-2 update as structure.

def qr_basis(n_in, K, seed):
    "K exactly orthonormal rows: QR of a seeded Gaussian draw."
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((n_in, K)))[0].T

def old_basis(n_in, K, seed):
    "The amplitude-nb/1 random basis: N(0, 1/n_in) entries, rows only near-orthonormal."
    return np.random.default_rng(seed).standard_normal((K, n_in)) / np.sqrt(n_in)

def fit(dW, Phi): return np.linalg.solve(Phi @ Phi.T, Phi @ dW.T).T      # ΔW Φᵀ(ΦΦᵀ)⁻¹

def fitted(shapes, K=8, seed=0, rank=0, noise=1.0, basis=qr_basis):
    "Amplitudes of planted updates {module: (rows, n_in)} fitted through one basis per kind; and the bases."
    g = np.random.default_rng(seed)
    kinds = {m.split('.', 3)[-1]: n for m, (_, n) in shapes.items()}
    bases = {k: basis(n, K, seed + i) for i, (k, n) in enumerate(kinds.items())}
    R = np.linalg.qr(g.standard_normal((K, max(rank, 1))))[0].T
    amps = {}
    for m, (rows, n_in) in shapes.items():
        Phi = bases[m.split('.', 3)[-1]]
        dW = noise * g.standard_normal((rows, n_in))
        if rank: dW += g.standard_normal((rows, rank)) @ R @ Phi
        amps[m] = fit(dW, Phi)
    return amps, bases

@pytest.mark.parametrize('width,shapes', [
    (768, {f'transformer.h.{i}.attn.c_proj': (768, 768) for i in range(3)}),
    (128, {f'transformer.h.{i}.attn.{k}': (r, 128) for i in range(4) for k, r in (('c_attn', 384), ('c_proj', 128))})])
def test_isotropic_update_is_noise(width, shapes):
    amps, _ = fitted(shapes, seed=width)
    t = structure_table(amps, dict(share='kind', basis='random', format='amplitude-nb/2'), n_boot=100, n_null=100)
    assert len(global_rows(t)) >= 1 and len(matrix_rows(t)) == len(shapes)
    assert not t.structured.any(), t[['matrix', 'PR_ci_low', 'PR_ci_high', 'PR_null_low', 'PR_null_high']]
    assert all(v.startswith('indistinguishable from noise') for v in t.verdict)

def test_rank2_update_is_structured():
    amps, _ = fitted({f'transformer.h.{i}.attn.c_proj': (768, 768) for i in range(2)}, rank=2, noise=0.05)
    t = structure_table(amps, dict(share='kind'), n_boot=100, n_null=100)
    assert np.allclose(t.PR, 2.0, atol=0.3), t.PR
    assert t.structured.all() and all(v.startswith('structured') for v in t.verdict)

def test_old_basis_null():
    "Noise fitted through the old near-orthonormal basis: structured against an isotropic null, noise against its own."
    amps, bases = fitted({f'transformer.h.{i}.attn.c_proj': (128, 128) for i in range(8)}, seed=4, basis=old_basis)
    A = np.concatenate(list(amps.values()))
    assert pr_inference(A, 100, n_null=100)['structured']
    assert not pr_inference(A, 100, n_null=100, Phi=bases['attn.c_proj'], how='fit')['structured']

def test_null_with_orthonormal_basis_is_isotropic():
    Phi = qr_basis(64, 8, 0)
    assert null_pr(128, 8, 50, Phi=Phi) == null_pr(128, 8, 50) == null_pr(128, 8, 50, Phi=Phi, how='gradient')

def test_erank_column():
    "The entropy effective rank: K for isotropic rows with an exact orthogonal design, 1 for rank one, 2 for two equal directions."
    from scipy.linalg import hadamard
    H = hadamard(16)[:, 1:9].astype(float)                              # covariance exactly ∝ I
    two = np.c_[H[:, :2], np.zeros((16, 6))]                            # two equal directions
    one = np.random.default_rng(0).standard_normal((50, 1)) * np.arange(1, 9)
    t = structure_table({'transformer.h.0.attn.c_attn': H, 'transformer.h.1.attn.c_attn': two,
                         'transformer.h.2.attn.c_attn': one}, n_boot=20)
    assert np.allclose(t.erank, [8, 2, 1]) and 'erank' in COLUMNS
