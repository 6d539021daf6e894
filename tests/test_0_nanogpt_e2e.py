"""End to end, through the console script: Ctrl-C in the middle of a run, then the same run on a character-level
nanoGPT pair to its end. In a file of its own so that pytest-xdist (`--dist loadfile`) runs it beside the smoke run."""
import json, os, shutil, signal, subprocess, time
from pathlib import Path
import pytest
from test_inputs import CLI, build_world, e2e, sigint_default


@pytest.fixture(scope='session')
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp('nanogpt')/'good')


@e2e
def test_e2e_interrupted_then_char_level_nanogpt_gets_all_five_sections(world, tmp_path):
    """SIGINT in the middle of a run: exit 130, one line, the previous report intact, no debris. Then the same command
    runs clean: a character-level nanoGPT pair (ckpt.pt, meta.pkl) gets all five paper sections (asked for by name:
    the smoke run covers the other two).
    (One command serves both checks: a whole run is the costliest thing in this file.)"""
    r = world['root']
    out = tmp_path/'run'; shutil.copytree(r/'previous_run', out)
    before = (out/'REPORT.md').read_text()
    args = [CLI, 'run', '--checkpoint', r/'nano_tuned'/'ckpt.pt', '--base', r/'nano_base'/'ckpt.pt', '--tokenizer',
            r/'meta.pkl', '--corpus', r/'corpus.txt', '--sft', r/'pairs.jsonl', '--sizes', 'smoke', '--quiet',
            '--out', out, '--workers', '1', '--sections', 'structure', 'gradient', 'corpus', 'sft', 'compression']
    env = {**os.environ, 'AMPLITUDE_NB_CACHE': str(tmp_path/'cache')}
    p = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=sigint_default)
    t = time.time()                                          # wait until the first notebook runs in its kernel
    while not list(tmp_path.glob(f'run.tmp-{p.pid}/*.ipynb')):
        assert p.poll() is None and time.time() - t < 120, f"the run never started: {p.communicate()}"
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == 'amplitude-nb run: interrupted', err
    assert (out/'REPORT.md').read_text() == before
    assert not [q for q in tmp_path.iterdir() if '.tmp-' in q.name or '.old-' in q.name]
    res = subprocess.run(list(map(str, args)), capture_output=True, text=True, env=env, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = json.loads((out/'metrics.json').read_text())
    assert {'structure', 'gradient', 'corpus', 'sft', 'compression'} <= set(m['run']['sections']), m['run']
    assert not [q for q in tmp_path.iterdir() if '.tmp-' in q.name or '.old-' in q.name]
