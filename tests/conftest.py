"""Shared by the end-to-end tests: the reference smoke checkpoints, a child's environment, the CLI, run folders."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

# Tests run side by side (pytest-xdist workers, the run's kernels): one OpenMP thread per process. Two threads each on
# 2 cores stall at every barrier while the other process runs: a small training loop went 4.8 s -> 119 s.
os.environ.setdefault('OMP_NUM_THREADS', '1')

CLI = str(Path(sys.executable).parent/'amplitude-nb')
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
def refs():
    from amplitude_nb.train import reference_checkpoints
    return reference_checkpoints('smoke', progress=False)
