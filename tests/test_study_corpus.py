"""The study's pretraining: its corpus (coverage, no held-out template text) and span corruption."""

import collections

import numpy as np
import pytest
from jaxrobust.tasks import builtin

from jaxrobust.study import corpus, vocab
from jaxrobust.training import pretrain

DOCS = 4000  # The study's default (gin_configs/runs/study.gin: pretrain_documents).


def _templates(*roles):
    return [t for task in builtin.TASKS for t in builtin.bank(task) if builtin.role(t.id) in roles]


def test_no_four_token_sequence_of_a_held_out_template_occurs_in_the_corpus():
    held = corpus.ngrams(p for t in _templates("heldout") for p in corpus.literal_parts(t))
    assert len(held) == 84  # The 16 held-out templates' own 4-grams.
    found = held & corpus.ngrams(corpus.documents(DOCS))
    assert not found, sorted(found)[:10]
    # The check can fail: a corpus sentence lifted from a held-out template is caught.
    lifted = "Consider Ada Brask and Ashford. According to the passage below, what is theirs?"
    assert held & corpus.ngrams([lifted])


def test_every_template_and_answer_word_occurs_in_varied_contexts():
    docs = corpus.documents(DOCS)
    counts = collections.Counter(w for d in docs for w in corpus.tokens(d))
    before = collections.defaultdict(set)
    for d in docs:
        toks = corpus.tokens(d)
        for a, b in zip(toks, toks[1:], strict=False):
            before[b].add(a)
    words = corpus.template_words(_templates("observed", "paraphrase", "heldout", "dev"))
    # Answer words of every role, as the templates render them.
    answers = "yes no true false a b c d 1 2 3 4 birthplace residence employer founder location"
    answers += " unrelated individual institution human company none"
    for word in answers.split():
        assert word in words, word
    rare = {w: counts[w] for w in words if counts[w] < 20}
    assert not rare, rare
    narrow = {w: sorted(before[w]) for w in words if len(before[w]) < 2}
    assert not narrow, narrow


def test_corpus_is_a_pure_function_of_its_arguments():
    first = corpus.documents(50, seed=0)
    corpus._documents.cache_clear()
    assert corpus.documents(50, seed=0) == first
    assert corpus.documents(50, seed=1) != first
    assert corpus.documents(10, seed=0) == first[:10]


@pytest.mark.parametrize("n", [2, 5, 40, 127])
def test_span_corruption_hides_spans_the_target_restores(n):
    ids = list(range(100, 100 + n))
    sentinels = list(range(3, 19))
    rng = np.random.default_rng(n)
    inputs, targets = pretrain.span_corrupt(ids, rng, sentinels, eos_id=1)
    assert inputs[-1] == 1 and targets[-1] == 1
    # Put each sentinel's hidden tokens back: the document comes back whole.
    hidden, current = {}, None
    for tok in targets[:-1]:
        if tok in sentinels:
            current = tok
            hidden[tok] = []
        else:
            hidden[current].append(tok)
    restored = [t for tok in inputs[:-1] for t in (hidden[tok] if tok in sentinels else [tok])]
    assert restored == ids
    noise = sum(len(v) for v in hidden.values())
    assert noise == min(max(round(0.15 * n), 1), n - 1)
    used = [t for t in inputs if t in sentinels]
    assert used == sentinels[: len(used)] and all(hidden[s] for s in used)
    assert len(used) == max(1, min(round(noise / 3.0), noise, n - noise))


def test_span_corruption_needs_enough_sentinels():
    with pytest.raises(ValueError, match="needs 7 sentinels, the tokenizer has 2"):
        pretrain.span_corrupt(list(range(140)), np.random.default_rng(0), [3, 4], eos_id=1)


def test_the_vocabulary_holds_the_sentinels(tmp_path):
    from jaxrobust.inference.tokenizer import HFTokenizer

    tok = HFTokenizer(vocab.train(tmp_path, vocab_size=512, documents=50))
    for i, sid in enumerate(vocab.sentinel_ids()):
        assert tok.encode(f"<extra_id_{i}>", add_eos=False) == [sid]
    doc = corpus.documents(1)[0]
    assert tok.unk_id not in tok.encode(doc)
