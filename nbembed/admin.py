"""The operator's CLI: manage tenants through the gateway's admin API.

    python -m nbembed.admin tenants list
    python -m nbembed.admin tenants create ID [--name N] [--origin O ...] [--restricted]
    python -m nbembed.admin tenants rotate-key ID [--grace SECONDS]
    python -m nbembed.admin tenants set-origins ID ORIGIN [ORIGIN ...]
    python -m nbembed.admin tenants set-restricted ID true|false
    python -m nbembed.admin tenants set-profiles ID PROFILES.json [--default NAME]
    python -m nbembed.admin tenants disable|enable ID

It talks to the gateway (``NBEMBED_ADMIN_URL``) with the operator credential
(``NBEMBED_ADMIN_TOKEN_FILE``; the local stack's by default), never to the
store: the gateway validates every change, and the CLI needs no database
credential. Answers are printed as JSON; an API key appears only in the
answers of ``create`` and ``rotate-key``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import SecretFileSettings

LOCAL_TOKEN_FILE = Path(__file__).resolve().parent.parent / ".run" / "secrets" / "admin-token"


class AdminSettings(SecretFileSettings):
    """Where the gateway is and the operator credential (env prefix ``NBEMBED_ADMIN_``)."""

    model_config = SettingsConfigDict(env_prefix="NBEMBED_ADMIN_", extra="ignore")
    required_secrets: ClassVar[tuple[str, ...]] = ("token",)

    url: str = "http://127.0.0.1:8080"
    token: SecretStr | None = None
    token_file: Path | None = Field(
        # The local stack's operator credential, when this checkout runs the stack.
        default_factory=lambda: LOCAL_TOKEN_FILE if LOCAL_TOKEN_FILE.exists() else None
    )


class AdminError(Exception):
    """The gateway refused: its problem details' title and detail."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nbembed.admin", description=__doc__.split("\n")[0]
    )
    area = parser.add_subparsers(dest="area", required=True).add_parser("tenants")
    commands = area.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every tenant")
    create = commands.add_parser("create", help="a new tenant and its first API key")
    create.add_argument("id")
    create.add_argument("--name", default="")
    create.add_argument("--origin", action="append", default=[], dest="origins")
    create.add_argument("--restricted", action="store_true")
    rotate = commands.add_parser("rotate-key", help="a new API key; the old one expires later")
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=int, default=3600, help="seconds the old key still works")
    origins = commands.add_parser("set-origins", help="replace the allowed origins")
    origins.add_argument("id")
    origins.add_argument("origins", nargs="+")
    restricted = commands.add_parser("set-restricted", help="restricted-data mode on or off")
    restricted.add_argument("id")
    restricted.add_argument("value", choices=["true", "false"])
    profiles = commands.add_parser(
        "set-profiles",
        help="replace the profiles: a JSON file with a list of {name, display_name, kernel, "
        "mem_limit, cpu_limit, image} ('-' reads standard input; '[]' removes them)",
    )
    profiles.add_argument("id")
    profiles.add_argument("file")
    profiles.add_argument("--default", dest="default_profile", default=None)
    for name in ("disable", "enable"):
        commands.add_parser(name, help=f"{name} the tenant's keys").add_argument("id")
    return parser


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The admin API call a command line stands for: method, path, JSON body."""
    base = "/admin/v1/tenants"
    path = f"{base}/{args.id}" if getattr(args, "id", None) else base
    match args.command:
        case "list":
            return "GET", base, None
        case "create":
            body = {"id": args.id, "name": args.name, "allowed_origins": args.origins}
            return "POST", base, {**body, "restricted": args.restricted}
        case "rotate-key":
            return "POST", f"{path}/rotate-key", {"grace_seconds": args.grace}
        case "set-origins":
            return "PUT", f"{path}/origins", {"allowed_origins": args.origins}
        case "set-restricted":
            return "PUT", f"{path}/restricted", {"restricted": args.value == "true"}
        case "set-profiles":
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
            body = {"profiles": json.loads(text), "default_profile": args.default_profile}
            return "PUT", f"{path}/profiles", body
        case _:
            return "POST", f"{path}/{args.command}", None


def run(argv: list[str], settings: AdminSettings) -> Any:
    """Carry out one command line against the gateway; its JSON answer."""
    method, path, body = _request(_parser().parse_args(argv))
    assert settings.token is not None
    headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
    with httpx.Client(base_url=settings.url, headers=headers, timeout=30) as client:
        response = client.request(method, path, json=body)
    if response.is_error:
        problem = response.json() if response.content else {}
        raise AdminError(
            f"{response.status_code} {problem.get('title', '')}: {problem.get('detail', '')}"
        )
    return response.json()


def main(argv: list[str] | None = None) -> int:
    """The command line's entry point: 0 on success, 1 when the gateway refused."""
    try:
        answer = run(sys.argv[1:] if argv is None else argv, AdminSettings())
    except (AdminError, httpx.HTTPError, ValueError) as exc:
        print(f"nbembed.admin: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
