"""The built-in study's tokenizer: a small unigram vocabulary trained on the world.

Byte-level inputs are four to five times longer than word pieces, which on two
CPU cores is the difference between minutes and an hour of training. So the
study trains a SentencePiece-style unigram model (HF `tokenizers`) on the
world's training passages and questions plus every template of the study's
banks rendered on a few training records (all roles: a held-out template's
words get vocabulary entries but, never being trained on, keep their initial
embeddings — what "unobserved" means to a model trained from scratch), and
saves it as an HF tokenizer directory that `jaxrobust.inference.tokenizer.HFTokenizer`
loads. Special ids follow T5: pad 0, EOS 1, unk 2; then 16 sentinels for span
corruption (`<extra_id_0>` is id 3). With `documents`, the pretraining corpus
(`study.corpus`) is part of the training text.

Training is deterministic for a given corpus (checked by the tests), so the
same seed gives the same vocabulary.
"""

from __future__ import annotations

import json
import pathlib

from jaxrobust.tasks import world

SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2, as in T5.
NUM_SENTINELS = 16  # <extra_id_0> ... : span corruption's sentinels (training.pretrain).
SENTINELS = tuple(f"<extra_id_{i}>" for i in range(NUM_SENTINELS))  # ids 3 .. 18.
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def sentinel_ids() -> list[int]:
    """The sentinels' ids, in order (they follow the specials)."""
    return list(range(len(SPECIALS), len(SPECIALS) + NUM_SENTINELS))


def training_text(seed: int = 0, records_per_template: int = 5, documents: int = 0) -> list[str]:
    """The world's training corpus, `documents` pretraining documents (`study.corpus`), and
    every study template rendered on a few records."""
    from jaxrobust.study import corpus
    from jaxrobust.tasks import builtin, registry

    texts = world.corpus(seed) + corpus.documents(documents, seed)
    for task in builtin.TASKS:
        spec = builtin.spec(task, seed)
        for template in builtin.bank(task):
            for record in world.records(task, "train", seed)[:records_per_template]:
                features = registry.to_features(spec, template, record, seed=seed)
                texts += [features["inputs"], *features["options"]]
    return texts


def train(
    directory: str | pathlib.Path, *, vocab_size: int = 1024, seed: int = 0, documents: int = 0
) -> pathlib.Path:
    """Trains the vocabulary (on `training_text`) and writes an HF tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    # Words keep their leading "▁"; punctuation splits off, so "Seldale." is "▁Seldale" ".".
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIALS, *SENTINELS],
        show_progress=False,
    )
    tok.train_from_iterator(training_text(seed, documents=documents), trainer=trainer)
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    specials = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096, **specials}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=1, sort_keys=True))
    return out
