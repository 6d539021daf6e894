"""How long a new user waits: a make target timed from a fresh clone of this repository's HEAD, with an empty cache.

Run by hand (not a test):
    python3 bench/fresh_clone.py test                      # writes reports/make_test.json
    python3 bench/fresh_clone.py reproduce --collect DIR   # also copies the clone's reports/paper/ to DIR

The clone gets no `.venv`, and AMPLITUDE_NB_CACHE points at an empty temporary folder, so corpus, tokenizer and
checkpoints are built from nothing. `make venv` is timed first and apart, then `make <target>`. pip's own download
cache is left as it is (a machine that has installed these wheels before installs them faster); the record says
so. The record, one JSON object: target, commit, date, cpus, venv_seconds, target_seconds, total_seconds, rc.
"""
import argparse, datetime, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd, cwd, env, log) -> tuple[int, float]:
    "Run `cmd`, appending its output to `log`; (exit code, wall seconds)."
    t = time.perf_counter()
    with open(log, 'a') as f: rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return rc, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('target', choices=['test', 'reproduce'], help='the make target to time')
    p.add_argument('--out', type=Path, help='record (default: reports/make_<target>.json in this checkout)')
    p.add_argument('--collect', type=Path, help="reproduce only: copy the clone's reports/paper/ here")
    p.add_argument('--keep', action='store_true', help='keep the clone and its cache (printed)')
    a = p.parse_args(argv)
    out = (a.out or ROOT/'reports'/f'make_{a.target}.json').resolve()
    work = Path(tempfile.mkdtemp(prefix='amplitude-nb-fresh-'))
    clone, cache, log = work/'clone', work/'cache', work/'make.log'
    subprocess.run(['git', 'clone', '-q', str(ROOT), str(clone)], check=True)
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=clone, capture_output=True, text=True).stdout.strip()
    env = {**os.environ, 'AMPLITUDE_NB_CACHE': str(cache)}
    env.pop('VIRTUAL_ENV', None)
    print(f"timing `make {a.target}` in {clone} (log: {log})", flush=True)
    rc_venv, venv_s = timed(['make', 'venv'], clone, env, log)
    rc, target_s = timed(['make', a.target], clone, env, log) if rc_venv == 0 else (rc_venv, 0.0)
    rec = dict(target=a.target, commit=commit, date=datetime.date.today().isoformat(), cpus=os.cpu_count(),
               venv_seconds=round(venv_s, 1), target_seconds=round(target_s, 1), total_seconds=round(venv_s + target_s, 1),
               rc=rc, pip_cache='as found')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + '\n')
    print(json.dumps(rec), flush=True)
    if a.collect and a.target == 'reproduce' and (clone/'reports'/'paper').exists():
        shutil.copytree(clone/'reports'/'paper', a.collect, dirs_exist_ok=True)
    if a.keep: print(f"kept: {work}")
    else: shutil.rmtree(work, ignore_errors=True)
    return 0 if rc == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
