"""The operator's commands over Redis: ``keys``, ``subjects``, ``locks``, ``challenge``,
``limits``.

Each reads ``--config FILE`` for the Redis URL, key prefix and limits, answers in plain lines
(``--json`` where a script would read it) and never prints a secret: no key material, no
binding, code or access-token digest, no scanRef unless asked for (``subjects list
--show-scan-refs``), and a challenge token only as its six-character prefix, as the logs do.
Exit codes: 0 done; 1 refused or not found (nothing changed); 2 bad arguments or settings;
3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..boot.key_rotation import KeyCommandRefused, list_keys, retire_key, rotate_keys
from ..boot.startup import unreachable
from ..idenfy.client import valid_token
from ..settings import Settings, load_settings
from ..stepup.limits import address_identity
from ..store import Store, StoreUnavailable, open_backend, tag
from ..store.embedded import embedded_redis_async
from .subject_rows import ImportRows, mask, read_import, scan_ref_problem, subject_problem
from .views import TIMES, challenge_view, counter, counter_line

REFUSED = 1
BAD_INPUT = 2
# A challenge token shorter than this is shown by no prefix at all (vendor tokens are longer).
MIN_TOKEN_FOR_PREFIX = 16


class OperatorError(Exception):
    """A command that cannot be done as asked: one line, and its exit code."""

    def __init__(self, message: str, exit_code: int = REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def when(ts: float | int | None) -> str:
    if ts is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(float(ts), datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        for line in lines:
            print(line)


# -- running one command against Redis ---------------------------------------------------------
Action = Callable[[argparse.Namespace, Settings, Store], Awaitable[int]]


def run(args: argparse.Namespace, action: Action) -> int:
    settings = load_settings(args.config)
    return asyncio.run(_with_store(args, settings, action))


async def _with_store(args: argparse.Namespace, settings: Settings, action: Action) -> int:
    redis = settings.redis
    async with embedded_redis_async(redis.url, redis.data_dir) as url:
        store = Store(open_backend(redis, url), redis.key_prefix)
        try:
            return await action(args, settings, store)
        except StoreUnavailable:
            raise unreachable(redis.url) from None
        finally:
            await store.aclose()


# -- keys ---------------------------------------------------------------------------------------
async def keys_list(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    found = await list_keys(settings, store)
    lines = [
        f"{k.kid}  {k.alg}  {k.state}  created {when(k.created)}  retire-after "
        f"{when(k.retire_after)}"
        for k in found
    ]
    if settings.keys.signing:
        lines.append("(configured in the settings file: keys.signing; rotate there + SIGHUP)")
    elif not found:
        lines.append("no generated keys in Redis yet (the service creates them at its start)")
    emit(args, [k.as_json() for k in found], lines)
    return 0


async def keys_rotate(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    new = await rotate_keys(settings, store, int(time.time()))
    lines = [f"{k.kid}  {k.alg}  active (new)" for k in new]
    lines.append(
        "the replaced keys stay published; running instances switch within seconds "
        "(`keys list` shows when each may be retired)"
    )
    emit(args, [k.as_json() for k in new], lines)
    return 0


async def keys_retire(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    key = await retire_key(settings, store, args.kid, int(time.time()), force=args.force)
    print(f"{key.kid}: retired (no longer in the JWKS)")
    return 0


# -- subjects -----------------------------------------------------------------------------------
async def subjects_set(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    await store.set_subject(args.subject, args.scan_ref)
    print(f"{args.subject} -> {args.scan_ref}")
    return 0


async def subjects_get(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    found = await store.get_subject(args.subject)
    print(found if found is not None else f"{args.subject}: not set")
    return 0 if found is not None else REFUSED


async def subjects_delete(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    deleted = await store.delete_subject(args.subject)
    print(f"{args.subject}: {'deleted' if deleted else 'not set'}")
    return 0


async def subjects_list(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    found = await store.subjects()
    shown = [(s, ref if args.show_scan_refs else mask(ref)) for s, ref in found]
    lines = [f"{s}  {ref}" for s, ref in shown] or ["no subjects in Redis"]
    emit(args, [{"subject": s, "scan_ref": ref} for s, ref in shown], lines)
    return 0


def load_import(path: str) -> ImportRows:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise OperatorError(f"{path}: cannot read it ({exc.strerror})", BAD_INPUT) from None
    return read_import(raw)


async def subjects_import(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    rows = load_import(args.file)
    return await _import(args, rows, store)


async def _import(args: argparse.Namespace, rows: ImportRows, store: Store) -> int:
    if rows.problems:
        for problem in rows.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        print(f"{args.file}: nothing imported ({len(rows.problems)} problem(s))", file=sys.stderr)
        return REFUSED
    if args.dry_run:
        print(f"{args.file}: {len(rows.pairs)} subject(s) valid; nothing written (--dry-run)")
        return 0
    await store.set_subjects(rows.pairs)
    print(f"{args.file}: {len(rows.pairs)} subject(s) imported")
    return 0


# -- locks --------------------------------------------------------------------------------------
async def locks_list(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    found = await store.locks()
    now = time.time()
    data = [
        {"subject": subject, "seconds_left": left, "until": int(now + left)}
        for subject, left in found
    ]
    lines = [
        f"{subject if subject is not None else '(a lock from an earlier version)'}  locked for "
        f"{left} s (until {when(now + left)})"
        for subject, left in found
    ] or ["no subject is locked"]
    emit(args, data, lines)
    return 0


async def locks_clear(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    had, reset = await store.clear_lock(args.subject, reset_failures=args.reset_failures)
    print(f"{args.subject}: {'lock lifted' if had else 'was not locked'}")
    if args.reset_failures:
        print(f"{args.subject}: {'failed checks reset' if reset else 'had no failed checks'}")
    return 0


# -- challenge show -----------------------------------------------------------------------------
async def challenge_show(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    token = args.token
    fields, raw = await store.challenge_record(token)
    # Six characters, as the logs show; nothing of a token too short for that to be a part.
    prefix = token[:6] if len(token) >= MIN_TOKEN_FOR_PREFIX else ""
    if not fields and raw is None:
        raise OperatorError(f"challenge {prefix}…: not in Redis (ended and expired, or never made)")
    view = challenge_view(fields, raw)
    lines = [f"challenge {prefix}…"]
    for name, value in view.items():
        shown = when(value) if name in TIMES and isinstance(value, int) else value
        lines.append(f"  {name}: {shown}")
    emit(args, {"token_prefix": prefix, **view}, lines)
    return 0


# -- limits show --------------------------------------------------------------------------------
async def limits_show(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    limits = settings.challenge.limits
    now_ms = time.time() * 1000
    data: dict[str, Any]
    if args.subject is not None:
        fields = await store.counters(tag(args.subject))
        left = await store.lock_left(args.subject)
        counters = [counter(fields, "failures_per_subject", limits.failures_per_subject, now_ms)]
        data = {"subject": args.subject, "counters": counters, "locked_seconds": left}
        head = f"subject {args.subject}"
        extra = [f"  lock: {'locked for ' + str(left) + ' s' if left else 'not locked'}"]
    elif args.address is not None:
        identity = address_identity(args.address)
        fields = await store.counters(tag(identity))
        names = ("failures_per_ip", "token_failures_per_ip")
        counters = [counter(fields, n, getattr(limits, n), now_ms) for n in names]
        opened = await store.open_challenges(tag(identity))
        cap = limits.open_challenges_per_ip
        data = {"address": identity, "counters": counters, "open_challenges": opened}
        data["open_max"] = cap
        head = f"address {identity}" + (" (its /64)" if "/" in identity else "")
        extra = [f"  open_challenges_per_ip: {opened} {f'of {cap}' if cap else '(limit off)'}"]
    else:
        fields = await store.counters(tag(f"client:{args.client}"))
        name = "token_failures_per_client"
        counters = [counter(fields, name, limits.token_failures_per_client, now_ms)]
        data = {"client_id": args.client, "counters": counters}
        head, extra = f"client {args.client}", []
    emit(args, data, [head, *[counter_line(c) for c in counters], *extra])
    return 0


# -- the parser ---------------------------------------------------------------------------------
def _config(p: argparse.ArgumentParser, json_flag: bool = False) -> None:
    p.add_argument("--config", required=True, help="YAML settings file")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON")


def add_commands(sub: Any) -> None:
    """``keys``, ``subjects``, ``locks``, ``challenge``, ``limits`` on the top-level parser."""
    k = sub.add_parser("keys", help="the generated signing keys: list, rotate, retire")
    ks = k.add_subparsers(dest="action", required=True)
    _config(ks.add_parser("list", help="every published key (never its material)"), True)
    _config(ks.add_parser("rotate", help="a new active key per algorithm"), True)
    r = ks.add_parser("retire", help="remove a replaced key from the JWKS")
    # A kid generated by an older version may start with "-": give it after "--".
    r.add_argument("kid", help='the key id (one starting with "-" goes after "--")')
    r.add_argument("--force", action="store_true", help="even inside its publish window")
    _config(r)

    s = sub.add_parser("subjects", help="map subjects to iDenfy scanRefs in Redis")
    ss = s.add_subparsers(dest="action", required=True)
    p = ss.add_parser("set", help="map SUBJECT to SCANREF")
    p.add_argument("subject")
    p.add_argument("scan_ref")
    _config(p)
    for name in ("get", "delete"):
        p = ss.add_parser(name)
        p.add_argument("subject")
        _config(p)
    p = ss.add_parser("list", help="every mapped subject (scanRefs masked)")
    p.add_argument("--show-scan-refs", action="store_true", help="print scanRefs in full")
    _config(p, True)
    p = ss.add_parser("import", help="subject,scan_ref rows from a CSV file, all or nothing")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="check the file, write nothing")
    _config(p)

    locks = sub.add_parser("locks", help="subjects locked out after a spoof")
    ls = locks.add_subparsers(dest="action", required=True)
    _config(ls.add_parser("list"), True)
    p = ls.add_parser("clear", help="lift SUBJECT's lock-out")
    p.add_argument("subject")
    p.add_argument("--reset-failures", action="store_true", help="also forget its failed checks")
    _config(p)

    c = sub.add_parser("challenge", help="inspect one challenge")
    cs = c.add_subparsers(dest="action", required=True)
    p = cs.add_parser("show", help="state, client, subject, times, outcome (no secrets)")
    p.add_argument("token", metavar="TOKEN")
    _config(p, True)

    lim = sub.add_parser("limits", help="abuse-limit counters")
    lims = lim.add_subparsers(dest="action", required=True)
    p = lims.add_parser("show", help="the counters of a subject, an address or a client")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--subject")
    who.add_argument("--address", help="an IP address (IPv6 counts as its /64)")
    who.add_argument("--client", help="a client_id (token_failures_per_client)")
    _config(p, True)


ACTIONS: dict[tuple[str, str], Action] = {
    ("keys", "list"): keys_list,
    ("keys", "rotate"): keys_rotate,
    ("keys", "retire"): keys_retire,
    ("subjects", "set"): subjects_set,
    ("subjects", "get"): subjects_get,
    ("subjects", "delete"): subjects_delete,
    ("subjects", "list"): subjects_list,
    ("subjects", "import"): subjects_import,
    ("locks", "list"): locks_list,
    ("locks", "clear"): locks_clear,
    ("challenge", "show"): challenge_show,
    ("limits", "show"): limits_show,
}


def arguments_problem(args: argparse.Namespace) -> str | None:
    """What argparse cannot say about the arguments (exit code 2 before Redis is asked)."""
    if args.command == "subjects" and args.action == "set":
        return subject_problem(args.subject) or scan_ref_problem(args.scan_ref)
    if args.command == "challenge" and not valid_token(args.token):
        # A token is a bearer secret: never echoed, even when malformed.
        return "TOKEN is not a challenge token (1 to 64 letters, digits or . _ ~ -)"
    if args.command == "locks" and args.action == "clear":
        return subject_problem(args.subject)
    if args.command == "limits" and args.subject is not None:
        return subject_problem(args.subject)
    return None


def main(args: argparse.Namespace) -> int:
    """Run one operator command; its one-line errors and exit codes."""
    try:
        return run(args, ACTIONS[(args.command, args.action)])
    except KeyCommandRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
