"The book renders as a book: markdown cells are prose, each notebook has one title."
import json, re
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).parent.parent/'nbs').glob('*.ipynb'))

def markdown_cells(path):
    return [''.join(c['source']) for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'markdown']

def commented_out(src: str) -> bool:
    "Every non-blank line starts with '#' and there is more than one: prose left behind by a percent-format script."
    lines = [l for l in src.splitlines() if l.strip()]
    return len(lines) > 1 and all(l.lstrip().startswith('#') for l in lines)

def test_detector():
    assert commented_out('# # Title\n#\n# A sentence of prose.')
    assert not commented_out('# Title\n\n> summary')
    assert not commented_out('## A heading')

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_markdown_is_prose(nb):
    bad = [i for i, s in enumerate(markdown_cells(nb)) if commented_out(s)]
    assert not bad, f"{nb.name}: markdown cells {bad} have every line starting with '#' (they render as headings)"

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_one_title(nb):
    titles = [l for s in markdown_cells(nb) for l in s.splitlines() if re.match(r'# \S', l)]
    assert len(titles) == 1, f"{nb.name}: {len(titles)} level-1 titles {titles[:3]} (one '# ' title per notebook)"
