"""One verdict line per goal, the same shape in every benchmark:

    GOAL one-caller accepts ≥0.90x raw sqlite3: 0.63x — NOT MET

so a reader can grep them (``make bench | grep GOAL``) and the README's
speed table can quote them. Not a benchmark itself."""

from __future__ import annotations


def goal(
    name: str,
    measured: float,
    target: float,
    *,
    unit: str = "",
    of: str = "",
    digits: int = 2,
    at_most: bool = False,
) -> str:
    """``name``'s verdict: ``measured`` against ``target`` (a floor, or a
    ceiling when ``at_most``), both in ``unit``; ``of`` names the baseline a
    ratio is taken of."""
    met = measured <= target if at_most else measured >= target
    bound = f"{'≤' if at_most else '≥'}{target:,.{digits}f}{unit}"
    if of:
        bound += f" {of}"
    verdict = "met" if met else "NOT MET"
    return f"GOAL {name} {bound}: {measured:,.{digits}f}{unit} — {verdict}"
