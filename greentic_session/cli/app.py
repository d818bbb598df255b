"""`greentic-session`: argument parsing, the connection's life, printing and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any, NoReturn, TextIO
from urllib.parse import parse_qsl, urlsplit

from ..backends.redis.errors import scrub
from ..backends.redis.options import DEFAULT_NAMESPACE
from ..backends.redis.store import RedisSessionStore
from ..errors import InvalidInputError, SessionError
from ..limits import DEFAULT_MAX_BLOB_BYTES
from . import inspection, maintenance, transfer
from .context import Context, ExitCode, Report, session_error_code
from .copy import copy_to_cluster
from .keyring import KEYS_VARIABLE, Sealing, load_sealing
from .layout import Layout
from .reseal import reseal
from .walk import Progress, Stop, connect

__all__ = ["main"]

URL_VARIABLES = ("GREENTIC_SESSION_REDIS_URL", "REDIS_URL")
CLUSTER_VARIABLE = "GREENTIC_SESSION_CLUSTER_URLS"

DESCRIPTION = """\
Look at and look after the sessions of a greentic-session Redis: read one, find a user's,
count, check and repair, purge, erase a user, export and import, copy into a Redis Cluster,
reseal under a new key. Every command walks keys with SCAN in bounded batches (never KEYS or
FLUSHALL) and touches only keys under --namespace.

Sealed stores (encryption and compression at rest): give the key ring in a file
(--keys-file PATH) or in $GREENTIC_SESSION_KEYS, never on the command line, as JSON:
  {"active": "k2", "keys": {"k1": "<base64 of 32 bytes>", "k2": "<base64 of 32 bytes>"}}
Blobs are opened with it (any key of the ring); import, reseal and copy-to-cluster seal what
they write under "active", compressed if --compression zstd.
"""

EPILOG = """\
exit codes: 0 ok; 1 problems found (check found problems, records skipped or refused);
2 usage or invalid input, a bad key ring (nothing written); 3 cannot connect or
authenticate, or Redis failed; 4 not found (get, find); 130 interrupted by Ctrl-C (the
summary so far is printed).

The URL's password is never printed; prefer GREENTIC_SESSION_REDIS_URL over --url (and
GREENTIC_SESSION_CLUSTER_URLS over copy-to-cluster's --to), which other users of the machine
can see in the process list. See docs/cli.md.
"""

EXPORT_HELP = """\
Write every session as JSON Lines to stdout, one record per session:
  {"key": KEY, "pttl": MS|null, "data": {BLOB, byte for byte},
   "meta": {"value": SUFFIX, "pttl": MS|null}|null,
   "refs": [{"key": "user:ENV:TENANT:TEAM|-:USER", "pttl": MS|null}, ...]}
