"Bad input to amplitude_nb.data: every error is a DataError whose message names the file."
import json

import pytest

from amplitude_nb.data import (DataError, get_corpus, get_sft_pairs, get_tokenizer, load_corpus, load_sft_pairs,
                               load_tokenizer)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path/'cache'
    monkeypatch.setenv('AMPLITUDE_NB_CACHE', str(d))
    return d


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize('name', ['missing.txt', 'missing_dir/', 'nothing/*.txt'])
def test_missing_corpus(tmp_path, name):
    spec = f'{tmp_path}/{name}'
    with pytest.raises(DataError, match='no such file') as e: get_corpus(spec)
    assert spec in str(e.value)


def test_empty_corpus(tmp_path):
    (tmp_path/'a.txt').write_text('\n \n\t\n')
    (tmp_path/'b.txt').write_text('')
    with pytest.raises(DataError, match='empty corpus') as e: load_corpus(tmp_path)
    assert str(tmp_path) in str(e.value)


@pytest.mark.parametrize('data,what', [(b'text\x00more', 'binary'), (b'caf\xe9 latin-1', 'not UTF-8')])
def test_binary_file_in_folder(tmp_path, data, what):
    (tmp_path/'ok.txt').write_text('Plain text.\n\nMore text.')
    bad = tmp_path/'sub'/'blob.dat'
    bad.parent.mkdir()
    bad.write_bytes(data)
    with pytest.raises(DataError, match=what) as e: load_corpus(tmp_path)
    assert str(bad) in str(e.value)


def test_good_corpus_and_tokenizer_cache(tmp_path, cache):
    (tmp_path/'a.txt').write_text('\n\n'.join(f'Paragraph {i} about amplitudes and corpora.' * 20 for i in range(50)))
    c = get_corpus(tmp_path/'a.txt')
    s = c.stats()
    assert s['train_documents'] >= 1 and s['val_documents'] >= 1
    tok = get_tokenizer(c, 300)
    assert tok.get_vocab_size() <= 300
    assert (cache/f'tok-{c.sha256[:12]}-300'/'tokenizer.json').is_file()


@pytest.mark.parametrize('line,msg', [
    ('{"prompt": "x", "response": ', 'not valid JSON'),
    ('"just a string"', 'expected a JSON object'),
    ('{"response": "y"}', "missing key 'prompt'"),
    ('{"prompt": "x", "response": null}', "'response' must be a string"),
])
def test_malformed_jsonl(tmp_path, line, msg):
    f = tmp_path/'pairs.jsonl'
    good = json.dumps(dict(prompt='Q: a?\nA:', response=' b'))
    f.write_text(f'{good}\n\n{good}\n{line}\n{good}\n')
    with pytest.raises(DataError) as e: load_sft_pairs(f)
    assert f'{f}:4: {msg}' in str(e.value)


def test_good_jsonl(tmp_path):
    f = tmp_path/'pairs.jsonl'
    f.write_text('{"prompt": "Q: a?\\nA:", "response": " b", "extra": 1}\n\n')
    assert get_sft_pairs(f) == [dict(prompt='Q: a?\nA:', response=' b', extra=1)]


def test_empty_or_missing_jsonl(tmp_path):
    f = tmp_path/'pairs.jsonl'
    with pytest.raises(DataError, match='no such file') as e: load_sft_pairs(f)
    assert str(f) in str(e.value)
    f.write_text('\n\n')
    with pytest.raises(DataError, match='no pairs') as e: load_sft_pairs(f)
    assert str(f) in str(e.value)


def test_missing_tokenizer(tmp_path):
    with pytest.raises(DataError, match='no such tokenizer') as e: load_tokenizer(tmp_path/'tok.json')
    assert str(tmp_path/'tok.json') in str(e.value)
    with pytest.raises(DataError) as e: load_tokenizer(tmp_path)  # a folder without tokenizer.json
    assert str(tmp_path/'tokenizer.json') in str(e.value)


def test_corrupt_tokenizer(tmp_path):
    f = tmp_path/'tokenizer.json'
    f.write_text('{"version": "1.0", "model": 42')
    with pytest.raises(DataError, match='not a valid tokenizer') as e: load_tokenizer(f)
    assert str(f) in str(e.value)
