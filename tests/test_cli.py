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


def test_argparse_errors_are_one_line():
    r = run('corpus', '--vocab', 'many')
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "argument --vocab: 'many' is not an integer" in r.stderr


@pytest.mark.parametrize('argv,message', [
    (['run', '--checkpoint', 'x', '--sections', 'structure,Gradient'], "unknown section 'Gradient': valid sections are"),
    (['checkpoints', '--profile', 'medium'], "unknown profile 'medium': valid profiles are smoke, quick, paper"),
])
def test_unknown_names_list_the_valid_ones(argv, message, capsys):
    from amplitude_nb.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and message in err


def test_debug_shows_the_traceback(tmp_path, capsys):
    from amplitude_nb.cli import main
    assert main(['info', str(tmp_path/'missing'), '--debug']) == 2
    err = capsys.readouterr().err
    assert 'Traceback' in err and err.strip().splitlines()[-1].startswith('amplitude-nb info: error:')


def test_unexpected_errors_say_how_to_see_the_traceback(monkeypatch, capsys):
    import amplitude_nb.cli as c
    def broken(a, log): raise KeyError('boom')
    monkeypatch.setattr(c, 'cmd_info', broken)
    assert c.main(['info', 'x']) == 1
    err = capsys.readouterr().err
    assert err == "amplitude-nb info: unexpected KeyError: 'boom' (rerun with --debug for the traceback)\n"
