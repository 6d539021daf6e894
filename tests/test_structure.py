"Structure report (the `amplitude-nb structure` command's engine) on planted amplitude files, and its bad input."
import json, math
from pathlib import Path
import numpy as np
import pytest
from amplitude_nb.amplitudes import AmplitudeFileError, save_amplitudes
from amplitude_nb.structure import COLUMNS, structure_report

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
    assert txt.count('crystallizable') >= 5          # 4 matrices + global, plus the legend line
    assert 'compressible' not in txt

def test_json_report(rank1_file):
    recs = json.loads(structure_report(rank1_file.parent, as_json=True, n_boot=50))   # a checkpoint dir works too
    assert len(recs) == 5 and recs[-1]['matrix'] == 'global' and recs[-1]['layer'] is None
    for r in recs:
        assert list(r) == COLUMNS + ['class']
        assert math.isclose(r['PR'], 1.0, abs_tol=1e-6) and math.isclose(r['PC1'], 1.0, abs_tol=1e-6)
        assert r['k95'] == 1 and r['class'] == 'crystallizable'
    assert [r['layer'] for r in recs[:4]] == [0, 0, 1, 1]

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
