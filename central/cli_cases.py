"""``streetwatch-central verify-case FILE.zip [--public-key K]`` and ``streetwatch-central signing-key``.

verify-case exits 0 and prints ``OK`` when the manifest's signature holds and every file matches; otherwise
it prints one line per difference (``changed: evidence/….jpg``, ``added: notes.txt``, ``removed: …``) and
exits 1. Without ``--public-key`` it uses central's own key when run where central's data lives, else the
key inside the manifest (which proves integrity only, and says so).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from central import export, signing


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


def verify_case_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="streetwatch-central verify-case", description="Check a case export's signature and files."
    )
    parser.add_argument("zip", type=Path, help="the exported case zip")
    parser.add_argument(
        "--public-key",
        type=Path,
        default=None,
        help="central's public key (PEM, from /api/v1/signing-key or 'streetwatch-central signing-key')",
    )
    return run_verify(parser.parse_args(list(argv)))


def signing_key_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="streetwatch-central signing-key", description="Print central's Ed25519 public key (PEM)."
    )
    return run_signing_key(parser.parse_args(list(argv)))


if __name__ == "__main__":
    raise SystemExit(verify_case_main(sys.argv[1:]))


def wards_main(argv: Sequence[str]) -> int:
    """``wards add W [--name N]``, ``wards list``, ``wards place NODE CAMERA WARD`` (admin tasks from a shell)."""
    from central.cameras import add_ward, list_cameras, list_wards, update_camera
    from central.db import migrate
    from central.db.session import Database
    from central.review import ReviewError
    from central.settings import Settings
    from edge_agent.contract import utcnow

    parser = argparse.ArgumentParser(prog="streetwatch-central wards", description=wards_main.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create a ward")
    add.add_argument("ward")
    add.add_argument("--name", default="")
    sub.add_parser("list", help="wards and cameras")
    place = sub.add_parser("place", help="put a camera in a ward (its events move with it)")
    place.add_argument("node")
    place.add_argument("camera")
    place.add_argument("ward")
    args = parser.parse_args(list(argv))
    settings = Settings()
    migrate.upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            if args.action == "add":
                add_ward(session, args.ward, args.name, actor=None, now=utcnow())
                print(f"ward {args.ward} created")
            elif args.action == "list":
                for ward in list_wards(session):
                    print(f"ward {ward.ward_id}\t{ward.name}")
                for cam in list_cameras(session):
                    print(
                        f"camera {cam.node_id}/{cam.camera_id}\t{cam.ward_id or '-'}\t{cam.name}\t{cam.location}"
                    )
            else:
                from central.db.wards import CameraRow

                row = session.get(CameraRow, (args.node, args.camera))
                if row is None:
                    print(f"error: no camera {args.node}/{args.camera}", file=sys.stderr)
                    return 1
                moved = update_camera(
                    session,
                    args.node,
                    args.camera,
                    name=row.name,
                    ward_id=args.ward,
                    location=row.location,
                    notes=row.notes,
                    actor="cli",
                    now=utcnow(),
                )
                print(f"camera {args.node}/{args.camera} placed in {args.ward}; {moved} events moved")
    except ReviewError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0
