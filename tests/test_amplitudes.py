"Bases, basis sharing, the amplitude file's formats and fit fidelity: planted truth, fast."
import math, warnings
import numpy as np, pytest, torch
from safetensors.torch import save_file
from amplitude_nb.model import GPT, GPTConfig
from amplitude_nb.amplitudes import (FORMAT, FORMAT_V1, AmplitudeFileError, random_basis, random_basis_v1,
                                     spectral_basis, make_bases, target_names, matrix_seed, read_amplitude_file,
                                     save_amplitudes, file_bases, fit_amplitudes, fidelity_chance, fidelity_bound,
                                     functional_fidelity)

def gram_err(P): return (P.double() @ P.double().T - torch.eye(len(P), dtype=torch.float64)).abs().max().item()

@pytest.fixture(scope='module')
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, n_ctx=8, n_embd=32, n_layer=3, n_head=4))

@pytest.mark.parametrize('n_in', [8, 16, 128, 768])
def test_random_basis_orthonormal_and_seeded(n_in):
    P = random_basis(n_in, 8, seed=11)
    assert gram_err(P) < 1e-6
    assert torch.equal(P, random_basis(n_in, 8, seed=11))
    assert not torch.equal(P, random_basis(n_in, 8, seed=12))

def test_spectral_basis_orthonormal():
    torch.manual_seed(0)
    X = torch.randn(500, 48, dtype=torch.float64) * torch.linspace(3, 0.1, 48, dtype=torch.float64)
    assert gram_err(spectral_basis(X.T @ X / 500, 8)) < 1e-6

def test_share_kind(gpt):
    names = target_names(gpt)
    kb = make_bases(gpt, names, K=4, seed=0)
    for kind in ('attn.c_attn', 'attn.c_proj'):
        same = [kb[f'transformer.h.{i}.{kind}'] for i in range(3)]
        assert all(torch.equal(same[0], b) for b in same[1:])
    assert not torch.equal(kb['transformer.h.0.attn.c_attn'], kb['transformer.h.0.attn.c_proj'])
    mb = make_bases(gpt, names, K=4, seed=0, share='matrix')
    assert not torch.equal(mb['transformer.h.0.attn.c_proj'], mb['transformer.h.1.attn.c_proj'])

def test_v1_file_read_with_one_note(tmp_path):
    p = tmp_path/'old.safetensors'
    save_file({'transformer.h.0.attn.c_proj.amplitudes': torch.ones(32, 4)}, str(p),
              metadata=dict(format=FORMAT_V1, K='4', basis='random', seed='3'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        amps, meta = read_amplitude_file(p)
    assert len(caught) == 1 and str(p) in str(caught[0].message) and '\n' not in str(caught[0].message)
    assert meta == dict(format=FORMAT_V1, K=4, basis='random', share='matrix', seed=3, orthonormal=False)
    b = file_bases(meta, {'transformer.h.0.attn.c_proj': 32})['transformer.h.0.attn.c_proj']
    assert torch.equal(b, random_basis_v1(32, 4, matrix_seed(3, 'transformer.h.0.attn.c_proj')))

def test_v2_file_roundtrip_and_bases(tmp_path, gpt):
    names = target_names(gpt)
    amps = {n: np.zeros((gpt.get_submodule(n).weight.shape[0], 4)) for n in names}
    p = save_amplitudes(amps, tmp_path/'a.safetensors', K=4, seed=2)
    _, meta = read_amplitude_file(p)
    assert meta == dict(format=FORMAT, K=4, basis='random', share='kind', seed=2, orthonormal=True)
    fb, mb = file_bases(meta, {n: 32 for n in names}), make_bases(gpt, names, K=4, seed=2)
    assert all(torch.equal(fb[n], mb[n]) for n in names)

def test_unknown_format_refused(tmp_path):
    p = tmp_path/'future.safetensors'
    meta = dict(format='amplitude-nb/7', K='4', basis='random', share='kind', seed='0')
    save_file({'a.amplitudes': torch.ones(3, 4)}, str(p), metadata=meta)
    with pytest.raises(AmplitudeFileError) as e: read_amplitude_file(p)
    msg = str(e.value)
    assert str(p) in msg and 'amplitude-nb/7' in msg and '\n' not in msg

def test_fidelity_chance_and_bound():
    g = torch.Generator().manual_seed(0)
    fids = [fit_amplitudes(torch.randn(1000, 96, generator=g), None, random_basis(96, 8, s))[1] for s in range(10)]
    assert abs(np.mean(fids) - fidelity_chance(96, 8)) < 0.004
    low = torch.randn(50, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 96, generator=g, dtype=torch.float64)
    assert abs(fidelity_bound(low, 3) - 1) < 1e-9 and fidelity_bound(low, 2) < 1

def test_functional_fidelity():
    assert functional_fidelity(4.0, 3.0, 3.75) == 0.25
    assert math.isnan(functional_fidelity(4.0, 4.0, 3.0))

def test_noise_update_at_chance_gpt2_width():
    "A 'fine-tune' that is the base plus i.i.d. noise, at GPT-2-small width: every matrix's fidelity is at K/n_in."
    from amplitude_nb.amplitudes import fit_records
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=16, n_ctx=8, n_embd=768, n_layer=1, n_head=12))
    noisy = GPT(base.config); noisy.load_state_dict(base.state_dict())
    with torch.no_grad():
        for p in noisy.parameters(): p.add_(0.01 * torch.randn_like(p))
    recs = fit_records(noisy, base, make_bases(base, target_names(base), K=8, seed=0))
    for r in recs:
        assert r['fidelity_chance'] == 8 / 768
        assert abs(r['fidelity'] / r['fidelity_chance'] - 1) < 0.15, r
        assert r['fidelity_bound'] > 1.5 * r['fidelity_chance']
