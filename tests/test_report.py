"The report layer: light to import, honest about noise and marginal p-values, stable under rebuilds, one offline HTML."
import json, math, re, shutil, subprocess, sys
from pathlib import Path
import pytest
from amplitude_nb import report, verdicts
from amplitude_nb.study import CLAIMS, SECTIONS, matrix_order

ROOT = Path(__file__).parent.parent
PAPER_RUN = ROOT/'reports'/'paper'

def test_import_is_light():
    code = ("import sys, amplitude_nb.report, amplitude_nb.verdicts; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'seaborn', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == '[]', out

def test_no_paper_constants_in_report():
    src = (ROOT/'amplitude_nb'/'report.py').read_text()
    for name in ('PAPER_GLOBAL_PR', 'PAPER_STAGE_COLUMN', 'PAPER_SFT_COLUMN', 'SECTION_ORDER', 'TITLES'):
        assert name not in src, name
    for number in ('4.26', '0.674', '35.4', '623', '709', '16,384'):
        assert number not in src, f"report.py types the paper's {number}: read it from study.PAPER"

def _md_blocks(text: str, heading: str) -> list[str]:
    "The fenced code blocks of the section under `heading`."
    part = text.split(heading, 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```\w*\n(.*?)```', part, re.S)

def _index_text() -> str:
    cells = json.loads((ROOT/'nbs'/'index.ipynb').read_text())['cells']
    return '\n\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')

def test_readme_and_index_state_the_same_commands():
    readme, index = (ROOT/'README.md').read_text(), _index_text()
    assert _md_blocks(readme, '## The two commands') == _md_blocks(index, '## The two commands')
    assert _md_blocks(readme, '## How it is built') == _md_blocks(index, '## How it is built')
    for line in ('`amplitude-nb reproduce --profile smoke`', '`make lab`'):
        assert line in readme and line in index, line

def test_readme_is_generated_from_the_committed_run(tmp_path):
    "The README's study, timing and results blocks are exactly what update_readme writes from reports/paper."
    (tmp_path/'README.md').write_text((ROOT/'README.md').read_text())
    for name in ('metrics.json', 'rebuild.json'):
        if (PAPER_RUN/name).exists(): shutil.copy(PAPER_RUN/name, tmp_path/name)
    records = [ROOT/'reports'/f'make_{t}.json' for t in ('reproduce', 'test')]
    text = report.update_readme(tmp_path, tmp_path/'README.md', fresh_clone=records).read_text()
    strip = lambda t: t.replace(str(tmp_path), 'reports/paper')
    assert strip(text) == (ROOT/'README.md').read_text(), "README is stale: run report.update_readme('reports/paper')"

@pytest.fixture(scope='module')
def paper_report(tmp_path_factory):
    d = tmp_path_factory.mktemp('paper')
    shutil.copy(PAPER_RUN/'metrics.json', d/'metrics.json')
    if (PAPER_RUN/'figures').is_dir(): shutil.copytree(PAPER_RUN/'figures', d/'figures')
    report.write_report(d)
    return d

def test_paper_report_reads_right(paper_report):
    text = (paper_report/'REPORT.md').read_text()
    assert 'Profile None' not in text and 'above the 95th percentile' not in text
    m = json.loads((paper_report/'metrics.json').read_text())
    if 'corpus' in m: assert 'marginal' in text or verdicts.assess(m)['alignment']['label'] != 'marginal'
    assert [l for l in text.splitlines() if l.startswith('## ')][-len(SECTIONS):] == \
        [f"## {s.number}. {s.title}" for s in SECTIONS]
    head = text.split('## Headline', 1)[1].split('\n## ', 1)[0]
    assert '| claim (paper) | ours | supported? |' in head and len(re.findall(r'\| (yes|no|marginal|not tested) \|', head)) == len(CLAIMS)

def test_layers_sorted_as_numbers(paper_report):
    text = (paper_report/'REPORT.md').read_text()
    part = text.split('Every matrix', 1)[1].split('**Verdict', 1)[0]
    tables = re.findall(r'(?:^\|.*\n)+', part, re.M)        # every table: the main one, the secondary, the per-seed one
    seeds = json.loads((paper_report/'metrics.json').read_text())['structure'].get('seeds') or []
    assert len(tables) == 2 + (len(seeds) > 1)
    for table in tables:
        labels = re.findall(r'^\| (L\d+ [\w.]+) \|', table, re.M)
        assert labels and labels == sorted(labels, key=lambda l: (int(l.split()[0][1:]), l))

def test_no_estimate_outside_its_interval_unannounced(paper_report):
    "Every 'x [lo, hi]' printed has lo ≤ x ≤ hi; an estimate outside its interval is printed as '(outside its interval …)'."
    num = r'(-?[\d,]+(?:\.\d+)?(?:e[-+]\d+)?)'
    text = (paper_report/'REPORT.md').read_text()
    pairs = re.findall(num + r' \[' + num + ', ' + num + r'\]', text)
    assert pairs
    f = lambda s: float(s.replace(',', ''))
    for x, lo, hi in pairs: assert f(lo) <= f(x) <= f(hi), (x, lo, hi)

def _perturb(x, eps=1e-9):
    if isinstance(x, dict): return {k: (v if k == 'timing' else _perturb(v, eps)) for k, v in x.items()}
    if isinstance(x, list): return [_perturb(v, eps) for v in x]
    if isinstance(x, float) and math.isfinite(x): return x * (1 + eps)
    return x

def test_rebuild_noise_does_not_change_the_report(tmp_path):
    "Numbers that differ in the ninth digit (a rebuild on another machine) give the same REPORT.md."
    m = json.loads((PAPER_RUN/'metrics.json').read_text())
    a = report.write_report(tmp_path, m).read_text()
    b = report.write_report(tmp_path, _perturb(m)).read_text()
    assert a == b

def test_html_is_one_offline_file(paper_report):
    page = report.write_html(paper_report).read_text()
    n_figs = len(re.findall(r'!\[[^\]]*\]\(figures/', (paper_report/'REPORT.md').read_text()))
    assert page.count('src="data:image/png;base64,') == n_figs
    assert '<script' not in page and not re.search(r'(src|href)="(https?:)?//', page)
    assert '<table>' in page

NOISE = dict(PR=7.95, PR_ci_low=7.93, PR_ci_high=7.97, PR_null=7.96, PR_null_low=7.92, PR_null_high=7.99,
             structured=False, PC1=0.14, k95=8, max_corr=0.1, kurtosis=0.1, erank=7.9, rows=768, K=8)

def noise_run(profile='smoke'):
    mats = [dict(NOISE, matrix=f'transformer.h.{i}.attn.{k}', layer=i, kind=f'attn.{k}', label=f'L{i} {k}')
            for i in (10, 0, 2, 1) for k in ('c_attn', 'c_proj')]
    return {'run': {'profile': profile, 'checkpoint': 'noise', 'seed': 0, 'skipped': {'corpus': 'no tokenizer'},
                    'base_train_tokens': 1_000_000, 'base_val_loss': 5.5},
            'structure': {'matrices': mats, 'global': [dict(NOISE, matrix='global attn.c_proj', rows=4096)],
                          'global_note': 'one shared basis per kind'},
            'fit': {'matrices': [dict(matrix=r['matrix'], fidelity=0.0104, fidelity_chance=8 / 768,
                                      fidelity_bound=0.3) for r in mats], 'functional_fidelity': 0.006},
            'compression': {'stages': [dict(stage='raw', params=10_000, ratio=1.0, test_loss=5.0),
                                       dict(stage='amplitudes', params=100, ratio=100.0, test_loss=5.9),
                                       dict(stage='subspace_global', params=90, ratio=111.0, test_loss=5.9, k=7),
                                       dict(stage='base', params=0, ratio=None, test_loss=6.0)], 'gap': 0.9},
            'recipe': {'runs': [dict(optimizer='sgd', steps=10, basis='spectral', targets='attn.c_proj',
                                     val_before=6.0, val_after=5.9, global_PR=1.5, global_PR_null=7.9, median_PR=2.0,
                                     min_PR=1.02, kurtosis=14.0)], 'trajectory': [],
                       'verdicts': {'global_pr': 'spectral bases with AdamW come closest.'}},
            'timing': {'checkpoints_seconds': 5.0, 'sections': {'structure': {'seconds': 2.0}}, 'total_seconds': 9.0}}

def test_noise_run_reads_as_noise(tmp_path):
    text = report.write_report(tmp_path, noise_run()).read_text()
    assert text.split('\n\n')[1].startswith('> **A plumbing check, not a result.**')
    assert 'describe noise' in text and 'indistinguishable from noise' in text and '| structured |' not in text
    assert 'random projection' in text and 'at chance in all 8 matrices' in text
    assert 'SHA-256' not in text                           # §3 did not run
    assert 'the base trained on 1,000,000 tokens to validation loss 5.50' in text
    assert 'spectral bases with AdamW come closest.' in text and '| effective rank |' in text
    assert 'costs +0.900 nats' in text and "keeps 10.0% of the checkpoint's gain" in text
    assert 'the reference checkpoints were cached' in text
    assert verdicts.supported(noise_run())['global_pr'] == 'no'
    assert verdicts.supported(noise_run())['structured'] == 'no'
    L = re.findall(r'^\| (L\d+ c_proj) \|', text.split('Every matrix', 1)[1].split('The same rows', 1)[0], re.M)
    assert L == ['L0 c_proj', 'L1 c_proj', 'L2 c_proj', 'L10 c_proj']

def test_user_run_header(tmp_path):
    m = noise_run(profile=None)
    text = report.write_report(tmp_path, m).read_text()
    assert 'Profile **run**' in text and 'Profile None' not in text and 'plumbing check' not in text
    assert 'plumbing check' in report.write_report(tmp_path, noise_run('quick')).read_text()
