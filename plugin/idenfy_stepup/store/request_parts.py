"""A challenge's request inside its own hash: its JSON cut into fields of at most 63 bytes.

The request (``StepUpRequest.to_json``, a few hundred bytes) used to be a key of its own beside
the challenge's hash. A key costs Redis about 100 bytes before its value (its name, the key's
object, a dictionary entry and an expiry entry), and the JSON as one field of the hash would be
longer than ``hash-max-listpack-value`` (64 bytes in Redis' default configuration), which turns
the whole hash from a compact listpack into a hash table several times its size. Cut into parts
no longer than that limit, the request stays inside the listpack: one key per challenge. (63,
not 64: a listpack gives a string of up to 63 bytes a one-byte length.)

The fields: ``qn`` the number of parts, then ``q1`` … ``q<qn>``, which joined in order are the
JSON. The Lua scripts read it with ``lua/lib/request.lua``; a challenge written before this layout
keeps its request in ``stepup:{<token>}:request`` and is read from there (``legacy``).
"""

from __future__ import annotations

from collections.abc import Mapping

# Under Redis' default hash-max-listpack-value (64): a longer value turns a hash into a table.
PART_BYTES = 63
COUNT_FIELD = "qn"
PART_PREFIX = "q"
# More parts than any request has (256 KiB): a larger count is unreadable (lua/lib/request.lua).
MAX_PARTS = 4096


def part_fields(request_json: str) -> list[tuple[str, str | int]]:
    """The hash fields that hold ``request_json``: ``qn``, then its parts in order."""
    # to_json writes ASCII only (json.dumps escapes the rest), so a cut never splits a character.
    raw = request_json.encode("ascii")
    parts = [raw[at : at + PART_BYTES].decode("ascii") for at in range(0, len(raw), PART_BYTES)]
    return [(COUNT_FIELD, len(parts))] + [
        (f"{PART_PREFIX}{n}", part) for n, part in enumerate(parts, start=1)
    ]


def is_part(name: str) -> bool:
    """Whether the hash field ``name`` holds (a piece of) the request, not the challenge."""
    return name == COUNT_FIELD or (name[:1] == PART_PREFIX and name[1:].isdigit())


def joined(fields: Mapping[str, str]) -> str | None:
    """The request's JSON from a challenge's fields (HGETALL); None when the hash holds none
    (gone, or the layout before) or a part is missing (unreadable)."""
    count = fields.get(COUNT_FIELD, "")
    if not (count.isascii() and count.isdigit() and 1 <= int(count) <= MAX_PARTS):
        return None
    parts = [fields.get(f"{PART_PREFIX}{n}") for n in range(1, int(count) + 1)]
    if any(part is None for part in parts):
        return None
    return "".join(part for part in parts if part is not None)


def without_parts(fields: Mapping[str, str]) -> dict[str, str]:
    """The challenge's own fields (the request's parts left out)."""
    return {name: value for name, value in fields.items() if not is_part(name)}
