"""End to end: `run` on fitted checkpoints (planted: amplitudes that are exactly recoverable), a checkpoint without
a base, an --out that is a file, a full disk, a killed run's work folder. The tests that share one smoke run
are in test_smoke_run.py."""
import json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat, pytest, torch
import transformers
from amplitude_nb import study
from amplitude_nb.pipeline import run, run_sections, reproduce, RunError, RunFolderError, network_loads
from conftest import CLI, ROOT, env_with_tmp, cli, metrics, kernel_dirs
transformers.logging.set_verbosity_error()

def planted_finetune(base_dir, tmp_path):
    """Planted: base + AΦ in the package's default basis, A trained on the held-out SFT batches themselves
    (so the fine-tune surely gains there), saved as a plain checkpoint without a tokenizer; returns (dir, A)."""
    from amplitude_nb import data
    from amplitude_nb.amplitudes import add_amplitudes, amplitude_modules, dense_model, get_amplitudes
    from amplitude_nb.model import load_checkpoint, save_checkpoint, lm_loss
    from amplitude_nb.pipeline import heldout_losses
    m, tok = add_amplitudes(load_checkpoint(base_dir), K=8, seed=0), data.load_tokenizer(base_dir)
    val = data.SFTData(tok, data.split_pairs(data.get_sft_pairs(None))['val'], m.config.n_ctx)
    batches = data.eval_batches(val, 16, n=128, seed=0)
    amps = [mod.amplitudes for mod in amplitude_modules(m).values()]
    for q in m.parameters(): q.requires_grad_(any(q is a for a in amps))
    opt = torch.optim.Adam(amps, lr=0.01)
    for _ in range(30):
        opt.zero_grad(); (sum(lm_loss(m(x), y) for x, y in batches) / len(batches)).backward(); opt.step()
    losses = heldout_losses(dict(m=m, base=load_checkpoint(base_dir)), tok, m.config.n_ctx)
    assert losses['m'] < losses['base'] - 5e-4, losses                  # a small model: a small, real gain
    from amplitude_nb.compression import paired_gain
    means, per, tokens = heldout_losses(dict(m=m, base=load_checkpoint(base_dir)), tok, m.config.n_ctx, paired=True)
    assert means == losses and set(per) == {'m', 'base'} and len(tokens) == len(per['m']) > 1
    gain, se = paired_gain(per['base'], per['m'], tokens)
    assert gain == pytest.approx(losses['base'] - losses['m'], rel=1e-4) and se > 0, (gain, se)
    tuned = save_checkpoint(dense_model(m, merge=True), tmp_path/'tuned')
    assert not (tuned/'tokenizer.json').exists()
    return tuned, get_amplitudes(m)

def test_run_fits_a_dense_checkpoint(tmp_path, refs):
    "The fine-tune is exactly base + AΦ: the fit recovers A (fidelity 1) and keeps all of its held-out gain."
    from amplitude_nb.amplitudes import read_amplitude_file
    from safetensors import safe_open
    base = refs['base']
    tuned, planted = planted_finetune(base, tmp_path)
    lines = []
    out = run(tuned, base, sft=None, out=tmp_path/'fitted', sections=['gradient', 'compression'], sizes='smoke',
              progress=False, html=False, log=lines.append)
    m = metrics(out)
    assert m['run']['profile'] == 'run' and 'corpus_sha256' not in m['run']
    assert m['run']['sections'] == ['gradient', 'compression'] and 'corpus' not in m['run']['skipped']
    recs = m['fit']['matrices']
    assert [r['matrix'] for r in recs] == list(planted)
    for r in recs:
        assert r['fidelity'] > 0.999 and r['fidelity'] <= r['fidelity_bound'] + 1e-9
        assert r['fidelity_chance'] == pytest.approx(8 / 16)                     # K / n_in at width 16
    assert m['fit']['functional_fidelity'] == pytest.approx(1, abs=0.01)
    f = m['fit']                                     # the held-out gain and the kept share with paired standard errors
    assert f['gain'] > 0 and f['gain_se'] > 0 and 0 <= f['functional_fidelity_se'] < 0.05, f
    amps, meta = read_amplitude_file(out/'amplitudes.safetensors')
    assert all(torch.allclose(torch.as_tensor(amps[n]), torch.as_tensor(planted[n]), atol=1e-4) for n in planted)
    with safe_open(str(out/'amplitudes.safetensors'), 'pt') as f: prov = f.metadata()
    assert prov['source'] == 'fitted' and prov['checkpoint'] == str(tuned) and prov['base'] == str(base)
    injected = next(c for c in nbformat.read(out/'14_compression.ipynb', 4).cells
                    if 'injected-parameters' in c.metadata.get('tags', []))
    assert f"raw_checkpoint = \"{tuned}\"" in injected.source
    assert 'amplitude-nb-run-' not in injected.source and f'the base weights of {base}' in injected.source
    assert m['timing']['checkpoints_seconds'] > 0
    assert any(line.startswith('checkpoint') and 'functional fidelity' in line for line in lines)

