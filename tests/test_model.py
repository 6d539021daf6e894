"Checkpoint round trips against transformers (test-only dependency) and bad checkpoint files."
import json
import pytest, torch
import transformers
from amplitude_nb.model import GPT, GPTConfig, CheckpointError, load_checkpoint, save_checkpoint, CONV1D, IGNORED

transformers.logging.set_verbosity_error()

def hf_model(seed=0, **kw):
    torch.manual_seed(seed)
    c = dict(vocab_size=61, n_positions=13, n_embd=20, n_layer=2, n_head=5, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    m = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**c, **kw})).eval()
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.2 * torch.randn_like(p))
    return m

@pytest.mark.parametrize('act', ['gelu_new', 'gelu'])
def test_hf_parity_both_ways(tmp_path, act):
    hf = hf_model(activation_function=act)
    x = torch.randint(0, 61, (3, 13))
    hf.save_pretrained(tmp_path/'hf')
    ours = load_checkpoint(tmp_path/'hf')
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)
        save_checkpoint(ours, tmp_path/'ours')
        back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path/'ours').eval()
        torch.testing.assert_close(back(x).logits, hf(x).logits, atol=1e-4, rtol=0)

def test_nanogpt_bias_free(tmp_path):
    "nanoGPT's bias=False variant equals a GPT-2 whose biases are all zero."
    hf = hf_model(seed=3, activation_function='gelu')
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if n.endswith('bias'): p.zero_()
    sd = {k: (v.t() if k.endswith(CONV1D) else v) for k, v in hf.state_dict().items()
          if not k.endswith(IGNORED) and not k.endswith('bias')}
    torch.save(dict(model=sd, model_args=dict(n_layer=2, n_head=5, n_embd=20, block_size=13, bias=False, vocab_size=61)), tmp_path/'ckpt.pt')
    ours = load_checkpoint(tmp_path/'ckpt.pt')
    assert ours.config.bias is False
    x = torch.randint(0, 61, (2, 13))
    with torch.no_grad(): torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)
    save_checkpoint(ours, tmp_path/'hf')                                 # zero biases made explicit
    with torch.no_grad(): torch.testing.assert_close(load_checkpoint(tmp_path/'hf')(x), hf(x).logits, atol=1e-4, rtol=0)

def test_pickled_objects_refused(tmp_path):
    class Evil:
        def __reduce__(self): return (print, ('pwned',))
    torch.save({'model': Evil(), 'model_args': {}}, tmp_path/'ckpt.pt')
    with pytest.raises(CheckpointError, match="ckpt.pt: refused: the file asks to import 'builtins.print'") as e:
        load_checkpoint(tmp_path/'ckpt.pt')
    assert 'weights_only' not in str(e.value) and str(e.value).endswith('will not load it')

@pytest.mark.parametrize('field,value,message', [
    ('n_embd', -8, 'n_embd=-8 is out of range'), ('n_head', 0, 'n_head=0 is out of range'),
    ('n_layer', '2', "n_layer must be an integer, got '2'"), ('n_embd', 1e12, 'n_embd must be an integer'),
    ('vocab_size', 10**12, 'vocab_size=1000000000000 is out of range'), ('n_head', 3, 'not divisible by n_head=3'),
    ('layer_norm_epsilon', 'small', 'layer_norm_epsilon must be a number'),
])
def test_bad_config_values_fail_before_allocation(tmp_path, field, value, message):
    d = save_checkpoint(GPT(GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_layer=1, n_head=2)), tmp_path/'ck')
    c = json.loads((d/'config.json').read_text()); c[field] = value; (d/'config.json').write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match=message) as e: load_checkpoint(d)
    assert str(d/'config.json') in str(e.value)

def test_weights_checked_before_the_model_is_built(tmp_path, monkeypatch):
    "A shape mismatch is found against the meta-device shapes: GPT(cfg) is never built for real."
    import amplitude_nb.model as M
    d = save_checkpoint(GPT(GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_layer=1, n_head=2)), tmp_path/'ck')
    c = json.loads((d/'config.json').read_text()); c['n_layer'] = 500; (d/'config.json').write_text(json.dumps(c))
    built = []
    monkeypatch.setattr(M.GPT, '__init__', lambda self, cfg, _init=M.GPT.__init__: (built.append(torch.get_default_device()), _init(self, cfg))[1])
    with pytest.raises(CheckpointError, match='missing keys'): load_checkpoint(d)
    assert all(dev.type == 'meta' for dev in built), built

@pytest.mark.parametrize('problem,edit,message', [
    ('no config', lambda d: (d/'config.json').unlink(), 'neither config.json nor ckpt.pt'),
    ('bad json', lambda d: (d/'config.json').write_text('{'), 'config.json: not valid JSON'),
    ('not gpt2', lambda d: (d/'config.json').write_text(json.dumps({'model_type': 'llama'})), "model_type 'llama' is not gpt2"),
    ('untied', lambda d: (d/'config.json').write_text(json.dumps({**json.loads((d/'config.json').read_text()), 'tie_word_embeddings': False})), 'unsupported GPT-2 variant'),
    ('truncated', lambda d: (d/'model.safetensors').write_bytes((d/'model.safetensors').read_bytes()[:100]), 'model.safetensors: cannot read weights'),
    ('missing config key', lambda d: (d/'config.json').write_text(json.dumps({'model_type': 'gpt2'})), "config has no 'vocab_size'"),
])
def test_bad_hf_checkpoints(tmp_path, problem, edit, message):
    d = save_checkpoint(GPT(GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_layer=1, n_head=2)), tmp_path/'ck')
    edit(d)
    with pytest.raises(CheckpointError, match=message) as e: load_checkpoint(d)
    assert str(d) in str(e.value)

def test_missing_key(tmp_path):
    from safetensors.torch import load_file, save_file
    d = save_checkpoint(GPT(GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_layer=1, n_head=2)), tmp_path/'ck')
    sd = load_file(d/'model.safetensors'); del sd['transformer.ln_f.weight']; save_file(sd, d/'model.safetensors')
    with pytest.raises(CheckpointError, match=r"missing keys \['transformer.ln_f.weight'\]"): load_checkpoint(d)
