"""The words the Lua scripts write and return are the enums of ``store/states.py``.

Each script's words are listed here by kind and checked both ways: every listed word appears
quoted in that script's ``.lua`` file and is a member of its enum; every word the script
returns first in a reply, writes as a ``state`` or ``consumed_as``, or compares a state with,
is listed; and every enum member is used by some script. A renamed state or verdict on either
side fails here rather than as a branch that never matches.
"""

from __future__ import annotations

import re
from enum import StrEnum
from importlib import resources

import pytest

from idenfy_stepup.store import (
    ConsumedAs,
    HookResult,
    HookVerdict,
    IpMatch,
    LimitAnswer,
    Redemption,
    State,
    VerdictKind,
    scripts,
)
from idenfy_stepup.store.states import FinishMode, OpenOp

# script → enum → the words of that enum the script uses.
WORDS: dict[str, dict[type[StrEnum], set[str]]] = {
    "webhook": {
        HookResult: {"unknown", "duplicate", "ignored", "mismatch", "pending", "applied"},
        State: {"PENDING", "APPROVED", "DENIED"},
        HookVerdict: {"SUCCESS", "DENIED", "PENDING"},
        IpMatch: {"unknown", "same", "differs"},
    },
    "finish": {
        VerdictKind: {
            "missing",
            "forbidden",
            "approved",
            "consumed",
            "denied",
            "expired",
            "canceled",
            "moved",
            "pending",
            "retry",
        },
        State: {"CONSUMED", "RETRYING", "PENDING", "APPROVED", "DENIED"},
        ConsumedAs: {"approved", "denied", "expired", "canceled", "retry_failed"},
        FinishMode: {"cancel", "finish"},
    },
    "retry_claim": {
        VerdictKind: {"missing", "forbidden", "moved", "consumed", "refused", "claimed"},
        State: {"RETRYING", "CONSUMED", "DENIED"},
    },
    "retry_link": {
        State: {"RETRYING", "CONSUMED"},
        ConsumedAs: {"retry_failed", "retried"},
    },
    "redeem_code": {Redemption: {"missing", "reused", "ok"}},
    "limits": {LimitAnswer: {"locked", "ok", "limited"}},
    "open_challenges": {OpenOp: {"add", "remove", "count"}},
}
# A mode the finish script does not name runs its default branch: give_up.
UNNAMED = {FinishMode: {"give_up"}}


def lua(name: str) -> str:
    source = resources.files("idenfy_stepup.store").joinpath("lua", f"{name}.lua").read_text()
    # Comments are documentation, not behaviour.
    return "\n".join(line.split("--", 1)[0] for line in source.splitlines())


def quoted(source: str) -> set[str]:
    return set(re.findall(r"'([A-Za-z_]+)'", source))


# What a script returns first in a reply, writes as a state or consumed_as, or compares a
# state with: each must be listed in WORDS.
RETURNED = [
    r"return \{'([A-Za-z_]+)'",  # {verdict, ...}
    r"\b(?:out|consume|tail)\('([A-Za-z_]+)'",  # the finish and webhook scripts' reply helpers
    r"'HSET', KEYS\[1\], 'state', '([A-Za-z_]+)'",
    r"'state', 'CONSUMED', 'consumed_as', '([A-Za-z_]+)'",
    r"(?:state|c\[1\]) [~=]= '([A-Za-z_]+)'",  # a state compared
    r"\bas == '([A-Za-z_]+)'",  # a consumed_as compared
    r"state, outcome = '([A-Za-z_]+)'",  # the webhook's new state
    r"verdict(?:, denial, retryable)? = '([A-Za-z_]+)'",  # the webhook's verdict
    r"ARGV\[(?:1|2|4)\] [~=]= '([A-Za-z_]+)'",  # the webhook's verdict, a mode, an op
    r"ip = '([A-Za-z_]+)'|'(same)' or '(differs)'",  # how the addresses compared
]


@pytest.mark.parametrize("name", sorted(WORDS))
def test_each_listed_word_is_in_its_script_and_its_enum(name: str) -> None:
    source = quoted(lua(name))
    for enum, words in WORDS[name].items():
        members = {member.value for member in enum}
        assert words <= members, (name, enum.__name__, words - members)
        assert words <= source, (name, enum.__name__, words - source)


@pytest.mark.parametrize("name", sorted(WORDS))
def test_every_returned_or_written_word_of_a_script_is_listed(name: str) -> None:
    source = lua(name)
    found: set[str] = set()
    for pattern in RETURNED:
        for match in re.findall(pattern, source):
            found.update(m for m in (match if isinstance(match, tuple) else (match,)) if m)
    listed = set().union(*WORDS[name].values())
    assert found <= listed, (name, found - listed)
    assert found, name  # the patterns do read this script


def test_every_enum_member_is_used_by_some_script() -> None:
    used: dict[type[StrEnum], set[str]] = {}
    for per_script in WORDS.values():
        for enum, words in per_script.items():
            used.setdefault(enum, set()).update(words)
    for enum, words in UNNAMED.items():
        used.setdefault(enum, set()).update(words)
    # The verdicts the finish and claim scripts return are the Verdict kinds; the ends a
    # record is consumed as are the ConsumedAs values; and so on, both ways.
    for enum, words in used.items():
        assert words == {member.value for member in enum}, enum.__name__


def test_every_script_file_is_loaded_and_named_by_its_sha() -> None:
    import hashlib

    names = {script.name for script in scripts.ALL}
    files = {
        entry.name.removesuffix(".lua")
        for entry in resources.files("idenfy_stepup.store").joinpath("lua").iterdir()
        if entry.name.endswith(".lua")
    }
    assert names == files
    for script in scripts.ALL:
        header = [line for line in script.source.splitlines() if line.startswith("--")]
        assert script.source.startswith("-- "), script.name  # its comment header first
        assert "KEYS" in "\n".join(header) and "ARGV" in "\n".join(header), script.name
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
