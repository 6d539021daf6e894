"""End to end: one `reproduce --profile smoke` shared by the session, determinism, `run` on fitted checkpoints
(planted: amplitudes that are exactly recoverable), failures, Ctrl-C and a killed run's leftovers."""
import json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat, pytest, torch
import transformers
from amplitude_nb import study
from amplitude_nb.pipeline import run, run_sections, reproduce, RunError, RunFolderError, network_loads
from amplitude_nb.train import reference_checkpoints

CLI = str(Path(sys.executable).parent/'amplitude-nb')
transformers.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parent.parent

def env_with_tmp(tmp: Path) -> dict:
    "This environment with its own TMPDIR, importing this checkout's package."
    tmp.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    return {**os.environ, 'TMPDIR': str(tmp), 'PYTHONPATH': path}

def cli(*args, tmp: Path):
    r = subprocess.run([CLI, *map(str, args), '--quiet'], capture_output=True, text=True, timeout=1800,
                       env=env_with_tmp(tmp))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r

def metrics(d): return json.loads((Path(d)/'metrics.json').read_text())
def kernel_dirs(tmp: Path): return sorted(p.name for p in Path(tmp).glob('amplitude-nb-kernel-*'))

@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
    "One smoke-profile reproduce for the whole session, through the command line, with its own TMPDIR."
    d = tmp_path_factory.mktemp('smoke')
    r = cli('reproduce', '--profile', 'smoke', '--out', d/'a', tmp=d/'tmp')
    return dict(out=d/'a', stderr=r.stderr, stdout=r.stdout, tmp=d/'tmp')

smoke = pytest.mark.xdist_group('smoke')     # the tests that share the session's smoke run: one pytest-xdist worker

@pytest.fixture(scope='session')
def refs(): return reference_checkpoints('smoke', progress=False)

@smoke
def test_reproduce_smoke_writes_a_report(smoke_run):
    a = smoke_run['out']; m = metrics(a)
    assert set(m['run']['sections']) | set(m['run']['skipped']) == set(study.SECTION_NAMES)
    for s in m['run']['skipped']: pytest.fail(f"section {s} skipped: {m['run']['skipped'][s]}")   # recipe included
    for s in m['run']['sections']:
        nb = study.section(s).notebook
        assert s in m, f"section {s} recorded no metrics"
        assert (a/nb).exists() and (a/nb).with_suffix('.html').exists()
    assert m['run']['profile'] == 'smoke' and {'base_train_tokens', 'base_val_loss'} <= set(m['run'])
    t = m['timing']
    assert set(t['sections']) == set(m['run']['sections']) and t['checkpoints_seconds'] >= 0
    assert t['total_seconds'] >= sum(t['sections'].values())
    report = (a/'REPORT.md').read_text()
    assert '## 1. Structure metrics' in report and 'paper' in report
    assert str(a/'REPORT.md') in smoke_run['stdout'] + smoke_run['stderr']        # the run ends with the report's path

@smoke
def test_smoke_run_leaves_nothing_behind(smoke_run):
    a = smoke_run['out']
    assert not list(a.parent.glob('a.tmp-*')) and not list(a.parent.glob('a.old-*'))
    assert not (a.parent/'a.failed').exists()
    assert kernel_dirs(smoke_run['tmp']) == []
    assert 'KeyboardInterrupt' not in smoke_run['stderr'], smoke_run['stderr'][-2000:]
    assert not list(a.glob('.src-*'))

@smoke
def test_executed_notebooks_are_clean_and_offline(smoke_run):
    a = smoke_run['out']
    for p in sorted(a.glob('*.ipynb')):
        for c in nbformat.read(p, 4).cells:
            for o in c.get('outputs', []):
                assert 'TqdmWarning' not in o.get('text', ''), f"{p.name}: {o['text'][:200]}"
        assert '.tmp-' not in p.read_text(), f"{p.name} names the temporary run folder"
        page = p.with_suffix('.html').read_text()
        assert network_loads(page) == [], f"{p.name}: {network_loads(page)}"
    assert '<math' in (a/'10_structure.html').read_text()

