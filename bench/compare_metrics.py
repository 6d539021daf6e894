"""Compare two runs' metrics.json number by number (timing aside) and their verdicts claim by claim.

Usage:  .venv/bin/python bench/compare_metrics.py RUN_A RUN_B [--rtol 0.05] [--atol 1e-3] [--json]
Prints, per top-level section, how many numbers agree within the tolerance (|a - b| <= atol + rtol * |b|), the largest
relative difference and where it is, then the verdicts of both runs. Exit code 0 when every number agrees and every
verdict is the same, 1 otherwise. `bench/device_check.sh` uses it to compare a run on a GPU with one on the CPU.
"""
import argparse, json, math, sys
from pathlib import Path


def numbers(x, path=''):
    "(path, value) for every finite or non-finite number in a JSON tree; lists of the same length pair up by index."
    if isinstance(x, bool) or x is None: return
    if isinstance(x, (int, float)): yield path, float(x); return
    if isinstance(x, dict):
        for k, v in x.items(): yield from numbers(v, f"{path}.{k}" if path else str(k))
    if isinstance(x, list):
        for i, v in enumerate(x): yield from numbers(v, f"{path}[{i}]")


def compare(a: dict, b: dict, rtol=0.05, atol=1e-3) -> dict:
    "{section: {'n', 'agree', 'worst', 'where', 'missing'}} over the numbers outside `timing` (and the run's clock)."
    skip = ('timing', 'run')
    out = {}
    for sec in sorted(set(a) | set(b)):
        if sec in skip: continue
        A, B = dict(numbers(a.get(sec))), dict(numbers(b.get(sec)))
        keys = [k for k in A if k in B and not any(t in k for t in ('seconds', '_s', 'tokens_per_s', 'speedup'))]
        rec = dict(n=len(keys), agree=0, worst=0.0, where=None, missing=len(set(A) ^ set(B)))
        for k in keys:
            x, y = A[k], B[k]
            same = (math.isnan(x) and math.isnan(y)) or x == y or abs(x - y) <= atol + rtol * abs(y)
            rec['agree'] += same
            rel = abs(x - y) / max(abs(y), atol) if math.isfinite(x) and math.isfinite(y) else (0.0 if same else math.inf)
            if rel > rec['worst']: rec['worst'], rec['where'] = rel, k
        out[sec] = rec
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('a'); ap.add_argument('b')
    ap.add_argument('--rtol', type=float, default=0.05); ap.add_argument('--atol', type=float, default=1e-3)
    ap.add_argument('--json', action='store_true')
    o = ap.parse_args(argv)
    a, b = (json.loads((Path(p)/'metrics.json').read_text()) for p in (o.a, o.b))
    res = compare(a, b, o.rtol, o.atol)
    from amplitude_nb.report import compare_runs
    verdicts = compare_runs(a, b)
    ok = all(r['agree'] == r['n'] for r in res.values()) and all(v['same'] for v in verdicts)
    if o.json:
        print(json.dumps(dict(sections=res, verdicts_same=sum(v['same'] for v in verdicts), claims=len(verdicts),
                              rtol=o.rtol, atol=o.atol, ok=ok), indent=1))
        return 0 if ok else 1
    print(f"numbers within |a - b| <= {o.atol} + {o.rtol} |b| (timing aside):")
    for sec, r in res.items():
        print(f"  {sec:14} {r['agree']:5} of {r['n']:5}   largest relative difference {r['worst']:.3g}"
              + (f" at {r['where']}" if r['where'] else '') + (f"; {r['missing']} only in one run" if r['missing'] else ''))
    print(f"verdicts: {sum(v['same'] for v in verdicts)} of {len(verdicts)} the same")
    for v in verdicts:
        if not v['same']: print(f"  differs: {v['claim (paper)']}: {v['verdicts']}")
    return 0 if ok else 1


if __name__ == '__main__': sys.exit(main())
