"""Nothing silently wrong at the model's edges (issue 19): a tokenizer whose ids the
checkpoint has no rows for, the weights' content digest, and model names used as
folder names.

Damaged checkpoint files are tested with the other formats in test_checkpoints.py.
"""

import json
import pathlib
import sys

import pytest
from parity_helpers import T5_FAMILIES, make_hf_llama, make_hf_t5

from jaxrobust import checkpoints, inference
from jaxrobust.analysis import report, scoring
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.parallel import partitioning
from jaxrobust.storage import records

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


# ---------------------------------------------------------------------------
# Model names are folder names.
# ---------------------------------------------------------------------------


def test_model_names_map_to_one_safe_folder():
    assert records.model_dirname("flan-t5-xl") == "flan-t5-xl"
    assert records.model_dirname("t5-v1_1-small") == "t5-v1_1-small"
    assert records.model_dirname("google/flan-t5-xl") == "google__flan-t5-xl"
    path = records.records_path("/out", "google/flan-t5-xl", "jr:boolq:qa:u1")
    assert str(path) == "/out/records/google__flan-t5-xl/jr__boolq__qa__u1.jsonl"


@pytest.mark.parametrize(
    "name", ["", "../../x", "..", "a/../../b", "/etc/x", "a//b", "a/", "./a", "a\\..\\b", "a\nb"]
)
def test_names_that_leave_or_blur_the_folder_are_refused(name):
    with pytest.raises(ValueError, match="cannot name a records folder"):
        records.model_dirname(name)
    with pytest.raises(ValueError, match="cannot name a records folder"):
        inference.ModelSpec(name=name)


def test_a_name_holding_the_slash_escape_is_refused():
    """'a__b' would share the folder of 'a/b'."""
    with pytest.raises(ValueError, match="'__' is reserved"):
        records.model_dirname("a__b")


def _eval(out: pathlib.Path, name: str) -> None:
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    from jaxrobust import main

    args = [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toyqa:qa#all']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['eval_tasks']",
        f"--gin.evaluation.ModelSpec.name='{name}'",
    ]
    assert main.main(args) == 0


def test_a_name_with_a_slash_reaches_the_report(tmp_path, monkeypatch):
    """Before: records went to records/google/flan-t5-xl/, which the report skipped."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    _eval(out, "google/flan-t5-xl")
    folder = out / "records" / "google__flan-t5-xl"
    assert json.loads((folder / "model.json").read_text())["name"] == "google/flan-t5-xl"
    assert len(list(folder.glob("*.jsonl"))) == 4
    assert sorted(p.name for p in (out / "records").iterdir()) == ["google__flan-t5-xl"]
    models, files = scoring.load(out)
    assert list(models) == ["google/flan-t5-xl"] and len(files) == 4
    rep = report.write_report(out, n_resamples=20)
    summary = json.loads((rep / "summary.json").read_text())
    assert {s["model"] for s in summary["summary"]} == {"google/flan-t5-xl"}
    assert "google/flan-t5-xl" in (rep / "summary.md").read_text()


def test_a_traversing_name_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    """Before: `../../x` wrote <out>/records/../../x, i.e. a folder x beside <out>."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"model name '\.\./\.\./x' cannot name a records folder"):
        _eval(out, "../../x")
    assert list(tmp_path.iterdir()) == []