@smoke
def test_same_run_same_metrics(smoke_run, tmp_path):
    "A second run of two sections gives their metrics exactly; only `timing` may differ."
    cli('reproduce', '--profile', 'smoke', '--sections', 'structure', 'gradient', '--out', tmp_path/'b',
        tmp=tmp_path/'tmp')
    a, b = metrics(smoke_run['out']), metrics(tmp_path/'b')
    for s in ('structure', 'gradient'): assert a[s] == b[s], s
    drop = {'sections', 'skipped'}
    assert {k: v for k, v in a['run'].items() if k not in drop} == {k: v for k, v in b['run'].items() if k not in drop}

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
    out = run(tuned, base, sft=None, out=tmp_path/'fitted', sections=['structure', 'compression'], sizes='smoke',
              progress=False, html=False, log=lines.append)
    m = metrics(out)
    assert m['run']['profile'] == 'run' and 'corpus_sha256' not in m['run']
    assert m['run']['sections'] == ['structure', 'compression'] and 'corpus' not in m['run']['skipped']
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
    out = run(tmp_path/'hf', sections=['structure'], sizes='smoke', out=tmp_path/'no_base', progress=False,
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

@smoke
def test_failed_notebook_keeps_the_old_report(smoke_run, tmp_path, refs):
    out = tmp_path/'run'; shutil.copytree(smoke_run['out'], out)
    before = (out/'REPORT.md').read_text()
    bad = tmp_path/'bad'; shutil.copytree(refs['amplitudes'], bad)
    (bad/'amplitudes.safetensors').write_bytes(b'not safetensors')
    with pytest.raises(RunError, match='10_structure.ipynb failed'):
        run_sections(bad, out, {'profile': 'smoke'}, sections=['structure'], sizes='smoke', progress=False, html=False,
                     log=lambda s: None)
    assert (out/'REPORT.md').read_text() == before
    failed = tmp_path/'run.failed'
    assert (failed/'10_structure.ipynb').exists() and not list(failed.glob('.src-*'))
    assert not list(tmp_path.glob('run.tmp-*'))
    assert not list(Path(tempfile.gettempdir()).glob(f'amplitude-nb-kernel-{os.getpid()}-*'))   # this process's

SCRIPT = """
import sys
from amplitude_nb.pipeline import run_sections
run_sections(sys.argv[1], sys.argv[2], {{'profile': 'smoke'}}, sections=['{section}'], sizes='smoke', progress=False)
"""

def start_run(ck, out, tmp, section='structure'):
    "A run in a child process; returns it once its notebook has started (its temporary run folder holds the notebook)."
    p = subprocess.Popen([sys.executable, '-c', SCRIPT.format(section=section), str(ck), str(out)],
                         env=env_with_tmp(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # background jobs ignore it
    t = time.time()
    while not list(out.parent.glob(f'{out.name}.tmp-{p.pid}/*.ipynb')):
        assert p.poll() is None and time.time() - t < 120, f"the run never started: {p.communicate()}"
        time.sleep(0.2)
    time.sleep(1.0)
    return p

@smoke
def test_interrupt_and_kill_leave_nothing_behind(smoke_run, tmp_path, refs):
    "Ctrl-C removes the partial run and the kernel's folder; a killed run's leftovers go at the next run."
    out, tmp = tmp_path/'run', tmp_path/'tmp'
    shutil.copytree(smoke_run['out'], out); before = (out/'REPORT.md').read_text()
    p = start_run(refs['amplitudes'], out, tmp)
    p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)
    assert p.returncode != 0 and 'KeyboardInterrupt' in err
    assert not list(tmp_path.glob('run.tmp-*')) and kernel_dirs(tmp) == [] and not (tmp_path/'run.failed').exists()
    assert not list(tmp.glob('*.json')), list(tmp.iterdir())                     # no kernel connection file (its key)
    assert (out/'REPORT.md').read_text() == before
    p = start_run(refs['amplitudes'], out, tmp)
    p.kill(); p.communicate(timeout=60)
    assert list(tmp_path.glob(f'run.tmp-{p.pid}')) and kernel_dirs(tmp)                    # what a SIGKILL leaves
    r = subprocess.run([sys.executable, '-c', SCRIPT.format(section='gradient'), str(refs['amplitudes']), str(out)],
                       env=env_with_tmp(tmp), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list(tmp_path.glob('run.tmp-*')) and kernel_dirs(tmp) == [] and not list(tmp.glob('*.json'))
    assert metrics(out)['run']['sections'] == ['gradient']


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
    left = tmp_path/f'amplitude-nb-run-{dead.pid}-abc'; left.mkdir(); (left/'model.safetensors').write_bytes(b'0' * 64)
    other = tmp_path/'amplitude-nb-run-notes'; other.mkdir()
    assert pipeline.clean_dead_temp('amplitude-nb-run') == [left]
    assert not left.exists() and other.exists()
