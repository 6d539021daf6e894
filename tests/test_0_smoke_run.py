"""End to end: one `reproduce --profile smoke` through the command line, shared by this file's tests (one
pytest-xdist worker runs a whole file: `--dist loadfile`): the report, no debris, offline HTML, determinism, a
failed notebook, Ctrl-C and a killed run's leftovers."""
import json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat, pytest, torch
import transformers
from amplitude_nb import study
from amplitude_nb.pipeline import run, run_sections, reproduce, RunError, RunFolderError, network_loads
from conftest import CLI, ROOT, env_with_tmp, cli, metrics, kernel_dirs
transformers.logging.set_verbosity_error()

@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
    "One smoke-profile reproduce for the whole session, through the command line, with its own TMPDIR."
    d = tmp_path_factory.mktemp('smoke')
    r = cli('reproduce', '--profile', 'smoke', '--out', d/'a', tmp=d/'tmp')
    return dict(out=d/'a', stderr=r.stderr, stdout=r.stdout, tmp=d/'tmp')

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

def test_smoke_run_leaves_nothing_behind(smoke_run):
    a = smoke_run['out']
    assert not list(a.parent.glob('a.tmp-*')) and not list(a.parent.glob('a.old-*'))
    assert not (a.parent/'a.failed').exists()
    assert kernel_dirs(smoke_run['tmp']) == []
    assert 'KeyboardInterrupt' not in smoke_run['stderr'], smoke_run['stderr'][-2000:]
    assert not list(a.glob('.src-*'))

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

def test_failed_notebook_keeps_the_old_report(smoke_run, tmp_path, refs):
    out = tmp_path/'run'; shutil.copytree(smoke_run['out'], out)
    before = (out/'REPORT.md').read_text()
    bad = tmp_path/'bad'; shutil.copytree(refs['amplitudes'], bad)
    (bad/'amplitudes.safetensors').write_bytes(b'not safetensors')
    with pytest.raises(RunError, match='11_gradient.ipynb failed'):
        run_sections(bad, out, {'profile': 'smoke'}, sections=['gradient'], sizes='smoke', progress=False, html=False,
                     log=lambda s: None)
    assert (out/'REPORT.md').read_text() == before
    failed = tmp_path/'run.failed'
    assert (failed/'11_gradient.ipynb').exists() and not list(failed.glob('.src-*'))
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

def test_interrupt_and_kill_leave_nothing_behind(smoke_run, tmp_path, refs):
    """Ctrl-C removes the partial run and the kernel's folder; a killed run's leftovers go at the next run, and that
    run (the layer-gradient section, through the command line) gives the shared smoke run's metrics exactly (its table
    holds every matrix's PR with bootstrap and null intervals): only `timing` differs."""
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
    cli('reproduce', '--profile', 'smoke', '--sections', 'gradient', '--out', out, tmp=tmp)   # the next run
    assert not list(tmp_path.glob('run.tmp-*')) and kernel_dirs(tmp) == [] and not list(tmp.glob('*.json'))
    a, b = metrics(smoke_run['out']), metrics(out)
    assert b['run']['sections'] == ['gradient'] and a['gradient'] == b['gradient']    # bootstrap and null intervals too
    drop = {'sections', 'skipped'}
    assert {k: v for k, v in a['run'].items() if k not in drop} == {k: v for k, v in b['run'].items() if k not in drop}