pttl is the remaining expiry in milliseconds (null: none); refs are the user pointers and wait
keys (waits:scope:..., waits:user:...) that name the session, relative to the namespace.
Corrupt blobs and wrong-type keys are reported on stderr and skipped (exit code 1).
"""

IMPORT_HELP = """\
Read export records (JSON Lines) from stdin and write them under --namespace: each blob, its
meta key and the keys naming it, with the remaining expiries of the file. Every line is
validated before anything is written. Existing keys are overwritten, so importing the same
file twice leaves the same state, and a failed import can simply be run again.
"""


COPY_HELP = """\
Copy every session of --namespace on the --url Redis into a Redis Cluster, in the cluster key
layout (hash tags): each blob byte for byte with its remaining expiry, its meta key, and its
user pointer if that names it. A plain session keeps its key; a wait gets the key
session_key_for builds (its user's hash tag, then the key) with its wait keys rebuilt, and the
new keys are listed (rekeyed in --json). Nothing in the cluster is overwritten: a session
already there with the same bytes counts as copied before, one with other data is a conflict
(exit 1), a user pointer already naming another session is left alone. A dry run (checking
the cluster, writing nothing) unless --yes. Running it again is safe. See docs/cli.md.
"""

RESEAL_HELP = """\
Rewrite every session of --namespace under the active key of the key ring (--keys-file or
$GREENTIC_SESSION_KEYS) and the --compression setting: a blob already so is skipped, the others
are opened, sealed anew and written only if unchanged since read (a concurrent update is read
again and retried, never lost). Blobs that do not open or decode are refused and left as they
are. A dry run (counting, writing nothing) unless --yes. Running it again skips what is done.
Costs one SCAN walk, one read and one script per session. Prints counts only. See docs/cli.md.
"""

ERASE_HELP = """\
Erase one user (a data-protection request): every session of --env/--tenant/--team whose data
names --user as its user, whether or not a pointer still names it, with its expiry meta key,
wait hint and the pointers and waits naming it, then the user's own pointer and wait keys. The
same user id in another env, tenant or team stays. It walks the whole namespace (SCAN). A dry
run (counting, writing nothing) unless --yes. Only counts are printed, never the user id.
"""


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--keys SECRET` must not pass for `--keys-file SECRET`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> Parser:
    parser = Parser(
        prog="greentic-session",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        help="Redis URL (default: $GREENTIC_SESSION_REDIS_URL, then $REDIS_URL)",
    )
    parser.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="key namespace (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per Redis call (default: 10)"
    )
    parser.add_argument("--tls-ca-file", help="CA bundle for rediss:// URLs")
    parser.add_argument(
        "--keys-file",
        metavar="PATH",
        help=f"the key ring, a JSON file (default: ${KEYS_VARIABLE}, the JSON itself); "
        "keys are never taken from the command line",
    )
    parser.add_argument(
        "--compression",
        choices=("zstd", "none"),
        default="none",
        help="how import, reseal and copy-to-cluster compress what they seal (default: none)",
    )
    parser.add_argument(
        "--max-blob-bytes",
        type=int,
        default=DEFAULT_MAX_BLOB_BYTES,
        help="the most bytes a compressed blob may open to: the stores' max_blob_bytes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--accept-plaintext",
        action="store_true",
        help="with a key ring: also read unencrypted blobs (to migrate a plaintext store)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    get = sub.add_parser("get", help="show one session by its key")
    get.add_argument("key")

    find = sub.add_parser("find", help="show the session a user's pointer names")
    _slot_options(find, required=True)

    sub.add_parser(
        "stats", help="sessions and pointers per env/tenant/team, blob sizes, expiries, orphans"
    )

    check = sub.add_parser("check", help="find orphan pointers, corrupt blobs and wrong-type keys")
    check.add_argument(
        "--repair",
        action="store_true",
        help="delete what check found, each only if it is unchanged since it was read",
    )

    purge = sub.add_parser(
        "purge", help="delete the sessions, pointers and waits of an env/tenant/team/user"
    )
    _slot_options(purge, required=False)
    purge.add_argument("--yes", action="store_true", help="delete (without it: a dry run)")

    erase = sub.add_parser(
        "erase-user",
        help="erase every session, pointer and wait of one user in an env/tenant/team",
        description=ERASE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _slot_options(erase, required=True)
    erase.add_argument("--yes", action="store_true", help="erase (without it: a dry run)")

    resealing = sub.add_parser(
        "reseal",
        help="rewrite every session under the active key and compression setting",
        description=RESEAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resealing.add_argument("--yes", action="store_true", help="write (without it: a dry run)")

    sub.add_parser(
        "export",
        help="write every session as JSON Lines to stdout",
        description=EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_parser(
        "import",
        help="read JSON Lines from stdin and write them",
        description=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy = sub.add_parser(
        "copy-to-cluster",
        help="copy the sessions into a Redis Cluster (the cluster key layout)",
        description=COPY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument(
        "--to",
        metavar="URLS",
        help=f"comma-separated redis:// or rediss:// node URLs (default: ${CLUSTER_VARIABLE})",
    )
    copy.add_argument(
        "--to-namespace", metavar="NS", help="the cluster's namespace (default: --namespace)"
    )
    copy.add_argument("--to-tls-ca-file", metavar="PATH", help="CA bundle for rediss:// nodes")
    copy.add_argument("--yes", action="store_true", help="write (without it: a dry run)")
    return parser


def _slot_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--env", required=required)
    parser.add_argument("--tenant", required=required)
    parser.add_argument(
        "--team",
        help="team ('-' or omitted: none)" if required else "team ('-': sessions without a team)",
    )
    parser.add_argument("--user", required=required)


async def _run(
    args: argparse.Namespace,
    url: str,
    inp: IO[bytes],
    out: TextIO,
    err: TextIO,
    *,
    sealing: Sealing,
) -> Report:
    layout = Layout(args.namespace)
    conn = connect(url, timeout=args.timeout, tls_ca_file=args.tls_ca_file)
    stop = Stop()
    stop.install()
    ctx = Context(conn, layout, stop, Progress(err), sealing)
    try:
        await conn.call(conn.client.ping)
        return await _command(ctx, args, inp, out, err)
    finally:
        stop.uninstall()
        await conn.aclose()


async def _command(
    ctx: Context, args: argparse.Namespace, inp: IO[bytes], out: TextIO, err: TextIO
) -> Report:
    """Run the command `args` names on the connected `ctx`."""
    match args.command:
        case "get":
            return await inspection.get(ctx, args.key)
        case "find":
            return await inspection.find(ctx, args.env, args.tenant, args.team, args.user)
        case "stats":
            return await inspection.stats(ctx)
        case "check" | "purge" | "erase-user" | "reseal":
            return await _maintain(ctx, args)
        case "export":
            sink = getattr(out, "buffer", None)
            if sink is None:
                raise TypeError("export needs a binary stdout")
            out.flush()
            return await transfer.export(ctx, sink, err)
        case "import":
            return await transfer.import_(ctx, inp)
        case "copy-to-cluster":
            target = _cluster_store(args)
            try:
                return await copy_to_cluster(ctx, target, yes=args.yes)
            finally:
                await target.aclose()
        case _:  # pragma: no cover - argparse allows no other
            raise AssertionError(args.command)


async def _maintain(ctx: Context, args: argparse.Namespace) -> Report:
    """The commands that write to the namespace they walk."""
    match args.command:
        case "check":
            return await maintenance.check(ctx, repair=args.repair)
        case "purge":
            chosen = maintenance.selector(args.env, args.tenant, args.team, args.user)
            return await maintenance.purge(ctx, chosen, yes=args.yes)
        case "erase-user":
            return await maintenance.erase_user(
                ctx, args.env, args.tenant, args.team, args.user, yes=args.yes
            )
        case _:
            return await reseal(ctx, yes=args.yes)


def _cluster_urls(args: argparse.Namespace) -> list[str]:
    urls: str = args.to or os.environ.get(CLUSTER_VARIABLE) or ""
    return [url.strip() for url in urls.split(",") if url.strip()]


def _cluster_store(args: argparse.Namespace) -> RedisSessionStore:
    """The cluster store copy-to-cluster writes through (nothing connects yet)."""
    return RedisSessionStore.from_cluster(
        _cluster_urls(args),
        namespace=args.to_namespace or args.namespace,
        connect_timeout=args.timeout,
        socket_timeout=args.timeout,
        tls_ca_file=args.to_tls_ca_file,
    )


def _sealing(args: argparse.Namespace) -> Sealing:
    """This run's key ring and compression; `InvalidInputError` (naming no key) when bad."""
    return load_sealing(
        args.namespace,
        keys_file=args.keys_file,
        compression=args.compression,
        accept_plaintext=args.accept_plaintext,
        limit=args.max_blob_bytes,
    )


def _ready(args: argparse.Namespace, *, piped: bool) -> tuple[str, Sealing] | str:
    """The URL and the sealing settings of the run, or the usage error that stops it."""
    if args.command == "import" and not piped and sys.stdin.isatty():
        return "import reads JSON Lines from stdin: redirect a file or pipe"
    url = args.url or next((os.environ[v] for v in URL_VARIABLES if os.environ.get(v)), None)
    if not url:
        return "no Redis URL: set GREENTIC_SESSION_REDIS_URL or pass --url"
    if args.command == "copy-to-cluster" and not _cluster_urls(args):
        return f"no cluster URLs: set ${CLUSTER_VARIABLE} or pass --to"
    sealing: Sealing | None = None
    problem: str | None = None
    try:
        sealing = _sealing(args)
    except InvalidInputError as exc:  # names no key: keyring.py raises outside every except
        problem = exc.message
    if sealing is None:
        return problem or "bad key ring"
    return url, sealing


def _print(report: Report, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    # export's stdout is the data: its summary goes to stderr.
    target = err if args.command == "export" else out
    if args.json:
        target.write(json.dumps(report.result, indent=2, default=str) + "\n")
    elif report.lines:
        target.write("\n".join(report.lines) + "\n")
    if report.message:
        err.write(f"greentic-session: {report.message}\n")


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code (see EPILOG)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    inp: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        given = list(sys.argv[1:] if argv is None else argv)
        err.write(parser.format_usage() + f"{_unechoed(str(exc), given)}\n")
        return ExitCode.USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    ready = _ready(args, piped=stdin is not None)
    if isinstance(ready, str):
        err.write(f"greentic-session: {ready}\n")
        return ExitCode.USAGE
    url, sealing = ready
    try:
        report = asyncio.run(_run(args, url, inp, out, err, sealing=sealing))
    except SessionError as exc:
        err.write(f"greentic-session: {exc.message}\n")
        return session_error_code(exc)
    except KeyboardInterrupt:
        err.write("greentic-session: interrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`export | head`): not Redis's fault
        err.write("greentic-session: output closed before the end\n")
        return ExitCode.PROBLEMS
    except OSError as exc:  # e.g. an unreadable --tls-ca-file
        err.write(f"greentic-session: {exc.strerror or type(exc).__name__}\n")
        return ExitCode.UNAVAILABLE
    except Exception as exc:  # a bug: one line, no traceback, the passwords scrubbed
        text = f"unexpected {type(exc).__name__}: {exc}"
        cluster = _cluster_urls(args) if args.command == "copy-to-cluster" else []
        for secret_of in [url, *cluster]:
            text = scrub(text, _password(secret_of))
        if args.command == "erase-user":  # user ids never appear in output
            text = scrub(text, args.user)
        err.write(f"greentic-session: {text}\n")
        return ExitCode.PROBLEMS
    _print(report, args, out, err)
    return report.code


def _unechoed(message: str, argv: list[str]) -> str:
    """`message` without the long values of `argv`: argparse echoes what it refuses, and a key
    pasted on the command line (`--keys SECRET`: no such option) must not reach stderr and the
    logs that keep it. 16 characters is shorter than any encoding of a 32-byte key."""
    for token in argv:
        value = token.partition("=")[2] if token.startswith("-") else token
        if len(value) >= 16:
            message = message.replace(value, "...")
    return message


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password or dict(parse_qsl(urlsplit(url).query)).get("password")
    except ValueError:
        return None
