"""Training-step speed: our GPT in fp32, in bf16 (autocast, fp32 master weights), in bf16 under torch.compile, and
transformers.GPT2LMHeadModel in fp32; same config, batch and optimizer.

Run by hand (not a test):  .venv/bin/python bench/train_speed.py [--profile paper] [--steps 6] [--compile] [--json]
Every variant is measured in one process, steps interleaved round by round, so that all see the same machine load;
the figures are medians over rounds. MFU is the model's training FLOPs per second over a GEMM peak measured here, in the
same precision. `--breakdown` also times what `train` adds around a step (the old bare bench step against `train`'s
step, one batch draw, one evaluation), the question of why the real loop ran slower than the bench.
`--json` prints one JSON object {"profile", "tokens_per_s": {variant: number}} and nothing else.
"""
import argparse, json, statistics, sys, time
import numpy as np
import torch
from amplitude_nb.model import GPT, lm_loss, n_params
from amplitude_nb.train import PROFILES, TrainConfig, make_optimizer, autocast, evaluate
from amplitude_nb import data


def step_fn(model, x, precision='fp32', hf=False, tc=TrainConfig()):
    "`train`'s step (fused AdamW, lr set, forward and loss under `precision`, multi-tensor clip): () → seconds."
    opt = make_optimizer(model, tc)
    params = [p for g in opt.param_groups for p in g['params']]
    def step():
        t = time.perf_counter()
        for g in opt.param_groups: g['lr'] = tc.lr
        with autocast(precision):
            logits = model(x).logits if hf else model(x)
            loss = lm_loss(logits, x)
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip, foreach=True)
        opt.step()
        return time.perf_counter() - t
    return step


def legacy_step_fn(model, x):
    "The bench step before this change: loop AdamW over all parameters, no clipping, no lr schedule."
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    def step():
        t = time.perf_counter()
        loss = lm_loss(model(x), x)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return time.perf_counter() - t
    return step


def gemm_peak(dtype, n=1024, reps=5) -> float:
    "FLOP/s of the best of `reps` n×n×n matrix products in `dtype` (what this CPU reaches on a large GEMM)."
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best


def _timed(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t


def train_flops(cfg, tokens: int) -> float:
    "FLOPs of one training step: 3 × the forward's matrix products (blocks, attention scores and values, LM head)."
    L, d, T = cfg.n_layer, cfg.n_embd, cfg.n_ctx
    per_token = 2 * (L * 12 * d * d + cfg.vocab_size * d) + 2 * 2 * L * T * d
    return 3 * per_token * tokens


def hf_model(cfg, attn):
    import transformers
    hc = transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                                 n_head=cfg.n_head, activation_function=cfg.activation, resid_pdrop=0, embd_pdrop=0,
                                 attn_pdrop=0)
    return transformers.GPT2LMHeadModel._from_config(hc, attn_implementation=attn).train()


