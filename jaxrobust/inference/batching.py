"""Host-side input preparation: truncation that only shortens the passage, and buckets.

`fit_input` is the one truncation of every path (evaluation, training,
`score`; T5 and LLaMA): an input given in parts (`jaxrobust.data.parts.InputParts`,
what the tasks yield) loses words of its shortenable segments only (a
passage, a sentence around its entity mentions) until its tokens fit; its
instruction, question, options and answer cue are never cut. An input that
cannot fit even then, or a plain string that is too long (nothing in it is
known to be shortenable), is cut by the model's own rule (T5: the first
tokens and EOS; LLaMA: BOS and the last tokens) and flagged `protected_cut`.
`truncation="right"` (and `full_text`, what the engine's mode 'sun' cuts) is
the paper-faithful plain cut of Sun et al., the parts ignored.
`truncate_to_fit` / `truncate_passage` / `Truncatable` are the same search for
a passage given as a render function.

`bucket` rounds a size up to the next of a fixed set of padded sizes, so a
run compiles a bounded set of programs; `length_buckets` is the engine's default
set of input lengths (powers of two, with the midpoints above 128 tokens) and
`power_of_two_buckets` the plain doubling set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from jaxrobust.data.parts import InputParts

TRUNCATIONS = ("parts", "right")

# ---------------------------------------------------------------------------
# Truncation that only shortens the passage.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Truncatable:
    """An input whose passage may be shortened: `render(k)` keeps its first k words.

    `render` must keep everything else (instruction, options, answer cue) whole
    for every k; tasks build it from their template.
    """

    render: Callable[[int], str]
    num_words: int  # Words in the full passage; render(num_words) is the full input.


def truncate_to_fit(
    render: Callable[[int], str],
    num_words: int,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> tuple[str, int]:
    """The longest passage prefix whose rendered input fits `max_tokens`.

    Binary search over k in [0, num_words] (token counts grow with k).

    Returns:
      (rendered text, words kept); `words kept < num_words` means truncated.

    Raises:
      ValueError: the input does not fit even with the passage removed.
    """
    if count_tokens(render(num_words)) <= max_tokens:
        return render(num_words), num_words
    empty = render(0)
    if count_tokens(empty) > max_tokens:
        raise ValueError(
            f"input has {count_tokens(empty)} tokens with the passage removed, more than "
            f"max_tokens={max_tokens}; shorten the instruction or options, or raise "
            f"max_input_len. Input starts: {empty[:200]!r}"
        )
    lo, hi = 0, num_words  # render(lo) fits; render(hi) does not.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(render(mid)) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return render(lo), lo


def truncate_passage(
    before: str,
    passage: str,
    after: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> tuple[str, bool]:
    """`before + passage + after`, the passage cut at a word boundary to fit.

    The segment form of `truncate_to_fit`: `before` (e.g. the instruction) and
    `after` (options, answer cue) are never cut. Returns (text, truncated).
    """
    words = passage.split(" ")
    text, kept = truncate_to_fit(
        lambda k: before + " ".join(words[:k]) + after, len(words), count_tokens, max_tokens
    )
    return text, kept < len(words)


def full_text(x: str | InputParts | Truncatable) -> str:
    """The whole input, nothing shortened."""
    if isinstance(x, InputParts):
        return x.text
    if isinstance(x, Truncatable):
        return x.render(x.num_words)
    return x


@dataclasses.dataclass(frozen=True)
class Fitted:
    """One input made to fit: the text to tokenise and what was cut."""

    text: str  # The prompt text (prompt format applied), before any token cut.
    truncated: bool  # Shortened to fit (shortenable words dropped, or tokens cut).
    protected_cut: bool  # It still did not fit: the model's cut may lose protected text.


def fit_input(
    x: str | InputParts | Truncatable,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    apply: Callable[[str], str] = lambda s: s,
    truncation: str = "parts",
) -> Fitted:
    """The input's text shortened in its shortenable parts only until it fits.

    Args:
      x: an `InputParts` (or a `Truncatable`); a plain string has nothing known
        to be shortenable.
      count_tokens: prompt text -> its token count as the model encodes it.
      max_tokens: the model's input length.
      apply: the prompt format wrapped around the input (`prompt_formats`).
      truncation: "parts" (shorten the shortenable parts), or "right" (Sun et
        al.: the full text, cut by the model's rule; any cut is flagged
        `protected_cut`, since it ignores the parts).

    Returns:
      `Fitted`: when `text` still has more than `max_tokens` tokens, the caller
      cuts its ids by the model's rule (`protected_cut` is then True).
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation {truncation!r}: expected one of {TRUNCATIONS}")
    if isinstance(x, str):
        x = InputParts.whole(x)
    if isinstance(x, Truncatable):
        full, render, top = x.render(x.num_words), x.render, x.num_words
        shortened = lambda d: render(top - d)  # noqa: E731
    else:
        full, shortened, top = x.text, x.render, x.max_drop
    text = apply(full)
    if count_tokens(text) <= max_tokens:
        return Fitted(text, False, False)
    if truncation == "right" or top == 0:
        return Fitted(text, True, True)
    shortest = apply(shortened(top))
    if count_tokens(shortest) > max_tokens:
        return Fitted(shortest, True, True)
    lo, hi = 0, top  # shortened(lo) does not fit; shortened(hi) does.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(apply(shortened(mid))) <= max_tokens:
            hi = mid
        else:
            lo = mid
    return Fitted(apply(shortened(hi)), True, False)


# ---------------------------------------------------------------------------
# Buckets.
# ---------------------------------------------------------------------------


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n."""
    for b in buckets:
        if n <= b:
            return b
    raise ValueError(f"size {n} exceeds the largest bucket {buckets[-1]} (buckets {buckets})")


def power_of_two_buckets(lo: int, hi: int) -> tuple[int, ...]:
    """lo, 2lo, 4lo, ... below hi, then hi itself."""
    out, b = [], lo
    while b < hi:
        out.append(b)
        b *= 2
    return tuple(out) + (hi,)


FINE_ABOVE = 128


def length_buckets(lo: int, hi: int, fine_above: int = FINE_ABOVE) -> tuple[int, ...]:
    """Input-length buckets: `power_of_two_buckets(lo, hi)` plus, between two buckets
    larger than `fine_above`, the midpoint 1.5x the lower one (128, 192, 256, 384, ...).

    A row padded to a power of two can be almost half padding; above `fine_above`
    tokens the midpoints cap that at a third, where padding costs most (the encoder's
    time grows with the padded length, its attention with its square). Up to
    `fine_above` the set is the doubling one: short inputs cost little, and every
    bucket is one more program to compile.
    """
    out: list[int] = []
    for b in power_of_two_buckets(lo, hi):
        mid = out[-1] + out[-1] // 2 if out else 0
        if out and out[-1] >= fine_above and mid < b:
            out.append(mid)
        out.append(b)
    return tuple(out)


# Every option is a decoder row of the option-length bucket: the decoder's work (and
# its vocabulary projection's) grows with both, so from 8 on the midpoints count too.
OPTION_COUNT_BUCKETS = length_buckets(2, 64, fine_above=8)  # 2, 4, 8, 12, 16, 24, ...
OPTION_LEN_BUCKETS = length_buckets(4, 128, fine_above=8)  # 4, 8, 12, 16, 24, 32, ...
