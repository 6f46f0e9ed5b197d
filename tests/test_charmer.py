"Charmer: the Levenshtein bound (property-based), greedy monotonicity, determinism, truncation and bad input."

import hashlib

import Levenshtein
import pytest
import torch
from hypothesis import given, settings, strategies as st

from robustclip.core import RobustClipError
from robustclip.attacks.charmer import (
    DELETE,
    ASCII_ALPHABET,
    write,
    n_slots,
    charmer,
    CharmerSearch,
    get_alphabet,
    visible_length,
    attack_slots,
    margin_objective,
    embedding_objective,
    class_margins,
    score_texts,
)


def hashed(texts, owners):
    "A deterministic pseudo-random objective: any edit can raise or lower it."
    return torch.tensor(
        [int(hashlib.md5(t.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) / 2**32 for t in texts]
    )


texts_st = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(text=texts_st, slot=st.integers(0, 200), c=st.sampled_from(["", "a", " ", "é", "🙂"]))
def test_write_is_one_edit(text, slot, c):
    slot = slot % n_slots(text)
    out = write(text, slot, c)
    assert Levenshtein.distance(text, out) <= 1
    if slot % 2 == 0 and c == DELETE:
        assert out == text  # deleting a gap does nothing


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(texts_st, min_size=1, max_size=4),
    k=st.integers(0, 4),
    n=st.integers(1, 6),
    alphabet=st.sampled_from([None, "ascii", "letters", "xy", "é🙂"]),
)
def test_charmer_stays_within_k_and_never_gets_worse(texts, k, n, alphabet):
    if alphabet is None and not "".join(texts):
        alphabet = "ascii"  # no characters in the data to build Γ from
    r = charmer(texts, hashed, k=k, n_positions=n, alphabet=alphabet, threshold=None, batch_size=7)
    assert len(r) == len(texts)
    for a, t, d in zip(r.texts, texts, r.distance):
        assert Levenshtein.distance(a, t) == d <= k
        if not t.strip():
            assert a == t  # empty / blank texts are left alone
    assert (r.scores >= r.clean_scores).all()
    assert torch.equal(r.scores, hashed(r.texts, None))  # the reported score is the returned text's


def test_batch_size_and_group_size_do_not_change_the_result():
    texts = ["the quick brown fox", "jumps over", "the lazy dog!", "ok"]
    a = charmer(texts, hashed, k=2, n_positions=5, threshold=None, batch_size=3, search=CharmerSearch(group_size=1))
    b = charmer(texts, hashed, k=2, n_positions=5, threshold=None, batch_size=4096, search=CharmerSearch(group_size=16))
    assert a.texts == b.texts and torch.equal(a.scores, b.scores)


def test_sampled_alphabet_is_seeded():
    texts = ["a sentence to attack", "another one"]
    kw = dict(k=2, search=CharmerSearch(n_chars=5), alphabet="ascii", threshold=None)
    runs = [charmer(texts, hashed, seed=s, **kw).texts for s in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert all(Levenshtein.distance(a, t) <= 2 for run in runs for a, t in zip(run, texts))


def test_early_stop_counts_queries():
    count = lambda texts, owners: torch.tensor([float(t.count("z")) for t in texts])
    r = charmer(["abc", "zz"], count, k=5, alphabet="z", threshold=0.5)
    assert r.success.tolist() == [True, True]
    assert r.distance == [1, 0] and r.queries[1] == 1  # the second text already succeeded: not attacked
    assert r.success_rate == 1.0


def test_alphabets():
    assert len(ASCII_ALPHABET) == 96 and ASCII_ALPHABET[0] == DELETE and len(set(ASCII_ALPHABET)) == 96
    assert get_alphabet(None, ["ba", "c"]) == ["", "a", "b", "c"]
    with pytest.raises(RobustClipError, match="single characters"):
        get_alphabet(["ab"])


def test_bad_arguments_are_clear():
    with pytest.raises(RobustClipError, match="Levenshtein budget"):
        charmer(["a"], hashed, k=-1)
    with pytest.raises(RobustClipError, match="n_positions"):
        charmer(["a"], hashed, n_positions=0)
    with pytest.raises(RobustClipError, match="strings"):
        charmer(["a", 3], hashed)
    with pytest.raises(RobustClipError, match="one score per text"):
        score_texts(lambda t, o: torch.zeros(2), ["a"], [0])


def test_truncation_edits_beyond_the_context_are_invisible(tiny):
    tok = tiny.tokenizer
    long = " ".join(f"word{i}" for i in range(60))  # far more than the 30 content tokens of RC-Tiny-ViT
    v = visible_length(long, tok)
    assert 0 < v < len(long)
    assert torch.equal(tok([long]), tok([long[: v + 1] + "XYZ" + long[v + 4 :]]))
    assert attack_slots(long, tok) == 2 * v + 2
    seen = []

    def spy(texts, owners):
        seen.extend(texts)
        return hashed(texts, owners)

    charmer([long], spy, k=1, n_positions=3, threshold=None, tokenizer=tok)
    assert len(seen) > 1 + 2 * v and all(t.endswith(long[v + 1 :]) for t in seen)  # the invisible tail is never edited


@settings(max_examples=30, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["cat", "a", "photograph", "7", "x-ray", "...", "naïve", "42", "!!"]), min_size=1, max_size=40
    ),
    ctx=st.integers(4, 20),
)
def test_visible_length_is_a_safe_bound(words, ctx):
    from open_clip import SimpleTokenizer

    tok, text = SimpleTokenizer(context_length=ctx), " ".join(words)
    v = visible_length(text, tok)
    if v < len(text):
        assert torch.equal(tok([text]), tok([text[: v + 1] + "ZZZ"]))  # edits after v+1 are invisible
    else:
        assert v == len(text) and attack_slots(text, tok) == n_slots(text)


def test_margin_objective_matches_predictions(tiny):
    texts = ["a red seven", "", "naïve café ☕ 🙂", "x" * 400, "ab"]
    labels = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        W = tiny.encode_text(["red", "blue", "green"])
    r = charmer(texts, margin_objective(tiny, W, labels), k=3, n_positions=4, tokenizer=tiny.tokenizer, batch_size=128)
    with torch.no_grad():
        m, pred = class_margins(tiny.encode_text(r.texts), W, labels)
    assert torch.allclose(m, r.scores, atol=1e-4)
    assert r.success.tolist() == (pred != labels).tolist()
    assert r.texts[1] == "" and max(r.distance) <= 3
    with pytest.raises(RobustClipError, match="labels must be in"):
        margin_objective(tiny, W, [5])


def test_embedding_objectives(tiny):
    caps = ["a cat on a mat", "two dogs"]
    with torch.no_grad():
        A = tiny.encode_text(caps)
    for kind in ("l2", "dissim"):
        r = charmer(caps, embedding_objective(tiny, A, kind), k=1, threshold=None, tokenizer=tiny.tokenizer)
        assert (r.scores > r.clean_scores).all() and r.distance == [1, 1]
    with torch.no_grad():
        T = tiny.encode_text(["a pyramid"])
    r = charmer(caps, embedding_objective(tiny, T, "sim"), k=2, threshold=None)  # one shared anchor
    assert (r.scores >= r.clean_scores).all()
