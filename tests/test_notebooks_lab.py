"""Opening a notebook in `make lab` and saving it (JupyterLab's autosave) leaves the file as committed: the pre-save
hook in .jupyter/jupyter_server_config.py cleans what JupyterLab adds (kernel display name, language_info, counts)."""
import copy, json, runpy
from types import SimpleNamespace
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def hook():
    class Config:                                     # what Jupyter hands the config file as `c`
        def __init__(self): self.ContentsManager = type('CM', (), {})()
    c = Config()
    runpy.run_path(str(ROOT/'.jupyter'/'jupyter_server_config.py'), init_globals={'c': c})
    return c.ContentsManager.pre_save_hook

def test_make_lab_uses_the_hook():
    assert '--config=.jupyter/jupyter_server_config.py' in (ROOT/'Makefile').read_text()
    assert 'jupyter_hooks = True' in (ROOT/'settings.ini').read_text()

@pytest.mark.parametrize('nb', sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb')))
def test_saving_an_opened_notebook_changes_nothing(nb, monkeypatch):
    monkeypatch.chdir(ROOT/'tests')                   # the hook must not depend on the working directory
    committed = json.loads((ROOT/'nbs'/nb).read_text())
    opened = copy.deepcopy(committed)                 # what JupyterLab holds after opening and running a cell
    opened['metadata']['kernelspec'] = dict(display_name='Python 3 (ipykernel)', language='python', name='python3')
    opened['metadata']['language_info'] = dict(name='python', version='3.11.7', mimetype='text/x-python')
    for c in opened['cells']:
        if c['cell_type'] == 'code': c['execution_count'] = 7; c['metadata']['scrolled'] = True
    model = dict(type='notebook', content=opened)
    hook()(model=model, path=nb, contents_manager=SimpleNamespace(root_dir=str(ROOT/'nbs')))   # path: relative to nbs/
    assert model['content'] == committed
