"""Tokenizers: a T5-style SentencePiece vocabulary trained here, loaded from disk."""

import pytest

from jaxrobust.inference.tokenizer import ByteTokenizer, HFTokenizer

CORPUS = [
    "Is the following statement true? Paris is the capital of France.",
    "Classify the relation between the two marked entities in the sentence.",
    "The smoke came from a fire in the kitchen of the old house.",
    "Answer yes or no. Does the passage support the claim?",
] * 50


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
