"""Nothing silently wrong at the model's edges (issue 19): a tokenizer whose ids the
checkpoint has no rows for, the weights' content digest, and model names used as
folder names.

Damaged checkpoint files are tested with the other formats in test_checkpoints.py.
"""

import pathlib

import pytest
from parity_helpers import T5_FAMILIES, make_hf_llama, make_hf_t5

from jaxrobust import checkpoints, inference
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.parallel import partitioning

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BYTE_IDS = ByteTokenizer.vocab_size  # 259


def _load(**spec):
    return inference.load_model(
        inference.ModelSpec(name="m", **spec), partitioning.single_device_mesh()
    )


# ---------------------------------------------------------------------------
# Vocabulary: the checkpoint needs a row for every id the tokenizer produces.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_checkpoint_smaller_than_the_tokenizer_is_refused(tmp_path, family):
    """Before: loaded, and every score was NaN (JAX fills out-of-range rows with NaN)."""
    make = make_hf_t5 if family == "t5" else make_hf_llama
    make(tmp_path, vocab_size=120)
    with pytest.raises(checkpoints.CheckpointError) as e:
        _load(family=family, checkpoint=str(tmp_path), tokenizer="byte")
    msg = str(e.value)
    assert f"checkpoint {tmp_path} has 120 embedding rows" in msg
    assert f"the byte tokenizer produces ids up to {BYTE_IDS - 1} ({BYTE_IDS} ids)" in msg


def test_hf_tokenizer_larger_than_the_checkpoint_is_refused(tmp_path):
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import PreTrainedTokenizerFast

    spm = SentencePieceUnigramTokenizer()
    corpus = ["Is the following statement true? Paris is the capital of France."] * 20
    spm.train_from_iterator(
        corpus, vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=spm, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    tok.save_pretrained(tmp_path / "tok")
    n_ids = len(tok)
    make_hf_t5(tmp_path / "small", vocab_size=n_ids - 1)
    with pytest.raises(checkpoints.CheckpointError) as e:
        _load(checkpoint=str(tmp_path / "small"), tokenizer=str(tmp_path / "tok"))
    msg = str(e.value)
    assert f"checkpoint {tmp_path / 'small'} has {n_ids - 1} embedding rows" in msg
    assert f"tokenizer {tmp_path / 'tok'} produces ids up to {n_ids - 1} ({n_ids} ids)" in msg

    # More rows than ids is fine: T5 checkpoints have 32128 rows for 32100 pieces.
    make_hf_t5(tmp_path / "large", vocab_size=n_ids + 28)
    assert _load(checkpoint=str(tmp_path / "large"), tokenizer=str(tmp_path / "tok")).config


def test_random_weights_with_a_preset_too_small_for_the_tokenizer_are_refused():
    message = r"random-weight model \(preset 'tiny'\) has 100 embedding rows"
    with pytest.raises(checkpoints.CheckpointError, match=message):
        inference.load_model(
            inference.ModelSpec(name="m", tokenizer="byte"),
            partitioning.single_device_mesh(),
            config_overrides={"vocab_size": 100},
        )


# ---------------------------------------------------------------------------
# The weights digest on the loaded model.
# ---------------------------------------------------------------------------


def test_loaded_model_digest_is_the_checkpoints_content(tmp_path):
    make_hf_t5(tmp_path / "a", vocab_size=264, **T5_FAMILIES["t5_v1_1"])
    loaded = _load(checkpoint=str(tmp_path / "a"), tokenizer="byte")
    digest = checkpoints.WeightsDigest()
    checkpoints.load_hf_t5(tmp_path / "a", digest=digest)
    assert loaded.weights_digest == digest.hexdigest()
    assert loaded.weights_digest.startswith("sha256:")
    make_hf_t5(tmp_path / "b", seed=1, vocab_size=264, **T5_FAMILIES["t5_v1_1"])
    other = _load(checkpoint=str(tmp_path / "b"), tokenizer="byte")
    assert other.weights_digest != loaded.weights_digest


def test_random_weights_digest_follows_what_makes_them():
    base = _load(tokenizer="byte").weights_digest
    assert base.startswith("init-sha256:")
    assert _load(tokenizer="byte").weights_digest == base
    for change in ({"seed": 1}, {"dtype": "bfloat16"}, {"family": "llama"}):
        assert _load(tokenizer="byte", **change).weights_digest != base, change
