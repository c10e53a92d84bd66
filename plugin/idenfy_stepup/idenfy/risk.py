"""What the vendor flags on a face check (the webhook's ``riskTags``), and what we do about it.

The policy is data (``idenfy.risk_tags``): each tag maps to ``deny`` or ``allow``; ``default``
covers every tag the policy does not name, including tags the vendor adds later. A denied tag
turns a SUCCESS into a denial with its own outcome row; allowed tags reach the relying party in
the id_token's ``stepup_risk`` claim, so it can decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

RiskAction = Literal["deny", "allow"]

DEFAULT = "default"
# The built-in policy; the operator's entries are laid over it (a policy that only says
# `default: allow` still denies UNTRUSTED_ENVIRONMENT).
DEFAULT_POLICY: Mapping[str, RiskAction] = {"UNTRUSTED_ENVIRONMENT": "deny", DEFAULT: "deny"}
# Each documented tag's denial row; any other tag is denied as RISK_FLAGGED.
TAG_OUTCOMES: Mapping[str, str] = {"UNTRUSTED_ENVIRONMENT": "RISK_UNTRUSTED_ENVIRONMENT"}
UNKNOWN_TAG_OUTCOME = "RISK_FLAGGED"


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The tags a webhook carried, split by the policy."""

    denied: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        """The denial's outcome row ('' when nothing is denied): a documented tag's own row
        first, so the RP sees the most specific reason."""
        for tag in self.denied:
            if tag in TAG_OUTCOMES:
                return TAG_OUTCOMES[tag]
        return UNKNOWN_TAG_OUTCOME if self.denied else ""

    @property
    def action(self) -> str:
        if self.denied:
            return "deny"
        return "allow" if self.allowed else "none"


def effective_policy(configured: Mapping[str, RiskAction]) -> dict[str, RiskAction]:
    return {**DEFAULT_POLICY, **configured}


def decide(tags: Iterable[str], policy: Mapping[str, RiskAction]) -> RiskDecision:
    denied: list[str] = []
    allowed: list[str] = []
    fallback = policy.get(DEFAULT, "deny")
    for tag in tags:
        (allowed if policy.get(tag, fallback) == "allow" else denied).append(tag)
    return RiskDecision(tuple(denied), tuple(allowed))
