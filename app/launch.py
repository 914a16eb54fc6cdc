"""ebm-dashboard: a thin wrapper over `streamlit run app/main.py`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .access import PASSWORD_ENV, PASSWORD_HASH_ENV, READ_ONLY_ENV, is_loopback, password_hash
from .settings import CHECKPOINT_ENV, LOG_ENV, REFRESH_ENV


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebm-dashboard", description="Live dashboard of ebm training runs.")
    p.add_argument("--logs", default="logs", help="the trainer's logs folder (default: ./logs)")
    p.add_argument("--checkpoints", default="checkpoints", help="the trainer's checkpoints folder (default: ./checkpoints)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument(
        "--address", default="localhost", help="address to serve on; past loopback (0.0.0.0: all) a password or --no-auth"
    )
    p.add_argument("--refresh", type=float, default=5.0, help="seconds between live refreshes")
    p.add_argument("--password", help=f"ask for this password first (prefer the {PASSWORD_ENV} environment variable)")
    p.add_argument("--no-auth", action="store_true", help="serve off this machine without a password (a warning is printed)")
    p.add_argument("--read-only", action="store_true", help="no renaming, no notes, no Generate")
    return p


def access_env(args) -> tuple[dict[str, str], str | None]:
    """The app's access settings as environment variables, and the error that refuses to serve."""
    password = args.password or os.environ.get(PASSWORD_ENV) or ""
    env = {READ_ONLY_ENV: "1" if args.read_only else "0", PASSWORD_HASH_ENV: password_hash(password) if password else ""}
    if not password and not args.no_auth and not is_loopback(args.address):
        return env, (
            f"--address {args.address} serves other machines: set a password ({PASSWORD_ENV}=... or --password), "
            "or pass --no-auth to serve without one"
        )
    return env, None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs, ckpts = Path(args.logs).resolve(), Path(args.checkpoints).resolve()
    for name, folder in (("--logs", logs), ("--checkpoints", ckpts)):
        if folder.exists() and not folder.is_dir():
            print(f"ebm-dashboard: error: {name} {folder} is a file, not a folder", file=sys.stderr)
            return 2
    if args.refresh <= 0:
        print("ebm-dashboard: error: --refresh must be positive", file=sys.stderr)
        return 2
    access, refused = access_env(args)
    if refused:
        print(f"ebm-dashboard: error: {refused}", file=sys.stderr)
        return 2
    if args.no_auth and not is_loopback(args.address):
        print(
            f"ebm-dashboard: warning: serving {args.address} with no password: anyone who reaches port {args.port} can "
            "read every run, rename runs, write notes and run Generate on this machine",
            file=sys.stderr,
        )
    os.environ.pop(PASSWORD_ENV, None)  # the app gets the hash only
    os.environ.update({LOG_ENV: str(logs), CHECKPOINT_ENV: str(ckpts), REFRESH_ENV: str(args.refresh), **access})
    print(f"ebm-dashboard: http://{args.address}:{args.port} (logs {logs}, checkpoints {ckpts})", flush=True)
    from streamlit.web import cli

    sys.argv = [
        "streamlit",
        "run",
        str(Path(__file__).with_name("main.py")),
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
