"""The measurement cache: processes writing at once keep each other's
entries, and a write keeps what is already on disk."""
import multiprocessing

from mmseg_repvgg.deploy.cache import (CACHE_ENV, merge_entries, read_cache,
                                       write_cache)

WRITES = 40  # per process: enough interleaving to lose entries unlocked


def _write_many(tag: str) -> None:
    # Each write passes only this process's view, as a tuning run does
    # with the copy it read once at start.
    mine = {}
    for i in range(WRITES):
        mine.setdefault('machine', {})[f'{tag}{i}'] = dict(choice=i)
        mine[f'{tag}-ranking'] = [tag, str(i)]
        write_cache('test.json', mine)


def test_two_processes_writing_at_once_keep_both(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    context = multiprocessing.get_context('fork')
    workers = [
        context.Process(target=_write_many, args=(tag, )) for tag in ('a', 'b')
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    cache = read_cache('test.json')
    assert sorted(cache) == ['a-ranking', 'b-ranking', 'machine']
    assert len(cache['machine']) == 2 * WRITES
    assert cache['a-ranking'] == ['a', str(WRITES - 1)]
    assert not list(tmp_path.glob('.*.tmp'))  # no temporary file left


def test_write_merges_into_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    write_cache('c.json', {'m': {'x': 1}, 'rank': [1, 2]})
    merged = write_cache('c.json', {'m': {'y': 2}, 'rank': [2]})
    assert merged == {'m': {'x': 1, 'y': 2}, 'rank': [2]}
    assert read_cache('c.json') == merged
    (tmp_path / 'c.json').write_text('{not json')  # unreadable: rewritten
    assert write_cache('c.json', {'z': 0}) == {'z': 0}
    assert merge_entries({'a': {'b': 1}}, {'a': 3}) == {'a': 3}
