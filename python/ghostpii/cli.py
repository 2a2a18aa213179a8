"""The ``ghostpii`` command: run a keyhost and manage identities, tokens, grants and the audit log.

Every command prints a table (or ``key: value`` lines) by default and JSON with ``--json``.

Examples::

    ghostpii keyhost serve --data ./kh --listen 127.0.0.1:8750
    ghostpii keyhost serve --data ./keys --database postgresql://kh@db:5432/kh   # a replica
    export GHOSTPII_URL=http://127.0.0.1:8750 GHOSTPII_TOKEN=$(cat ./kh/admin.token)
    ghostpii dataset create patrons
    ghostpii grant add analyst patrons --aggregate income --min-rows 10
    ghostpii identity create worker                 # as owner clinic: clinic/worker, managed by clinic
    ghostpii token create worker                    # the owner issues its analysts' tokens
    ghostpii join-domain add-member persons insurer # consent: insurer's columns may join clinic's domain
    ghostpii audit list --dataset patrons --limit 20
    ghostpii audit checkpoint > cp.json
    ghostpii audit verify --data ./kh --checkpoint cp.json --public-key KEY
    ghostpii token rotate --url $GHOSTPII_URL --token-file ./kh/admin.token   # rewrites the file
    ghostpii budget show patrons
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _session(args: argparse.Namespace) -> Any:
    from ghostpii.client import connect

    url = args.url or os.environ.get("GHOSTPII_URL")
    token = args.token or os.environ.get("GHOSTPII_TOKEN")
    if token is None and args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not url or not token:
        sys.exit("error: give --url and --token (or GHOSTPII_URL / GHOSTPII_TOKEN / --token-file)")
    return connect(url, token)


def _cell(v: Any) -> str:
    return "" if v is None else (json.dumps(v) if isinstance(v, dict | list) else str(v))


def _print(obj: Any, as_json: bool) -> None:
    """The CLI's one output convention: JSON with ``--json``; else a table for lists of records
    and ``key: value`` lines for one record."""
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
    elif isinstance(obj, list):
        if not obj:
            print("(none)")
            return
        cols = list(dict.fromkeys(k for row in obj for k in row))
        cells = [[_cell(row.get(c)) for c in cols] for row in obj]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
        for r in cells:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    elif isinstance(obj, dict):
        width = max((len(k) for k in obj), default=0)
        for k, v in obj.items():
            print(f"{k.ljust(width)}  {_cell(v)}")
    else:
        print(obj)


def _serve(args: argparse.Namespace) -> int:
    from ghostpii import _internal

    _internal.serve_keyhost(
        Path(args.data),
        args.listen,
        args.default_dp_budget,
        args.default_dp_delta,
        args.new_noise_key,
        database=args.database or os.environ.get("GHOSTPII_DATABASE") or None,
    )
    return 0


def _write_token_file(path: Path, token: str) -> None:
    """Replace ``path`` with ``token`` atomically (a new 0600 file renamed over the old one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rotate(args: argparse.Namespace) -> int:
    s = _session(args)
    token = s.rotate_token(ttl_seconds=args.ttl)
    if not args.token_file:
        print(token)
        return 0
    try:
        _write_token_file(Path(args.token_file), token)
    except OSError as e:
        # The old token is already revoked: do not lose the new one.
        print(token)
        sys.exit(f"error: rotated, but cannot rewrite {args.token_file} ({e}); the new token is printed above")
    print(f"rotated; the new token is in {args.token_file}")
    return 0


def _identity(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.action == "create":
        _print(s.create_identity(args.name, args.role), args.json)
    elif args.action == "delegate":
        r = s.delegate_tokens(args.identity, max_ttl_seconds=args.max_ttl, ttl_seconds=args.ttl, revoke=args.end)
        _print(r, args.json)
    elif args.action == "share":
        s.share_identity(args.identity, args.owner, shared=not args.unshare)
        _print({"identity": args.identity, "owner": args.owner, "shared": not args.unshare}, args.json)
    else:
        _print(s.identities(), args.json)
    return 0


def _join_domain(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.action == "create":
        _print({"join_domain": s.create_join_domain(args.name)}, args.json)
    elif args.action == "add-member":
        _print(s.add_join_domain_member(args.name, args.owner), args.json)
    elif args.action == "remove-member":
        s.remove_join_domain_member(args.name, args.member)
        _print({"join_domain": args.name, "removed": args.member}, args.json)
    elif args.action == "leave":
        s.leave_join_domain(args.name, owner=args.owner)
        _print({"join_domain": args.name, "left": True}, args.json)
    elif args.action == "rotate":
        _print(s.rotate_join_domain(args.name), args.json)
    else:
        _print(s.join_domains(), args.json)
    return 0


def _dataset(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.action == "create":
        ds = s.create_dataset(args.name)
        _print({"dataset": ds.name, "id": ds.id, "owner": ds.owner}, args.json)
    else:
        _print([{"dataset": d.name, "id": d.id, "owner": d.owner} for d in s.datasets()], args.json)
    return 0


def _token(args: argparse.Namespace) -> int:
    if args.action == "rotate":
        return _rotate(args)
    s = _session(args)
    if args.action == "create":
        token = s.create_token(args.identity, ttl_seconds=args.ttl)
        print(json.dumps({"identity": args.identity, "token": token}) if args.json else token)
    elif args.action == "revoke":
        s.revoke_token(args.token_id)
        _print({"revoked_token": args.token_id}, args.json)
    else:
        _print(s.tokens(args.identity), args.json)
    return 0


def _constant(text: str) -> Any:
    """A comparison constant typed on the command line: an integer, a number or an ISO date."""
    import datetime as dt

    for parse in (int, float, dt.date.fromisoformat, dt.datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    sys.exit(f"error: {text!r} is not a number or an ISO date (YYYY-MM-DD)")


def _allows(args: argparse.Namespace) -> list[Any]:
    from ghostpii import allow

    allows = [allow.decrypt(c) for c in args.decrypt or []]
    allows += [
        allow.aggregate(c, min_rows=args.min_rows, epsilon=args.epsilon, delta=args.delta, budget=args.budget)
        for c in args.aggregate or []
    ]
    constants = [_constant(c) for c in args.constants.split(",")] if args.constants else None
    rng = [_constant(c) for c in args.range.split(",")] if args.range else None
    if rng is not None and len(rng) != 2:
        sys.exit(f"error: --range takes LOW,HIGH, got {args.range!r}")
    if (constants or rng or args.max_constants) and not args.compare:
        sys.exit("error: --constants, --range and --max-constants apply to --compare COLUMN")
    allows += [
        allow.compare(c, constants=constants, range=rng, max_constants=args.max_constants) for c in args.compare or []
    ]
    if args.domain_key_holder and not args.group:
        sys.exit("error: --domain-key-holder applies to --group COLUMN")
    allows += [allow.group(c, domain_key_holder=args.domain_key_holder) for c in args.group or []]
    return allows


def _grant(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.action == "list":
        _print(s.grants(args.dataset, args.identity), args.json)
        return 0
    allows = _allows(args)
    if args.action == "add":
        if not allows:
            sys.exit(
                "error: grant add needs at least one of --aggregate, --compare or --decrypt COLUMN (or --group COLUMN)"
            )
        # an owner's "worker" is its own "<owner>/worker" (created if needed)
        identity = str(s.create_identity(args.identity, exist_ok=True)["name"])
        token = s.grant(identity, args.dataset, allows, issue_token=args.issue_token)
        done = [
            {"identity": identity, "dataset": args.dataset, "column": a.column, "operation": a.operation,
             "params": {k: v for k, v in a.params.items() if v is not None}}
            for a in allows
        ]  # fmt: skip
        if args.json:
            _print({"granted": done, "token": token}, True)
        else:
            for g in done:
                params = ", ".join(f"{k}={_cell(v)}" for k, v in g["params"].items())
                print(f"granted {g['operation']} on {g['dataset']}.{g['column']} to {g['identity']}"
                      + (f" ({params})" if params else ""))  # fmt: skip
            if token:
                print(token)
    else:
        n = s.revoke(args.identity, args.dataset, allows or None)
        _print({"revoked_grants": n}, args.json)
    return 0


def _verify_offline(
    data: Path, checkpoint: str | None, public_key: str | None, database: str | None = None
) -> dict[str, Any]:
    from ghostpii import _internal

    if checkpoint is None:
        if public_key is not None:
            sys.exit("error: --public-key checks a checkpoint's signature: give --checkpoint too")
        return json.loads(_internal.verify_audit_db(data, database))  # type: ignore[no-any-return]
    if public_key is not None and Path(public_key).is_file():
        public_key = Path(public_key).read_text().strip()
    return json.loads(  # type: ignore[no-any-return]
        _internal.verify_audit_db_with_checkpoint(data, Path(checkpoint).read_text(), public_key, database)
    )


def _audit(args: argparse.Namespace) -> int:
    if args.action == "verify":
        if args.data:
            database = args.database or os.environ.get("GHOSTPII_DATABASE") or None
            report = _verify_offline(Path(args.data), args.checkpoint, args.public_key, database)
        elif args.checkpoint:
            sys.exit("error: --checkpoint needs --data DIR (the check runs offline on the database)")
        else:
            report = _session(args).verify_audit()
        print(json.dumps(report, indent=2))
        return 0 if report.get("ok") else 1
    if args.action == "checkpoint":
        print(json.dumps(_session(args).audit_checkpoint(), indent=2))
        return 0
    if args.action == "public-key":
        from ghostpii import _internal

        print(_internal.checkpoint_public_key(Path(args.data)))
        return 0
    page = _session(args).audit_page(
        args.dataset, identity=args.identity, since=args.since, limit=args.limit, before=args.before, mine=args.mine
    )
    if args.json:
        _print({"entries": page.entries.to_dicts(), "total": page.total, "next": page.next}, True)
    else:
        import polars as pl

        with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40):
            print(page.entries.drop("prev_hash", "rid_digest"))
        print(page.summary() + " (newest first)")
    return 0


def _budget(args: argparse.Namespace) -> int:
    s = _session(args)
    if args.action == "show":
        _print(s.budget(args.dataset, args.identity), args.json)
    elif args.action == "set":
        _print(s.set_budget(args.identity, args.dataset, args.total, delta=args.delta), args.json)
    else:
        _print(s.reset_budget(args.identity, args.dataset), args.json)
    return 0


def _parser() -> argparse.ArgumentParser:
    from ghostpii._internal import __version__

    p = argparse.ArgumentParser(prog="ghostpii", description="ghostpii: encrypted dataframes and their keyhost.")
    p.add_argument("--version", action="version", version=f"ghostpii {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def conn(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--url", help="keyhost URL (default $GHOSTPII_URL)")
        sp.add_argument("--token", help="identity token (default $GHOSTPII_TOKEN)")
        sp.add_argument("--token-file", help="read the token from this file (e.g. DIR/admin.token)")
        sp.add_argument("--json", action="store_true", help="print JSON")

    kh = sub.add_parser("keyhost", help="run a keyhost").add_subparsers(dest="action", required=True)
    serve = kh.add_parser("serve", help="run a keyhost in the foreground until Ctrl-C")
    serve.add_argument("--data", required=True, help="data directory (SQLite db, master.key, admin.token)")
    serve.add_argument(
        "--database",
        help="PostgreSQL connection string (postgresql://user@host:port/db): all state there, --data holds only "
        "the key files, and replicas with the same key files may share it (default $GHOSTPII_DATABASE, else SQLite)",
    )
    serve.add_argument("--listen", default="127.0.0.1:8750", help="address to listen on (port 0: any free port)")
    serve.add_argument(
        "--default-dp-budget",
        type=float,
        default=None,
        help="total ε of an identity on a dataset when no budget is set or granted (default 1.0)",
    )
    serve.add_argument("--default-dp-delta", type=float, default=None, help="δ of default totals (default 1e-5)")
    serve.add_argument(
        "--new-noise-key",
        action="store_true",
        help="create a new noise.key although DP answers were charged (only after the old one is lost for good)",
    )
    serve.set_defaults(func=_serve)

    ident = sub.add_parser("identity", help="create or list identities").add_subparsers(dest="action", required=True)
    ic = ident.add_parser("create", help="create an identity (an owner's NAME becomes OWNER/NAME, managed by it)")
    ic.add_argument("name")
    ic.add_argument("--role", default="member", choices=["member", "owner", "admin"])
    conn(ic)
    conn(ident.add_parser("list", help="list identities (owners: the ones they manage or were shared)"))
    ish = ident.add_parser("share", help="let another owner grant to an identity you manage (an explicit act)")
    ish.add_argument("identity")
    ish.add_argument("owner")
    ish.add_argument("--unshare", action="store_true", help="take the share back")
    conn(ish)
    idl = ident.add_parser("delegate", help="let one of your analysts issue your identities' tokens for a time")
    idl.add_argument("identity")
    idl.add_argument("--max-ttl", type=int, default=None, help="longest life of a token the lead issues (seconds)")
    idl.add_argument("--ttl", type=int, default=None, help="how long the delegation lasts (seconds)")
    idl.add_argument("--end", action="store_true", help="end the delegation now")
    conn(idl)
    for sp in ident.choices.values():
        sp.set_defaults(func=_identity)

    dsp = sub.add_parser("dataset", help="create or list datasets").add_subparsers(dest="action", required=True)
    dc = dsp.add_parser("create", help="create a dataset owned by the calling identity (no-op if it is yours)")
    dc.add_argument("name")
    conn(dc)
    conn(dsp.add_parser("list", help="list the datasets visible to the calling identity"))
    for sp in dsp.choices.values():
        sp.set_defaults(func=_dataset)

    tok = sub.add_parser("token", help="issue, list or revoke tokens").add_subparsers(dest="action", required=True)
    tc = tok.add_parser("create", help="issue a token (printed once; stored hashed)")
    tc.add_argument("identity")
    tc.add_argument("--ttl", type=int, default=30 * 86400, help="lifetime in seconds")
    conn(tc)
    tl = tok.add_parser("list", help="list tokens (never their secrets)")
    tl.add_argument("--identity")
    conn(tl)
    tr = tok.add_parser("revoke", help="revoke a token by id (immediately)")
    tr.add_argument("token_id", type=int)
    conn(tr)
    tro = tok.add_parser(
        "rotate",
        help="replace the token in use (--token-file DIR/admin.token: the file is rewritten); never extends its expiry",
    )
    tro.add_argument("--ttl", type=int, default=None, help="shorten the new token's lifetime to this many seconds")
    conn(tro)
    for sp in tok.choices.values():
        sp.set_defaults(func=_token)

    gr = sub.add_parser("grant", help="add, list or revoke grants").add_subparsers(dest="action", required=True)
    for name, helptext in (("add", "grant operations on columns"), ("revoke", "revoke grants")):
        g = gr.add_parser(name, help=helptext)
        g.add_argument("identity")
        g.add_argument("dataset")
        g.add_argument("--decrypt", action="append", metavar="COLUMN", help="per-row decryption of COLUMN")
        g.add_argument("--aggregate", action="append", metavar="COLUMN", help="sums/means of COLUMN")
        g.add_argument("--min-rows", type=int, default=None, help="smallest row set an aggregate may cover")
        g.add_argument("--epsilon", type=float, default=None, help="aggregate: answer sums with ε-DP noise")
        g.add_argument("--delta", type=float, default=None, help="aggregate: discrete Gaussian noise (zCDP) with δ")
        g.add_argument("--budget", type=float, default=None, help="aggregate: total privacy budget (ε)")
        g.add_argument("--compare", action="append", metavar="COLUMN", help="comparison tokens for COLUMN")
        g.add_argument("--max-constants", type=int, default=None, help="compare: most distinct constants")
        g.add_argument("--constants", help="compare: the only constants allowed, e.g. 18,21,65 or 2000-01-01")
        g.add_argument("--range", help="compare: constants allowed in LOW,HIGH (inclusive), e.g. 0,100")
        g.add_argument("--group", action="append", metavar="COLUMN", help="ghost.key() pseudonyms of COLUMN")
        g.add_argument(
            "--domain-key-holder",
            action="store_true",
            help="group: also for an identity whose organisation holds the column's join-domain key (see docs)",
        )
        g.add_argument("--issue-token", action="store_true", help="add: also print a new token for the identity")
        conn(g)
    gl = gr.add_parser("list", help="list grants")
    gl.add_argument("--dataset")
    gl.add_argument("--identity")
    conn(gl)
    for sp in gr.choices.values():
        sp.set_defaults(func=_grant)

    jd = sub.add_parser("join-domain", help="create join domains and manage their members").add_subparsers(
        dest="action", required=True
    )
    jc = jd.add_parser("create", help="create a join domain owned by the calling identity")
    jc.add_argument("name")
    conn(jc)
    conn(jd.add_parser("list", help="your join domains (with members) and those you are a member of"))
    ja = jd.add_parser("add-member", help="consent to another owner's columns joining your domain")
    ja.add_argument("name")
    ja.add_argument("owner")
    conn(ja)
    jr = jd.add_parser("remove-member", help="remove a member from your domain (rotate to re-key new columns)")
    jr.add_argument("name")
    jr.add_argument("member")
    conn(jr)
    jl = jd.add_parser("leave", help="leave another owner's domain")
    jl.add_argument("name")
    jl.add_argument("--owner", help="the domain's owner, if you are a member of several of that name")
    conn(jl)
    jo = jd.add_parser("rotate", help="a new key for your domain's new columns")
    jo.add_argument("name")
    conn(jo)
    for sp in jd.choices.values():
        sp.set_defaults(func=_join_domain)

    au = sub.add_parser("audit", help="list or verify the audit log").add_subparsers(dest="action", required=True)
    al = au.add_parser("list", help="list audit entries")
    al.add_argument("--dataset")
    al.add_argument("--identity")
    al.add_argument("--since", help="RFC 3339 time")
    al.add_argument("--limit", type=int, default=50, help="most entries shown, newest first (default 50)")
    al.add_argument("--before", type=int, metavar="INDEX", help="only entries older than INDEX (the next page)")
    al.add_argument("--mine", action="store_true", help="owners: every entry filed under you, not one dataset's")
    conn(al)
    av = au.add_parser("verify", help="recompute the hash chain (offline with --data, or on a running keyhost)")
    av.add_argument("--data", help="keyhost data directory (offline check)")
    av.add_argument("--database", help="the keyhost's PostgreSQL connection string (offline check of its state)")
    av.add_argument("--checkpoint", help="a signed checkpoint (JSON from 'audit checkpoint') to check the log against")
    av.add_argument(
        "--public-key",
        help="the keyhost's checkpoint public key (hex, base64 or a file holding it): refuse other keys' checkpoints",
    )
    conn(av)
    ap = au.add_parser("public-key", help="print the checkpoint public key of a data directory (hex), to pin")
    ap.add_argument("--data", required=True, help="keyhost data directory")
    conn(au.add_parser("checkpoint", help="print the keyhost's signed audit checkpoint (JSON); keep it"))
    for sp in au.choices.values():
        sp.set_defaults(func=_audit)

    bu = sub.add_parser("budget", help="show, set or reset privacy budgets").add_subparsers(
        dest="action", required=True
    )
    bs = bu.add_parser("show", help="budget state on a dataset (yours, or --identity for owners/admins)")
    bs.add_argument("dataset")
    bs.add_argument("--identity")
    conn(bs)
    bt = bu.add_parser("set", help="set the total budget of an identity on a dataset")
    bt.add_argument("identity")
    bt.add_argument("dataset")
    bt.add_argument("total", type=float, help="total ε, all DP mechanisms together")
    bt.add_argument("--delta", type=float, default=None, help="δ of the total (default: the keyhost's)")
    conn(bt)
    br = bu.add_parser("reset", help="forget what an identity has spent on a dataset")
    br.add_argument("identity")
    br.add_argument("dataset")
    conn(br)
    for sp in bu.choices.values():
        sp.set_defaults(func=_budget)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ghostpii`` command."""
    args = _parser().parse_args(argv)
    from ghostpii.errors import GhostError

    try:
        return int(args.func(args))
    except GhostError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
