"""How the command line says a count: "1 photo", "2 photos", never "(1 photos)"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, singular for exactly one.

    >>> counted(1, "photo"), counted(0, "photo"), counted(3, "sequence")
    ('1 photo', '0 photos', '3 sequences')
    >>> counted(1, "duplicate"), counted(2, "match", "matches")
    ('1 duplicate', '2 matches')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
