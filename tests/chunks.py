import itertools


def chunked(text: str, cuts: list[int]) -> list[str]:
    """`text` cut at the given positions (taken modulo its length)."""
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]
