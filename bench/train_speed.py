"""Training-step speed: our GPT against transformers.GPT2LMHeadModel, same config, batch and optimizer.

Run by hand (not a test):  .venv/bin/python bench/train_speed.py [--profile paper] [--steps 6]
Prints tokens/s for each model and the ratio, measured in one process, steps interleaved so that
both models see the same machine load.
"""
import argparse, statistics, time
import torch
import transformers
from amplitude_nb.model import GPT, lm_loss, n_params
from amplitude_nb.train import PROFILES

def step_fn(model, x, hf: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    def step():
        t = time.perf_counter()
        logits = model(x).logits if hf else model(x)
        loss = lm_loss(logits, x)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return time.perf_counter() - t
    return step

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='paper'); ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--batch', type=int, default=None); ap.add_argument('--attn', default='sdpa', help="transformers attn_implementation: sdpa or eager")
    a = ap.parse_args()
    torch.set_flush_denormal(True); torch.manual_seed(0)
    prof = PROFILES[a.profile]; cfg = prof.model
    B = a.batch or prof.pretrain.batch_size
    ours = GPT(cfg).train()
    hc = transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                                 n_head=cfg.n_head, activation_function=cfg.activation, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    theirs = transformers.GPT2LMHeadModel._from_config(hc, attn_implementation=a.attn).train()
    x = torch.randint(0, cfg.vocab_size, (B, cfg.n_ctx))
    steps = dict(ours=step_fn(ours, x, False), transformers=step_fn(theirs, x, True))
    for f in steps.values(): f()                                  # warm-up step each
    times = {k: [] for k in steps}
    for _ in range(a.steps):
        for k, f in steps.items(): times[k].append(f())
    tok = B * cfg.n_ctx
    print(f"profile {a.profile}: {n_params(ours):,} parameters, batch {B}×{cfg.n_ctx}, {torch.get_num_threads()} threads, "
          f"transformers attn={a.attn}, median of {a.steps} steps")
    rate = {k: tok / statistics.median(v) for k, v in times.items()}
    for k, r in rate.items(): print(f"  {k:13} {r:9,.0f} tokens/s  ({statistics.median(times[k]):.3f} s/step)")
    print(f"  ratio ours / transformers: {rate['ours'] / rate['transformers']:.2f}×")

if __name__ == '__main__': main()
