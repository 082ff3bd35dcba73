"""A rendered input in parts: the text that may be shortened and the text that must survive.

Tasks hand the model an input made of protected text (instruction, question,
options, answer cue) and shortenable segments (BoolQ's passage, a relation
extraction sentence, the world tasks' passage). `InputParts` holds that split;
the engine and training shorten only the shortenable segments until the input
fits the model (`jaxrobust.inference.batching.fit_input`).

A shortenable segment is cut at word boundaries (words are the segment's text
split on single spaces, so joining them gives the text back). Each segment may
name a window of words that must survive (a relation extraction sentence's
two entity mentions); a segment is shortened to a window around it, growing
both ways, so the mentions keep their context. A segment without a window
keeps its first words (a passage loses its end).

`render(drop)` drops `drop` words from every shortenable segment (never its
window); `render(0)` is the full input, byte for byte the text the template
rendered. Plain data: `as_dict` / `from_dict` carry it through JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class InputParts:
    """An input as alternating protected and shortenable segments.

    Attributes:
      segments: protected, shortenable, protected, ..., protected (an odd
        count); their concatenation is the full input.
      keep: per shortenable segment, the word window ``(lo, hi)`` (word indices,
        ``hi`` exclusive) that must survive; ``(0, 0)``: none (keep the start).
    """

    segments: tuple[str, ...]
    keep: tuple[tuple[int, int], ...]

    def __post_init__(self):
        n = len(self.segments)
        if n % 2 != 1 or len(self.keep) != n // 2:
            raise ValueError(
                f"InputParts needs an odd number of segments (protected first and last) and "
                f"one keep window per shortenable segment; found {n} segments and "
                f"{len(self.keep)} windows"
            )
        for (lo, hi), text in zip(self.keep, self.shortenable, strict=True):
            words = len(text.split(" "))
            if not 0 <= lo <= hi <= words:
                raise ValueError(
                    f"keep window ({lo}, {hi}) does not lie within the segment's {words} words: "
                    f"{text[:80]!r}"
                )

    @property
    def text(self) -> str:
        """The full input."""
        return "".join(self.segments)

    @property
    def shortenable(self) -> tuple[str, ...]:
        return self.segments[1::2]

    @property
    def protected(self) -> tuple[str, ...]:
        return self.segments[0::2]

    @property
    def max_drop(self) -> int:
        """The most words any one segment can lose (0: nothing to shorten)."""
        return max(
            (
                len(s.split(" ")) - (hi - lo)
                for s, (lo, hi) in zip(self.shortenable, self.keep, strict=True)
            ),
            default=0,
        )

    def render(self, drop: int) -> str:
        """The input with `drop` words dropped from each shortenable segment."""
        out = list(self.segments)
        for i, (text, window) in enumerate(zip(self.shortenable, self.keep, strict=True)):
            out[2 * i + 1] = shorten(text, window, drop)
        return "".join(out)

    def as_dict(self) -> dict:
        """JSON-ready form (`from_dict` reads it back)."""
        return {"segments": list(self.segments), "keep": [list(w) for w in self.keep]}

    @classmethod
    def from_dict(cls, d: dict) -> InputParts:
        return cls(tuple(d["segments"]), tuple((int(a), int(b)) for a, b in d["keep"]))

    @classmethod
    def whole(cls, text: str) -> InputParts:
        """An input with nothing to shorten."""
        return cls((text,), ())


def window(n: int, keep: tuple[int, int], size: int) -> tuple[int, int]:
    """The word range ``[a, b)`` of `size` words (at least the window's) around `keep`.

    Grows evenly on both sides (the left gets the smaller half), then takes what
    one side cannot give from the other. A `keep` of ``(0, 0)`` gives the first
    `size` words.
    """
    lo, hi = keep
    size = min(n, max(size, hi - lo))
    extra = size - (hi - lo)
    left = min(lo, extra // 2)
    right = min(n - hi, extra - left)
    left = min(lo, extra - right)
    return lo - left, hi + right


def shorten(text: str, keep: tuple[int, int], drop: int) -> str:
    """`text` less `drop` words, cut to a window around `keep` (`window`)."""
    if drop <= 0:
        return text
    words = text.split(" ")
    a, b = window(len(words), keep, len(words) - drop)
    return " ".join(words[a:b])


def tagged_window(tagged: str, tags: Sequence[str] = ("<e1>", "</e1>", "<e2>", "</e2>")) -> tuple:
    """The word window ``(lo, hi)`` of a sentence holding both entity mentions.

    Words are `tagged` split on single spaces; the window runs from the first
    word holding a tag to the last. ``(0, n)`` (keep it all) when a tag is
    missing.
    """
    words = tagged.split(" ")
    marked = [i for i, w in enumerate(words) if any(t in w for t in tags)]
    found = all(any(t in w for w in words) for t in tags)
    if not marked or not found:
        return (0, len(words))
    return (marked[0], marked[-1] + 1)
