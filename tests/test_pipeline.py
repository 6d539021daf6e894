"End to end: `reproduce --profile smoke`, determinism of metrics.json, `run` on a transformers checkpoint, failure handling."
import json, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
import transformers
from amplitude_nb.pipeline import run_sections, RunError, NOTEBOOKS
from amplitude_nb.train import reference_checkpoints

CLI = str(Path(sys.executable).parent/'amplitude-nb')
transformers.logging.set_verbosity_error()

def cli(*args):
    r = subprocess.run([CLI, *map(str, args), '--quiet'], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r

def without_timing(p):
    m = json.loads((Path(p)/'metrics.json').read_text()); m.pop('timing'); return m

@pytest.fixture(scope='module')
def smoke_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp('runs')
    cli('reproduce', '--profile', 'smoke', '--out', d/'a')
    cli('reproduce', '--profile', 'smoke', '--out', d/'b')
    return d/'a', d/'b'

def test_reproduce_smoke_writes_a_report(smoke_runs):
    a, _ = smoke_runs
    m = json.loads((a/'metrics.json').read_text())
    assert set(m['run']['sections']) | set(m['run']['skipped']) == set(NOTEBOOKS)
    for s in m['run']['sections']:
        assert s in m, f"section {s} recorded no metrics"
        assert (a/NOTEBOOKS[s]).exists() and (a/NOTEBOOKS[s]).with_suffix('.html').exists()
    assert 'timing' in m and m['run']['profile'] == 'smoke'
    report = (a/'REPORT.md').read_text()
    assert '## 1. Structure metrics' in report and 'paper' in report
    assert not list(a.parent.glob('a.tmp-*'))

def test_same_run_same_metrics(smoke_runs):
    a, b = smoke_runs
    assert without_timing(a) == without_timing(b)

def hf_dirs(tmp_path, tok_dir):
    "A transformers GPT-2 with the smoke tokenizer, and a 'fine-tuned' copy of it."
    from amplitude_nb.data import load_tokenizer
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=24, n_layer=2, n_head=3)
    base = transformers.GPT2LMHeadModel(cfg)
    base.save_pretrained(tmp_path/'base'); tok.save(str(tmp_path/'base'/'tokenizer.json'))
    with torch.no_grad():
        for n, p in base.named_parameters():
            if 'attn' in n and n.endswith('weight'): p.add_(0.01 * torch.randn_like(p))
    base.save_pretrained(tmp_path/'tuned'); tok.save(str(tmp_path/'tuned'/'tokenizer.json'))
    return tmp_path/'base', tmp_path/'tuned'

def test_run_on_a_transformers_checkpoint(tmp_path):
    base, tuned = hf_dirs(tmp_path, reference_checkpoints('smoke', progress=False)['base'])
    cli('run', '--checkpoint', tuned, '--base', base, '--sizes', 'smoke', '--out', tmp_path/'with_base')
    m = json.loads((tmp_path/'with_base'/'metrics.json').read_text())
    assert m['run']['skipped'] == {}
    assert len(m['run']['fidelity']) == 4 and all(0 <= f <= 1 for f in m['run']['fidelity'].values())
    cli('run', '--checkpoint', tuned, '--sizes', 'smoke', '--out', tmp_path/'no_base')
    m = json.loads((tmp_path/'no_base'/'metrics.json').read_text())
    assert set(m['run']['skipped']) == {'corpus', 'sft', 'compression'}
    assert 'W0 = 0' in (tmp_path/'no_base'/'REPORT.md').read_text()

def test_failed_notebook_keeps_the_old_report(tmp_path):
    good = reference_checkpoints('smoke', progress=False)['amplitudes']
    out = tmp_path/'run'
    run_sections(good, out, {'profile': 'smoke'}, sections=['structure'], profile='smoke', progress=False, html=False)
    before = (out/'REPORT.md').read_text()
    bad = tmp_path/'bad'; shutil.copytree(good, bad)
    (bad/'amplitudes.safetensors').write_bytes(b'not safetensors')
    with pytest.raises(RunError, match=NOTEBOOKS['structure']):
        run_sections(bad, out, {'profile': 'smoke'}, sections=['structure'], profile='smoke', progress=False, html=False)
    assert (out/'REPORT.md').read_text() == before
    assert (tmp_path/'run.failed'/NOTEBOOKS['structure']).exists()
    assert not list(tmp_path.glob('run.tmp-*'))
