"""``streetwatch-central verify-case FILE.zip [--public-key K]`` and ``streetwatch-central signing-key``.

verify-case exits 0 and prints ``OK`` when the manifest's signature holds and every file matches; otherwise
it prints one line per difference (``changed: evidence/….jpg``, ``added: notes.txt``, ``removed: …``) and
exits 1. Without ``--public-key`` it uses central's own key when run where central's data lives, else the
key inside the manifest (which proves integrity only, and says so).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from central import export, signing


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = sub.add_parser("verify-case", help="check a case export's signature and files")
    verify.add_argument("zip", type=Path, help="the exported case zip")
    verify.add_argument(
        "--public-key",
        type=Path,
        default=None,
        help="central's public key (PEM, from /api/v1/signing-key or 'streetwatch-central signing-key')",
    )
    verify.set_defaults(run=run_verify)
    key = sub.add_parser("signing-key", help="print central's Ed25519 public key (PEM) for verify-case")
    key.set_defaults(run=run_signing_key)


def _central_public_key() -> signing.Ed25519PublicKey | None:
    """Central's key when this machine has it (settings from the environment); None otherwise."""
    try:
        from central.settings import Settings

        settings = Settings()
    except Exception:
        return None
    path = signing.key_path(settings.data_dir, settings.signing_key_file)
    if not path.exists():
        return None
    return signing.load_or_create(path).public_key()


def run_verify(args: argparse.Namespace) -> int:
    if not args.zip.is_file():
        print(f"error: {args.zip} does not exist", file=sys.stderr)
        return 2
    key = None
    if args.public_key is not None:
        try:
            key = signing.load_public(args.public_key.read_bytes())
        except (OSError, ValueError) as exc:
            print(f"error: cannot read the public key {args.public_key}: {exc}", file=sys.stderr)
            return 2
    else:
        key = _central_public_key()
    report = export.verify(args.zip, key)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def run_signing_key(args: argparse.Namespace) -> int:
    from central.settings import Settings

    settings = Settings()
    key = signing.load_or_create(signing.key_path(settings.data_dir, settings.signing_key_file)).public_key()
    print(signing.public_pem(key), end="")
    print(f"# {signing.fingerprint(key)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streetwatch-central")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