def test_run_without_base_skips_with_reasons(tmp_path, refs):
    "A transformers checkpoint alone: fitted against W0 = 0, the sections that need a base skipped with the reason."
    from amplitude_nb.data import load_tokenizer
    tok = load_tokenizer(refs['base'])
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=24, n_layer=2, n_head=3)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path/'hf')
    tok.save(str(tmp_path/'hf'/'tokenizer.json'))
    out = run(tmp_path/'hf', sections=['gradient'], sizes='smoke', out=tmp_path/'no_base', progress=False,
              html=False, log=lambda s: None)
    m = metrics(out)
    needs_base = {s.name for s in study.SECTIONS if 'base' in s.needs}
    assert needs_base <= set(m['run']['skipped']) and all('W0 = 0' in m['run']['skipped'][s] for s in needs_base)
    assert m['fit']['functional_fidelity'] is None and len(m['fit']['matrices']) == 4
    assert (out/'amplitudes.safetensors').exists()
    assert 'W0 = 0' in (out/'REPORT.md').read_text()

def test_out_naming_a_file_is_refused(tmp_path, refs):
    f = tmp_path/'report.txt'; f.write_text('mine')
    with pytest.raises(RunFolderError, match='exists and is a file'):
        run_sections(refs['amplitudes'], f, {'profile': 'smoke'}, sections=['structure'], sizes='smoke', progress=False)
    with pytest.raises(RunFolderError): reproduce('smoke', out=f, log=lambda s: None)
    assert f.read_text() == 'mine' and sorted(p.name for p in tmp_path.iterdir()) == ['report.txt']

def test_full_disk_removes_the_partial_run(tmp_path, refs, monkeypatch):
    "The disk fills up while a section runs: one error naming the folder, no partial run kept to fill it."
    import errno
    from amplitude_nb import pipeline
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(pipeline, 'execute', full)
    (tmp_path/'run.failed').mkdir(); (tmp_path/'run.failed'/'mine.txt').write_text('not a run')
    with pytest.raises(RunError, match=f"{tmp_path}: no space left on device"):
        run_sections(refs['amplitudes'], tmp_path/'run', {'profile': 'smoke'}, sections=['structure'], sizes='smoke',
                     progress=False, html=False, log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['run.failed']
    assert (tmp_path/'run.failed'/'mine.txt').read_text() == 'not a run'          # not ours: left alone

def test_killed_run_work_folder_is_removed_next_time(tmp_path, monkeypatch):
    "`run` copies the base weights into $TMPDIR/amplitude-nb-run-<pid>-*; after a SIGKILL the next run removes it."
    from amplitude_nb import pipeline
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    from amplitude_nb.inputs import mark_run_folder
    left = tmp_path/f'amplitude-nb-run-{dead.pid}-abc'; left.mkdir(); (left/'model.safetensors').write_bytes(b'0' * 64)
    mark_run_folder(left)                                          # every work folder a run makes carries the marker
    other = tmp_path/'amplitude-nb-run-notes'; other.mkdir()
    unmarked = tmp_path/f'amplitude-nb-run-{dead.pid}-mine'; unmarked.mkdir(); (unmarked/'data.csv').write_text('1')
    assert pipeline.clean_dead_temp('amplitude-nb-run') == [left.resolve()]
    assert not left.exists() and other.exists() and (unmarked/'data.csv').read_text() == '1'
