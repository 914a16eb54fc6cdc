"""ebm-dashboard: a thin wrapper over `streamlit run app/main.py`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .settings import CHECKPOINT_ENV, LOG_ENV, REFRESH_ENV


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebm-dashboard", description="Live dashboard of ebm training runs.")
    p.add_argument("--logs", default="logs", help="the trainer's logs folder (default: ./logs)")
    p.add_argument("--checkpoints", default="checkpoints", help="the trainer's checkpoints folder (default: ./checkpoints)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="localhost", help="address to serve on (0.0.0.0 for other machines)")
    p.add_argument("--refresh", type=float, default=5.0, help="seconds between live refreshes")
    return p


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
    os.environ.update({LOG_ENV: str(logs), CHECKPOINT_ENV: str(ckpts), REFRESH_ENV: str(args.refresh)})
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
