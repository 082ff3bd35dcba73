"""The study's training pieces: the decaying learning rate and span-corruption pretraining."""

import json
import shutil

import numpy as np
import optax
import pytest

from jaxrobust import evaluation
from jaxrobust.study import corpus, vocab
from jaxrobust.training import optimizer, pretrain
from jaxrobust.training.options import TrainOptions


def test_learning_rate_schedules_against_their_formulas():
    at = np.array([0, 5, 10, 35, 60, 110])
    for decay, after in {
        "constant": lambda s: 0.1 + 0 * s,
        "linear": lambda s: 0.1 * (1 - (s - 10) / 100),
        "cosine": lambda s: 0.05 * (1 + np.cos(np.pi * (s - 10) / 100)),
    }.items():
        opts = TrainOptions(learning_rate=0.1, warmup_steps=10, decay=decay, num_steps=110)
        schedule = optimizer.learning_rate_schedule(opts)
        expected = np.where(at < 10, 0.1 * at / 10, after(at))
        got = np.array([float(schedule(s)) for s in at])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9, err_msg=decay)
    assert (
        float(optimizer.learning_rate_schedule(TrainOptions(num_steps=5, decay="cosine"))(5)) == 0
    )
    with pytest.raises(ValueError, match="decay 'exp': expected one of"):
        optimizer.learning_rate_schedule(TrainOptions(decay="exp"))
    assert isinstance(
        optimizer.learning_rate_schedule(TrainOptions()), type(optax.constant_schedule(1.0))
    )


@pytest.mark.heavy
def test_pretraining_learns_resumes_exactly_and_keeps_the_checkpoint(tmp_path):
    tok = vocab.train(tmp_path / "tok", vocab_size=512, documents=64)
    model = evaluation.ModelSpec(name="p", preset="tiny", tokenizer=str(tok), seed=0)
    texts = corpus.documents(64)
    opts = pretrain.PretrainOptions(
        num_steps=24, batch_size=8, learning_rate=3e-3, max_len=64, checkpoint_every=12, log_every=4
    )
    whole = pretrain.pretrain(model, tmp_path / "p", texts, vocab.sentinel_ids(), opts)
    assert whole["step"] == 24 and whole["documents"] == 64
    weights = tmp_path / "p" / "hf_model" / "model.safetensors"
    final = weights.read_bytes()
    # Interrupted after step 12's checkpoint, then resumed: the same weights, bit for bit.
    shutil.rmtree(tmp_path / "p" / "checkpoints" / "24")
    shutil.rmtree(tmp_path / "p" / "hf_model")
    (tmp_path / "p" / "metrics.json").unlink()
    assert pretrain.pretrain(model, tmp_path / "p", texts, vocab.sentinel_ids(), opts) == whole
    assert weights.read_bytes() == final
    # Pretraining lowered the loss from random weights' (step 1).
    start = pretrain.PretrainOptions(**{**opts.__dict__, "num_steps": 1, "log_every": 1})
    first = pretrain.pretrain(model, tmp_path / "first", texts, vocab.sentinel_ids(), start)
    assert whole["train"]["loss"] < first["train"]["loss"] - 0.5
    settings = json.loads((tmp_path / "p" / "pretrain_settings.json").read_text())
    assert settings["pretrain"]["num_steps"] == 24 and settings["documents"] == 64
    # Other settings in the same folder are refused.
    (tmp_path / "p" / "metrics.json").unlink()
    other = pretrain.PretrainOptions(**{**opts.__dict__, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match="other settings"):
        pretrain.pretrain(model, tmp_path / "p", texts, vocab.sentinel_ids(), other)
