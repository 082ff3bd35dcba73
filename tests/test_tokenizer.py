"""Tokenizers: vocabularies trained here (with `tokenizers`), loaded from disk, and
our ids against `transformers`' own `input_ids` for T5 (EOS appended) and LLaMA
(BOS prepended) tokenizers."""

import json

import pytest

from jaxrobust.inference.tokenizer import ByteTokenizer, HFTokenizer

CORPUS = [
    "Is the following statement true? Paris is the capital of France.",
    "Classify the relation between the two marked entities in the sentence.",
    "The smoke came from a fire in the kitchen of the old house.",
    "Answer yes or no. Does the passage support the claim?",
] * 50
# Unicode, an unseen character (-> <unk> for T5), odd spacing, the empty string.
STRINGS = [
    "Paris is the capital of France.",
    "né? 关系 über café",
    "Answer yes or no.  Does the passage support the claim?",
    "  leading and trailing  ",
    "a snowman ☃ in the kitchen",
    "",
]


@pytest.fixture(scope="module")
def t5_tokenizer_dir(tmp_path_factory):
    """T5's layout (pad 0, </s> 1, <unk> 2): a SentencePiece unigram model trained
    here with `tokenizers`, saved by HF as `tokenizer.json` like Flan-T5's."""
    import transformers
    from tokenizers import SentencePieceUnigramTokenizer

    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(
        CORPUS, vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=spm, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    d = tmp_path_factory.mktemp("spm") / "hf"
    tok.save_pretrained(d)
    return d


def test_hf_tokenizer_from_directory(t5_tokenizer_dir):
    tok = HFTokenizer(t5_tokenizer_dir)
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    ids = tok.encode("Paris is the capital of France.")
    assert ids[-1] == tok.eos_id and tok.pad_id not in ids
    assert tok.encode("Paris", add_eos=False)[-1] != tok.eos_id
    assert tok.decode(ids + [0, 0]) == "Paris is the capital of France."
    # Decoding stops at the first EOS (generation returns only new text).
    assert tok.decode(tok.encode("yes") + tok.encode("no")) == "yes"


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    ids = tok.encode("né? 关系")
    assert ids[-1] == 1 and min(ids[:-1]) >= 3
    assert tok.decode(ids) == "né? 关系"
    assert tok.vocab_size == 259


def test_missing_tokenizer_files_fail_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer files .*tokenizer.json"):
        HFTokenizer(tmp_path)


def _trained(model_class, **train_kwargs) -> dict:
    """The model section of a `tokenizers` tokenizer trained on CORPUS."""
    tok = model_class()
    tok.train_from_iterator(CORPUS + ["né? 关系 über café"] * 5, **train_kwargs)
    return json.loads(tok.to_str())["model"]


def test_t5_ids_equal_transformers_input_ids(tmp_path):
    """A T5 tokenizer (unigram, pad 0, </s> 1, <unk> 2): HF appends </s> itself."""
    import transformers
    from tokenizers import SentencePieceUnigramTokenizer

    model = _trained(
        SentencePieceUnigramTokenizer,
        vocab_size=120,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
    )
    vocab = [tuple(piece) for piece in model["vocab"]]
    transformers.T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = HFTokenizer(tmp_path)
    assert (ours.pad_id, ours.eos_id, ours.unk_id) == (0, 1, 2)
    for text in STRINGS:
        ids = hf(text)["input_ids"]
        assert ours.encode(text) == ids, text
        assert ours.decode(ids + [0, 0]) == hf.decode(ids, skip_special_tokens=True), text
    assert 2 in ours.encode("☃")  # Unseen: <unk>, as HF has it.


def test_llama_ids_equal_transformers_input_ids(tmp_path):
    """A LLaMA tokenizer (BPE, <unk> 0, <s> 1, </s> 2, no pad): HF prepends <s> itself."""
    import transformers
    from tokenizers import SentencePieceBPETokenizer

    model = _trained(
        SentencePieceBPETokenizer, vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"]
    )
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    transformers.LlamaTokenizer(
        vocab=model["vocab"], merges=merges, add_bos_token=True
    ).save_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = HFTokenizer(tmp_path)
    assert (ours.unk_id, ours.bos_id, ours.eos_id, ours.pad_id) == (0, 1, 2, 2)
    for text in STRINGS:
        ids = hf(text)["input_ids"]
        assert ids[0] == 1 and ours.encode(text, add_eos=False, add_bos=True) == ids, text
        assert ours.encode(text) == ids[1:] + [2], text
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True), text
