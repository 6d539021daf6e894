"""Task-grid speed: a profile's SFT grid, serial in this process and on a local cluster of single-threaded workers.

Run by hand (not a test):  .venv/bin/python bench/grid_speed.py [--profile quick] [--workers N] [--json]
The grid is the SFT notebook's at the profile's steps and seeds, before any grid extension: every arm's rates on the
first seed (validation loss judged), then the other seeds at the middle rate of each arm's grid and the freezing arms
at `full`'s middle rate (the notebook runs them at the chosen rate; the cost is the same). The same tasks run twice in
one process: serially (`workers=1`, one thread a task, as every grid task runs, so the baseline is one core) and on a local cluster of `--workers` worker processes (the
cluster's start-up counted). The records of the two passes are compared (everything but the runs' clocks).
`--threads T` adds a third pass: every task on T torch threads, on cores // T workers (in this process when that is
one), timed the same way: "threads_seconds", "threads_speedup" (serial / it) and "threads_vs_workers" (the second
pass / it). Its records are not compared with the others: the thread count is part of a result.
`--json` prints one JSON object {"tasks", "serial_seconds", "workers", "workers_seconds", "speedup", ...} and nothing
else. The machine's load average before and after is part of it: on shared cores the ratio is only as good as that.
"""
import argparse, json, os, sys, time
from pathlib import Path
from amplitude_nb import study
from amplitude_nb.model import load_checkpoint
from amplitude_nb.amplitudes import corpus_covariances, read_amplitude_file, target_names, TARGETS
from amplitude_nb.data import load_tokenizer, eval_batches
from amplitude_nb.train import TrainConfig, reference_checkpoints, sft_splits, sft_task, profile_data
from amplitude_nb.structure import structure_table
from amplitude_nb.gradient import freeze_schedule
from amplitude_nb.grid import run_grid, default_workers
from amplitude_nb.sft import (ARMS, ArmInputs, arm_bases, freeze_plan, amplitude_count, lora_rank, vera_rank,
                              sft_shared, arm_task)

CLOCKS = ('seconds', 'tokens_per_s', 'step_seconds')


def grid_tasks(seeds) -> list[dict]:
    "The SFT grid before extensions: every arm's rates on seeds[0], then the other seeds / freezing arms at the middle rate."
    swept = [a for a in ARMS if not ARMS[a].freezes]
    mid = lambda a: ARMS[a].lr_grid[len(ARMS[a].lr_grid) // 2]
    tasks = [dict(arm=a, lr=lr, seed=seeds[0], judge=True) for a in swept for lr in ARMS[a].lr_grid]
    tasks += [dict(arm=a, lr=mid(a), seed=s) for a in swept for s in seeds[1:]]
    tasks += [dict(arm=a, lr=mid('full'), seed=s) for a in ARMS if ARMS[a].freezes for s in seeds]
    return tasks


def setup(profile: str, steps: int | None = None) -> tuple[dict, list]:
    "(shared, seeds) of the SFT notebook at `profile` (`steps`: fewer steps a run, for a shorter measurement)."
    prof = study.profile_spec(profile)
    sec = prof.sections.get('sft', {})
    steps, seeds = steps or sec.get('steps', 6), sec.get('seeds', [0, 1])
    ckpt = reference_checkpoints(profile, progress=False)['amplitudes']
    base, tok = load_checkpoint(ckpt).eval(), load_tokenizer(ckpt)
    amps, meta = read_amplitude_file(ckpt/'amplitudes.safetensors')
    K = meta.get('K', 8)
    sft = sft_splits(tok, base.config.n_ctx)
    tc = TrainConfig(steps=steps, batch_size=16, warmup=max(1, steps // 10))
    get_batch = sft_task(sft['train'], sft['val'], tc)[0]
    batches = dict(val=eval_batches(sft['val']), test=eval_batches(sft['test']), train=eval_batches(sft['train'], n=64))
    covs = corpus_covariances(base, target_names(base, TARGETS), profile_data(profile)[2]['train'], seed=0)
    schedule = freeze_schedule(structure_table(amps, n_boot=20, seed=0, n_null=20))
    order = [n for n, _ in base.named_modules()]
    plans = dict(freeze=freeze_plan(schedule, steps, [0.2, 0.4, 0.6]),
                 freeze_depth=freeze_plan(sorted(schedule, key=order.index), steps, [0.2, 0.4, 0.6]))
    n_amp = amplitude_count(base, K)
    inputs = ArmInputs(K=K, bases=arm_bases(base, K, 0, covs), plans=plans, lora_r=lora_rank(base, n_amp),
                       vera_r=min(vera_rank(base, n_amp), base.config.n_embd))
    return sft_shared(base, inputs, get_batch, tc, batches, eval_every=max(1, steps // 5)), seeds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--profile', default='quick')
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    ap.add_argument('--steps', type=int, default=None, help="steps a run (default: the profile's SFT steps)")
    ap.add_argument('--threads', type=int, default=None, help='also time every task on this many torch threads')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args(argv)
    started = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    say = (lambda *x: None) if a.json else print
    t0 = time.perf_counter()
    shared, seeds = setup(a.profile, a.steps)
    tasks = grid_tasks(seeds)
    say(f"{a.profile}: {len(tasks)} tasks of {shared['tc'].steps} steps (set-up {time.perf_counter() - t0:.0f} s)")
    load_before = os.getloadavg()
    t = time.perf_counter()
    serial = run_grid(arm_task, tasks, shared=shared, workers=1, progress=not a.json, desc='serial')
    serial_s = time.perf_counter() - t
    t = time.perf_counter()
    par = run_grid(arm_task, tasks, shared=shared, workers=a.workers, progress=not a.json, desc=f'{a.workers} workers')
    par_s = time.perf_counter() - t
    extra = {}
    if a.threads and a.threads > 1:
        tw = default_workers(a.threads)
        t = time.perf_counter()
        run_grid(arm_task, tasks, shared=shared, workers=tw, threads=a.threads, progress=not a.json,
                 desc=f'{tw} workers x {a.threads} threads')
        th_s = time.perf_counter() - t
        extra = dict(threads=a.threads, threads_workers=tw, threads_seconds=round(th_s, 2),
                     threads_speedup=round(serial_s / th_s, 3), threads_vs_workers=round(par_s / th_s, 3))
    strip = lambda rs: json.dumps([{k: v for k, v in r.items() if k not in CLOCKS} for r in rs], default=str)  # NaN == NaN
    out = dict(tasks=len(tasks), serial_seconds=round(serial_s, 2), workers=a.workers, workers_seconds=round(par_s, 2),
               speedup=round(serial_s / par_s, 3), profile=a.profile, steps=shared['tc'].steps,
               identical_records=strip(serial) == strip(par), **extra, cpu_count=os.cpu_count(),
               load_average_before=[round(x, 2) for x in load_before],
               load_average_after=[round(x, 2) for x in os.getloadavg()],
               command=' '.join(['python', 'bench/grid_speed.py', *(argv if argv is not None else sys.argv[1:])]),
               started=started, finished=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    print(json.dumps(out) if a.json else '\n'.join(f"{k}: {v}" for k, v in out.items()))
    return 0 if out['identical_records'] else 1


if __name__ == '__main__':
    sys.exit(main())
