"""Text sources (wikitext2, hf, files) on local fixtures; the token cache; load_corpus errors."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ado_ray.data import SOURCES, gpt2_tokenizer, load_corpus, source_options
from ado_ray.data.text_sources import is_article_heading, split_articles

SPORT = "match team goal season league player coach stadium score cup final striker".split()
MUSIC = "album song band guitar chart single record tour concert vocals lyrics drummer".split()
RIVER = "river valley water mountain flood bridge lake bank stream delta basin glacier".split()


def _para(words: list[str], rng: np.random.Generator, n: int) -> str:
    return " " + " ".join(rng.choice(words, size=n)) + " . \n"


def _only_words(arr, words: list[str]) -> bool:
    """The decoded sequences use only ``words`` (the packed tail may cut the last word)."""
    text = gpt2_tokenizer().decode(np.asarray(arr).reshape(-1).tolist())
    found = text.replace("<|endoftext|>", " ").split()[:-1]
    return bool(found) and set(found) <= set(words) | {"."}


def _wikitext_lines(n_articles: int, seed: int) -> list[str]:
    """Rows laid out like wikitext-2-raw-v1: headings, blank rows, paragraphs."""
    rng = np.random.default_rng(seed)
    rows: list[str] = []
    topics = [SPORT, MUSIC]
    for a in range(n_articles):
        words = topics[a % 2]
        rows += ["", f" = Article {seed} {a} = \n", ""]
        rows += [_para(words, rng, int(rng.integers(10, 150))), ""]
        rows += [" = = Background = = \n", "", _para(words, rng, int(rng.integers(10, 150))), ""]
        rows += [" = = = Detail = = = \n", "", _para(words, rng, 40), ""]
    return rows


@pytest.fixture(scope="module")
def wikitext_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wikitext")
    sub = root / "wikitext-2-raw-v1"
    sub.mkdir()
    for split, n, seed in (("train", 40, 0), ("validation", 10, 1), ("test", 4, 2)):
        table = pa.table({"text": _wikitext_lines(n, seed)})
        pq.write_table(table, sub / f"{split}-00000-of-00001.parquet")
    return str(root)


@pytest.fixture()
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def test_sources_listed():
    assert set(SOURCES) == {"synthetic", "wikitext2", "hf", "files"}
    opts = source_options("wikitext2")
    assert opts["fraction"] == 0.2 and opts["seq_len"] == 100 and opts["cache"] is True


def test_article_headings():
    assert is_article_heading(" = Valkyria Chronicles III = \n")
    assert not is_article_heading(" = = Gameplay = = \n")
    assert not is_article_heading(" = = = Sub = = = \n")
    assert not is_article_heading(" The = sign = \n")
    arts = split_articles(["x\n", " = A = \n", "a\n", " = = S = = \n", "b\n", " = B = \n", "c\n"])
    assert [len(a) for a in arts] == [5, 2]
    assert arts[0][:2] == ["x\n", " = A = \n"]
    assert split_articles(["a\n", "b\n"]) == [["a\n", "b\n"]]


def test_wikitext2_segments(wikitext_dir, cache_dir):
    c = load_corpus(
        "wikitext2",
        path=wikitext_dir,
        fraction=1.0,
        seq_len=32,
        num_domains=3,
        cache_dir=cache_dir,
    )
    assert c.domains == ["segment_0", "segment_1", "segment_2"]
    assert c.seq_len == 32 and c.vocab_size == 50257 and c.tokenizer == "gpt2"
    assert c.entropy_rate == [None, None, None]
    n = {t.shape[0] for t in c.train}
    assert len(n) == 1  # equal segments
    # The segments are the contiguous packed token stream of the train split, in order.
    tok = gpt2_tokenizer()
    lines = pq.read_table(
        os.path.join(wikitext_dir, "wikitext-2-raw-v1", "train-00000-of-00001.parquet")
    )["text"].to_pylist()
    stream = np.array([t for ids in tok.encode_batch(lines) for t in ids])
    got = np.concatenate([t.reshape(-1) for t in c.train])
    np.testing.assert_array_equal(got, stream[: got.size])
    assert all(v.shape[0] >= 1 for v in c.val)
    # fraction keeps the first rows only
    c2 = load_corpus(
        "wikitext2", path=wikitext_dir, fraction=0.5, seq_len=32, num_domains=3, cache=False
    )
    assert c2.token_counts().sum() < c.token_counts().sum()
    np.testing.assert_array_equal(c2.train[0][0], c.train[0][0])


@pytest.mark.parametrize("cluster", ["tfidf", "length"])
def test_wikitext2_articles(wikitext_dir, cache_dir, cluster):
    c = load_corpus(
        "wikitext2",
        path=wikitext_dir,
        fraction=1.0,
        seq_len=32,
        num_domains=2,
        grouping="articles",
        cluster=cluster,
        cache_dir=cache_dir,
    )
    assert c.num_domains == 2
    assert all(t.shape[0] > 0 for t in c.train) and all(v.shape[0] > 0 for v in c.val)
    assert sum(c.metadata["articles"]["train"]) == 40
    if cluster == "tfidf":
        # The two topics are separated: each cluster's text uses one topic's words only.
        for k in range(2):
            for split in (c.train[k], c.val[k]):
                found = set(gpt2_tokenizer().decode(np.asarray(split).ravel().tolist()).split())
                assert bool(found & set(SPORT)) != bool(found & set(MUSIC))
        assert c.metadata["articles"]["train"] == [20, 20]
        assert set(c.metadata["top_tokens"]) == {"cluster_0", "cluster_1"}
    else:
        assert c.domains == ["length_0", "length_1"]


def test_wikitext2_missing_split_dir(tmp_path):
    with pytest.raises(ValueError, match="no parquet files for split 'train'"):
        load_corpus("wikitext2", path=str(tmp_path), cache=False)


def test_wikitext2_missing_text_column(tmp_path):
    sub = tmp_path / "wikitext-2-raw-v1"
    sub.mkdir()
    for split in ("train", "validation"):
        pq.write_table(pa.table({"body": ["a"]}), sub / f"{split}-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="field 'text'"):
        load_corpus("wikitext2", path=str(tmp_path), cache=False)


def test_wikitext2_too_many_domains(wikitext_dir):
    with pytest.raises(ValueError, match="shorter than one sequence"):
        load_corpus(
            "wikitext2",
            path=wikitext_dir,
            fraction=1.0,
            seq_len=32,
            num_domains=100000,
            cache=False,
        )


# --------------------------------------------------------------------------------------------
# hf


def _pile_records(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = {"Sport": SPORT, "Music": MUSIC, "Rivers": RIVER}
    recs = []
    for i in range(n):
        dom = list(names)[i % 3]
        recs.append(
            {"text": _para(names[dom], rng, 30).strip(), "meta": {"pile_set_name": dom, "id": i}}
        )
    return recs


@pytest.fixture(scope="module")
def pile_jsonl(tmp_path_factory):
    root = tmp_path_factory.mktemp("pile")
    path = root / "train.jsonl"
    with open(path, "w") as fh:
        for r in _pile_records(120, 0):
            fh.write(json.dumps(r) + "\n")
    return str(path)


def test_hf_local_json_domains(pile_jsonl, cache_dir):
    c = load_corpus(
        "hf",
        path=pile_jsonl,
        domain_field="meta.pile_set_name",
        seq_len=32,
        val_fraction=0.1,
        cache_dir=cache_dir,
    )
    assert c.domains == ["Music", "Rivers", "Sport"]
    for k, words in ((0, MUSIC), (1, RIVER), (2, SPORT)):
        assert _only_words(c.train[k], words) and _only_words(c.val[k], words)
    # every document ends with EOS
    assert (np.asarray(c.train[0]) == 50256).sum() > 0


def test_hf_allow_list_cap_and_streaming(pile_jsonl):
    common = dict(path=pile_jsonl, domain_field="meta.pile_set_name", seq_len=16, cache=False)
    a = load_corpus("hf", domains=["Sport", "Rivers"], max_tokens_per_domain=400, **common)
    assert a.domains == ["Sport", "Rivers"]
    tot = a.token_counts() + a.val_token_counts()
    assert (tot <= 400).all() and (tot >= 400 - 2 * 16).all()
    b = load_corpus(
        "hf", domains=["Sport", "Rivers"], max_tokens_per_domain=400, streaming=True, **common
    )
    for x, y in zip(a.train + a.val, b.train + b.val, strict=True):
        np.testing.assert_array_equal(x, y)
    one = load_corpus("hf", path=pile_jsonl, seq_len=16, cache=False)
    assert one.domains == ["all"]


def test_hf_parquet_and_val_split(tmp_path):
    recs = _pile_records(60, 1)
    flat = {"text": [r["text"] for r in recs], "src": [r["meta"]["pile_set_name"] for r in recs]}
    pq.write_table(pa.table(flat), tmp_path / "train.parquet")
    pq.write_table(pa.table(flat), tmp_path / "validation.parquet")
    c = load_corpus(
        "hf",
        path="parquet",
        data_files={
            "train": str(tmp_path / "train.parquet"),
            "validation": str(tmp_path / "validation.parquet"),
        },
        domain_field="src",
        val_split="validation",
        seq_len=16,
        cache=False,
    )
    assert c.domains == ["Music", "Rivers", "Sport"]
    for tr, va in zip(c.train, c.val, strict=True):
        np.testing.assert_array_equal(tr, va)  # same files for both splits


def test_hf_missing_fields(pile_jsonl):
    with pytest.raises(ValueError, match="domain_field 'meta.nope'|field 'meta.nope'"):
        load_corpus("hf", path=pile_jsonl, domain_field="meta.nope", cache=False)
    with pytest.raises(ValueError, match="'body'"):
        load_corpus("hf", path=pile_jsonl, text_field="body", cache=False)
    with pytest.raises(ValueError, match="'body'"):
        load_corpus("hf", path=pile_jsonl, text_field="body", streaming=True, cache=False)


def test_hf_empty_and_short_domain(pile_jsonl):
    with pytest.raises(ValueError, match="domain 'Poetry' is empty"):
        load_corpus(
            "hf",
            path=pile_jsonl,
            domain_field="meta.pile_set_name",
            domains=["Sport", "Poetry"],
            seq_len=16,
            cache=False,
        )
    with pytest.raises(ValueError, match="domain 'Sport'.*shorter than one"):
        load_corpus(
            "hf",
            path=pile_jsonl,
            domain_field="meta.pile_set_name",
            domains=["Sport"],
            max_tokens_per_domain=10,
            seq_len=16,
            cache=False,
        )


# --------------------------------------------------------------------------------------------
# files


@pytest.fixture()
def files_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "corpus"
    (root / "sport").mkdir(parents=True)
    for i in range(6):
        (root / "sport" / f"doc{i}.txt").write_text(_para(SPORT, rng, 40))
    with open(root / "music.jsonl", "w") as fh:
        for _ in range(12):
            fh.write(json.dumps({"text": _para(MUSIC, rng, 30), "x": 1}) + "\n")
    pq.write_table(
        pa.table({"text": [_para(RIVER, rng, 30) for _ in range(12)]}), root / "rivers.parquet"
    )
    (root / "README.md").write_text("ignored")
    return root


def test_files_source(files_dir, cache_dir):
    c = load_corpus("files", path=str(files_dir), seq_len=16, val_fraction=0.2, cache_dir=cache_dir)
    assert c.domains == ["music", "rivers", "sport"]
    for k, words in ((0, MUSIC), (1, RIVER), (2, SPORT)):
        assert _only_words(c.train[k], words) and _only_words(c.val[k], words)
    n_tok = c.token_counts() + c.val_token_counts()
    assert (c.val_token_counts() >= 0.1 * n_tok).all()
    # deterministic given the seed; the hold-out moves with it
    c2 = load_corpus("files", path=str(files_dir), seq_len=16, val_fraction=0.2, cache=False)
    c3 = load_corpus(
        "files", path=str(files_dir), seq_len=16, val_fraction=0.2, seed=1, cache=False
    )
    np.testing.assert_array_equal(c.val[0], c2.val[0])
    assert any(not np.array_equal(a, b) for a, b in zip(c.val, c3.val, strict=True))


def test_files_txt_split_and_single_big_doc(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (root / "one.txt").write_text(" ".join(["word"] * 400))
    c = load_corpus("files", path=str(root), seq_len=16, cache=False)
    assert c.train[0].shape[0] >= 1 and c.val[0].shape[0] >= 1  # token-level hold-out
    (root / "one.txt").write_text("\n\n".join(" ".join(["a"] * 30) for _ in range(20)))
    c = load_corpus("files", path=str(root), seq_len=16, txt_split="paragraphs", cache=False)
    assert (np.asarray(c.train[0]) == 50256).sum() >= 10  # one EOS per paragraph


def test_files_errors(tmp_path, files_dir):
    (files_dir / "empty").mkdir()
    with pytest.raises(ValueError, match="domain 'empty' is empty"):
        load_corpus("files", path=str(files_dir), seq_len=16, cache=False)
    with pytest.raises(ValueError, match="not found"):
        load_corpus("files", path=str(files_dir), domains=["poetry"], seq_len=16, cache=False)
    root = tmp_path / "short"
    root.mkdir()
    (root / "tiny.txt").write_text("just a few words")
    with pytest.raises(ValueError, match="domain 'tiny'.*shorter than one sequence"):
        load_corpus("files", path=str(root), seq_len=64, cache=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "d.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(ValueError, match="field 'text' not found"):
        load_corpus("files", path=str(bad), cache=False)
    with pytest.raises(ValueError, match="not a directory"):
        load_corpus("files", path=str(tmp_path / "missing"), cache=False)


# --------------------------------------------------------------------------------------------
# cache and generic errors


def test_cache_hit_on_second_load(files_dir, cache_dir, caplog):
    a = load_corpus("files", path=str(files_dir), seq_len=16, cache_dir=cache_dir)
    assert not a.cache_hit and a.cache_path.startswith(cache_dir)
    with caplog.at_level(logging.INFO, logger="ado_ray.data.corpus"):
        b = load_corpus("files", path=str(files_dir), seq_len=16, cache_dir=cache_dir)
    assert b.cache_hit and b.cache_path == a.cache_path
    assert any("cache hit" in r.getMessage() for r in caplog.records)
    assert isinstance(b.train[0].base, np.memmap) or isinstance(b.train[0], np.memmap)
    assert not b.train[0].flags.writeable
    for x, y in zip(a.train + a.val, b.train + b.val, strict=True):
        np.testing.assert_array_equal(x, y)
    assert b.domains == a.domains and b.tokenizer == "gpt2"
    # a different option or changed input files -> a different entry
    c = load_corpus("files", path=str(files_dir), seq_len=32, cache_dir=cache_dir)
    assert not c.cache_hit and c.cache_path != a.cache_path
    (files_dir / "sport" / "doc0.txt").write_text(_para(SPORT, np.random.default_rng(5), 50))
    d = load_corpus("files", path=str(files_dir), seq_len=16, cache_dir=cache_dir)
    assert not d.cache_hit
    entries = sorted(os.listdir(cache_dir))
    assert len(entries) == 3 and not any(".tmp-" in e for e in entries)


def test_cache_env_default(files_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ADO_RAY_CACHE", str(tmp_path / "envcache"))
    a = load_corpus("files", path=str(files_dir), seq_len=16)
    assert a.cache_path.startswith(str(tmp_path / "envcache"))
    assert load_corpus("files", path=str(files_dir), seq_len=16).cache_hit


def test_synthetic_cache_opt_in(cache_dir):
    opts = dict(sequences_per_domain=16, val_sequences_per_domain=4, cache_dir=cache_dir)
    assert load_corpus("synthetic", **opts).cache_path is None
    a = load_corpus("synthetic", cache=True, **opts)
    b = load_corpus("synthetic", cache=True, **opts)
    assert not a.cache_hit and b.cache_hit
    assert b.entropy_rate == a.entropy_rate
    assert b.metadata["position_entropy"] == a.metadata["position_entropy"]


def test_concurrent_writers_do_not_corrupt(files_dir, cache_dir):
    from concurrent.futures import ThreadPoolExecutor

    def build(_):
        return load_corpus("files", path=str(files_dir), seq_len=16, cache_dir=cache_dir)

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(build, range(4)))
    final = load_corpus("files", path=str(files_dir), seq_len=16, cache_dir=cache_dir)
    assert final.cache_hit
    for r in results:
        for x, y in zip(r.train, final.train, strict=True):
            np.testing.assert_array_equal(x, y)
    entry = final.cache_path
    assert sorted(os.listdir(entry)) == ["meta.json", "train.npy", "val.npy"]


def test_unknown_source_and_options():
    with pytest.raises(ValueError, match="unknown corpus source 'pile'.*files, hf, synthetic"):
        load_corpus("pile")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['vocab'\].*synthetic"):
        load_corpus("synthetic", vocab=10)
    with pytest.raises(ValueError, match="needs option"):
        load_corpus("hf")


def test_a_cache_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    from ado_ray.data import cache

    path = str(tmp_path / "meta.json")
    cache._atomic_write_json(path, {"format": 1})
    with pytest.raises(TypeError):
        cache._atomic_write_json(path, {"format": object()})  # fails halfway through the dump
    assert json.loads(open(path).read()) == {"format": 1}
    assert os.listdir(tmp_path) == ["meta.json"]
