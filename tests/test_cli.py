"The console script: exit codes, one-line errors on stderr, and output on real files."
import json, subprocess, sys
from pathlib import Path
import pytest, torch
from amplitude_nb.model import GPT, GPTConfig, save_checkpoint

CLI = str(Path(sys.executable).parent/'amplitude-nb')

def run(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)

def test_help():
    r = run('--help')
    assert r.returncode == 0 and 'structure' in r.stdout

def test_info_on_checkpoint(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(GPT(GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_layer=1, n_head=2)), tmp_path/'ck')
    r = run('info', tmp_path/'ck')
    assert r.returncode == 0, r.stderr
    assert 'vocab_size=30' in r.stdout and 'parameters' in r.stdout

@pytest.mark.parametrize('make', [
    lambda p: p/'missing',
    lambda p: (p/'empty').mkdir() or p/'empty',
    lambda p: (p/'junk.safetensors').write_bytes(b'\x00' * 20) or p/'junk.safetensors',
])
def test_bad_paths_fail_cleanly(tmp_path, make):
    path = make(tmp_path)
    r = run('info', path)
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and str(path) in r.stderr and 'Traceback' not in r.stderr
    assert r.stdout == ''
