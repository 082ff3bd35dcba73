"""Tokenizers behind one small interface.

The rest of the code needs: text -> ids (with or without EOS), ids -> text,
and the pad / EOS / BOS ids. `HFTokenizer` wraps the tokenizer stored in a
checkpoint directory (`tokenizer.json`, `spiece.model`, ...);
`ByteTokenizer` is ByT5's byte-level scheme, which needs no vocabulary file
and so serves models trained from scratch here.
"""

from __future__ import annotations

import os
from typing import Any, Protocol


class Tokenizer(Protocol):
    pad_id: int
    eos_id: int
    bos_id: int | None
    vocab_size: int

    def encode(self, text: str, add_eos: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class HFTokenizer:
    """The HF tokenizer saved next to a checkpoint (no hub access needed)."""

    def __init__(self, directory: str | os.PathLike):
        from transformers import AutoTokenizer

        self.directory = str(directory)
        names = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "tokenizer.model")
        if not any(os.path.exists(os.path.join(self.directory, n)) for n in names):
            found = sorted(os.listdir(self.directory)) if os.path.isdir(self.directory) else None
            raise FileNotFoundError(
                f"{directory}: no tokenizer files (expected one of {', '.join(names)}); "
                f"found {found if found is not None else 'no such directory'}"
            )
        self._tok = AutoTokenizer.from_pretrained(self.directory)
        tok = self._tok
        if tok.pad_token_id is None and tok.eos_token_id is None:
            raise ValueError(f"{directory}: tokenizer has neither a pad nor an EOS token")
        self.eos_id = tok.eos_token_id
        # LLaMA-style vocabularies have no pad token; id 0 there is <unk>, so
        # padding reuses EOS and masks are always explicit, never `id != 0`.
        self.unk_id = tok.unk_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self.pad_id is not None and self.pad_id == self.unk_id and self.eos_id is not None:
            # Some LLaMA set-ups declare pad = <unk> (WizardLM's inference scripts
            # set pad id 0); pad with EOS instead, so padding never uses the id
            # that real text produces for unknown characters.
            self.pad_id = self.eos_id
        self.bos_id = tok.bos_token_id
        self.vocab_size = len(tok)
        # Added tokens may sit past len(tok) - 1 in odd vocabularies; the model needs a
        # row for every id the tokenizer can produce.
        self.id_limit = max([self.vocab_size, *(i + 1 for i in tok.get_vocab().values())])

    def encode(self, text: str, add_eos: bool = True, add_bos: bool = False) -> list[int]:
        ids = self._tok(text, add_special_tokens=False)["input_ids"]
        if add_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids: list[int]) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self._tok.decode(ids, skip_special_tokens=True)


def id_limit(tokenizer: Any) -> int | None:
    """One more than the largest id `tokenizer` produces; None when it does not say.

    The model's embedding needs at least this many rows.
    """
    limit = getattr(tokenizer, "id_limit", None)
    return limit if limit is not None else getattr(tokenizer, "vocab_size", None)


class ByteTokenizer:
    """ByT5's scheme: pad 0, EOS 1, UNK 2, UTF-8 byte b -> b + 3."""

    pad_id, eos_id, unk_id = 0, 1, 2
    bos_id = None
    offset = 3
    vocab_size = 256 + 3

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        ids = [b + self.offset for b in text.encode("utf-8")]
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids: list[int]) -> str:
        out = bytearray()
        for i in ids:
            if i == self.eos_id:
                break
            if i >= self.offset:
                out.append(i - self.offset)
        return out.decode("utf-8", errors="replace")
