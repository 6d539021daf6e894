"run_grid on a real local cluster: the same records as in-process, a killed worker, a failing task leaves no process."
import os, signal, threading, time
import psutil, pytest, torch
from distributed import Client, LocalCluster
from amplitude_nb.grid import run_grid, grid_cluster, GridTaskError
from amplitude_nb.model import GPT, GPTConfig
from amplitude_nb.train import TrainConfig, train

CFG = GPTConfig(vocab_size=64, n_ctx=16, n_embd=32, n_layer=2, n_head=2)

def tiny_run(task, shared):
    "A few training steps of a tiny GPT built from the scattered state dict; sleeps first when asked."
    time.sleep(task.get('sleep', 0))
    m = GPT(shared['config']); m.load_state_dict(shared['state'])
    get = lambda g: (torch.randint(0, 64, (4, 16), generator=g),) * 2
    rec = train(m, get, TrainConfig(steps=3, batch_size=4, lr=task['lr'], warmup=1), seed=task['seed'], progress=False)
    return dict(lr=task['lr'], seed=task['seed'], losses=[s['loss'] for s in rec['steps']], pid=None)

def n_threads(task, shared): return torch.get_num_threads()

def failing(task, shared):
    if task['seed'] == 1: raise ValueError("rank too large\nmore detail")
    return task['seed']

@pytest.fixture(scope='module')
def shared():
    torch.manual_seed(0)
    return dict(config=CFG, state=GPT(CFG).state_dict())

@pytest.fixture(scope='module')
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=':0') as c: yield c

TASKS = [dict(lr=lr, seed=s) for s in (0, 1) for lr in (1e-3, 1e-2)]

def test_same_records(cluster, shared):
    here = run_grid(tiny_run, TASKS, shared=shared, workers=1, progress=False)
    there = run_grid(tiny_run, TASKS, shared=shared, scheduler=cluster.scheduler_address, progress=False)
    assert there == here
    assert [(r['lr'], r['seed']) for r in there] == [(t['lr'], t['seed']) for t in TASKS]
    assert len({tuple(r['losses']) for r in here}) == len(TASKS)       # the tasks differ: the test can tell them apart

def test_two_threads_per_task(cluster, shared):
    "`threads=2`: every task runs on two torch threads, in this process and on the workers, with the same records."
    here = run_grid(tiny_run, TASKS, shared=shared, workers=1, threads=2, progress=False)
    there = run_grid(tiny_run, TASKS, shared=shared, scheduler=cluster.scheduler_address, threads=2, progress=False)
    assert there == here
    assert run_grid(n_threads, TASKS, scheduler=cluster.scheduler_address, threads=2, progress=False) == [2] * len(TASKS)
    assert run_grid(n_threads, TASKS, scheduler=cluster.scheduler_address, progress=False) == [1] * len(TASKS)

def test_killed_worker(cluster, shared):
    here = run_grid(tiny_run, TASKS, shared=shared, workers=1, progress=False)
    killed = []
    def kill():
        time.sleep(1.0)                                              # mid-grid: every task sleeps 2 s first
        with Client(cluster.scheduler_address) as c:
            pids = c.run(os.getpid)
        pid = sorted(pids.values())[0]
        os.kill(pid, signal.SIGKILL); killed.append(pid)
    th = threading.Thread(target=kill); th.start()
    there = run_grid(tiny_run, [dict(t, sleep=2.0) for t in TASKS], shared=shared,
                     scheduler=cluster.scheduler_address, progress=False)
    th.join()
    assert killed
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert [dict(r, pid=None) for r in there] == here

def test_failing_task_one_line_no_orphans():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(GridTaskError) as e:
        run_grid(failing, [dict(arm='lora', lr=1e-3, seed=s) for s in (0, 1, 2)], workers=2, progress=False,
                 desc='sft task')
    msg = str(e.value)
    assert msg == 'sft task arm=lora lr=0.001 seed=1 failed: ValueError: rank too large', msg
    with pytest.raises(GridTaskError, match='^sft task arm=lora lr=0.001 seed=1 failed'):   # a cluster kept for a block
        with grid_cluster(2) as addr:
            assert run_grid(failing, [dict(seed=0), dict(seed=2)], scheduler=addr, progress=False) == [0, 2]
            run_grid(failing, [dict(arm='lora', lr=1e-3, seed=1)], scheduler=addr, progress=False, desc='sft task')
    deadline = time.time() + 60                 # a loaded machine: worker processes take a while to exit
    while time.time() < deadline:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
        if not left: break
        time.sleep(0.2)
    assert not left, left

def test_sft_and_recipe_tasks_on_the_cluster(cluster):
    "The notebooks' own tasks (SFT arms, a recipe cell) from the smoke checkpoint: the same records on the cluster."
    import json
    from dataclasses import replace
    from amplitude_nb.model import load_checkpoint
    from amplitude_nb.data import load_tokenizer, eval_batches
    from amplitude_nb.train import reference_checkpoints, sft_splits, sft_task
    from amplitude_nb.sft import ArmInputs, arm_bases, sft_shared, arm_task
    from amplitude_nb.recipe import CENTRE, recipe_bases, recipe_shared, cell_task, TARGET_SETS
    from amplitude_nb.amplitudes import target_names
    ckpt = reference_checkpoints('smoke', progress=False)['amplitudes']
    base, tok = load_checkpoint(ckpt).eval(), load_tokenizer(ckpt)
    sft = sft_splits(tok, base.config.n_ctx)
    tc = TrainConfig(steps=3, batch_size=4, warmup=1)
    get = sft_task(sft['train'], sft['val'], tc)[0]
    b = dict(val=eval_batches(sft['val'], n=8), test=eval_batches(sft['test'], n=8), train=eval_batches(sft['train'], n=8))
    sh = sft_shared(base, ArmInputs(K=4, bases=arm_bases(base, 4)), get, tc, b, eval_every=1)
    tasks = [dict(arm='full', lr=1e-3, seed=0, judge=True), dict(arm='lora', lr=1e-2, seed=1, chosen=True, judge=False),
             dict(arm='amp_random', lr=1e-2, seed=0, judge=True)]
    here = run_grid(arm_task, tasks, shared=sh, workers=1, progress=False)
    there = run_grid(arm_task, tasks, shared=sh, scheduler=cluster.scheduler_address, progress=False)
    clocks = ('seconds', 'tokens_per_s', 'step_seconds')
    strip = lambda rs: json.dumps([{k: v for k, v in r.items() if k not in clocks} for r in rs], default=str)
    assert strip(there) == strip(here)
    names = target_names(base, TARGET_SETS['c_attn+c_proj'])
    rsh = recipe_shared(base, dict(kind=recipe_bases(base, names, 4, 'kind')), get, b['val'], n_track=2)
    cells = [dict(cell=CENTRE, tc=replace(tc, lr=1e-2), seed=0), dict(cell=dict(CENTRE, optimizer='sgd'), tc=replace(tc, lr=1.0), seed=0)]
    rh = run_grid(cell_task, cells, shared=rsh, workers=1, progress=False)
    rt = run_grid(cell_task, cells, shared=rsh, scheduler=cluster.scheduler_address, progress=False)
    for x, y in zip(rh, rt):
        assert x['val_after'] == y['val_after'] and x['trajectory'] == y['trajectory']
        assert all((x['amps'][n] == y['amps'][n]).all() for n in x['amps'])