def interleave(steps: dict, rounds: int) -> dict:
    "{variant: [seconds]}: one warm-up call each, then `rounds` rounds, the order reversed every other round."
    for f in steps.values(): f()
    times, keys = {k: [] for k in steps}, list(steps)
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]): times[k].append(steps[k]())
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='paper'); ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--batch', type=int, default=None)
    ap.add_argument('--attn', default='sdpa', help="transformers attn_implementation: sdpa or eager")
    ap.add_argument('--compile', action='store_true',
                    help="also bf16 + torch.compile (measured on the paper profile: slower than eager bf16, 124 s to compile)")
    ap.add_argument('--breakdown', action='store_true', help="also time the old bench step, a batch draw, an evaluation")
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    say = (lambda *s, **k: print(*s, file=sys.stderr, **k)) if a.json else print
    torch.set_flush_denormal(True); torch.manual_seed(0)
    prof = PROFILES[a.profile]; cfg = prof.model
    B = a.batch or prof.pretrain.batch_size
    x = torch.randint(0, cfg.vocab_size, (B, cfg.n_ctx))
    tok = B * cfg.n_ctx
    models = dict(fp32=GPT(cfg).train(), bf16=GPT(cfg).train())
    steps = dict(fp32=step_fn(models['fp32'], x, 'fp32'), bf16=step_fn(models['bf16'], x, 'bf16'))
    compile_s = None
    if a.compile:
        mc = GPT(cfg).train()
        cm = torch.compile(mc)
        f = step_fn(cm, x, 'bf16')
        t = time.perf_counter(); f(); f(); compile_s = time.perf_counter() - t     # compilation happens in the first calls
        steps['bf16_compile'] = f
    steps['transformers'] = step_fn(hf_model(cfg, a.attn), x, 'fp32', hf=True)
    if a.breakdown: steps['legacy_fp32'] = legacy_step_fn(GPT(cfg).train(), x)
    times = interleave(steps, a.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: tok / s for k, s in med.items()}
    peak = {'fp32': gemm_peak(torch.float32), 'bf16': gemm_peak(torch.bfloat16)}
    flops = train_flops(cfg, tok)
    say(f"profile {a.profile}: {n_params(models['fp32']):,} parameters, batch {B}×{cfg.n_ctx}, {torch.get_num_threads()} "
        f"threads, transformers attn={a.attn}, median of {a.steps} interleaved rounds")
    say(f"GEMM peak (1024³, best of 5): fp32 {peak['fp32'] / 1e9:,.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:,.0f} GFLOP/s "
        f"({peak['bf16'] / peak['fp32']:.2f}×); model {flops / 1e9:,.1f} GFLOP per step")
    say(f"  {'variant':14} {'tokens/s':>9} {'s/step':>7} {'vs fp32':>8} {'MFU':>6}")
    for k in med:
        p = peak['bf16' if k.startswith('bf16') else 'fp32']
        say(f"  {k:14} {rate[k]:9,.0f} {med[k]:7.3f} {rate[k] / rate['fp32']:7.2f}× {flops / med[k] / p:6.1%}")
    say(f"  ours fp32 / transformers fp32: {rate['fp32'] / rate['transformers']:.2f}×; "
        f"ours bf16 / transformers fp32: {rate['bf16'] / rate['transformers']:.2f}×")
    if compile_s is not None:
        gain = med['bf16'] - med['bf16_compile']
        p = PROFILES['paper']
        build = p.pretrain.steps + p.amplitudes.steps
        verdict = (f"pays for itself after {compile_s / gain:,.0f} steps (a paper-profile build trains {build} steps)"
                   if gain > 0 else "never pays: compiled steps are not faster")
        say(f"  torch.compile: {compile_s:.1f} s to compile (first two calls); saves {gain:.3f} s/step; {verdict}")
    if a.breakdown:
        say(f"  train's step (fused AdamW, clip, lr) / old bench step, fp32: {med['legacy_fp32'] / med['fp32']:.2f}× as fast")
        ids = torch.randint(0, cfg.vocab_size, (400_000,)).numpy().astype("uint16" if cfg.vocab_size < 65536 else "int32")
        g = torch.Generator().manual_seed(0)
        draw = statistics.median(_timed(lambda: data.lm_batch(ids, B, cfg.n_ctx, g)) for _ in range(5))
        val = [data.lm_batch(ids, B, cfg.n_ctx, g) for _ in range(prof.pretrain.eval_batches)]
        ev = _timed(lambda: evaluate(models['fp32'], val))
        n_ev = prof.pretrain.steps // prof.pretrain.eval_every + 1
        say(f"  one batch draw {draw * 1e3:.1f} ms ({draw / med['fp32']:.1%} of an fp32 step); one evaluation "
            f"({prof.pretrain.eval_batches} batches) {ev:.2f} s = {ev / med['fp32']:.1f} fp32 steps, "
            f"×{n_ev} in a base build of {prof.pretrain.steps} steps: {n_ev * ev / (prof.pretrain.steps * med['fp32']):.1%}")
    if a.json:
        keep = [k for k in ('fp32', 'bf16', 'transformers', 'bf16_compile') if k in rate]
        print(json.dumps(dict(profile=a.profile, tokens_per_s={k: round(rate[k], 1) for k in keep})))


if __name__ == '__main__': main()
