"""Store credentials: each process gets its own user and a password file, never the password."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from infra import stack, store
from infra.settings import StackSettings
from services.common.mongo import connect
from services.common.settings import ServiceSettings


def _with_passwords(tmp_path: Path) -> StackSettings:
    settings = StackSettings(state_dir=tmp_path)
    settings.secrets_dir.mkdir(parents=True)
    for account in store.ACCOUNTS:
        store.password_file(settings, account).write_text(f"secret-of-{account}\n")
    return settings


def test_each_process_gets_its_own_user_and_password_file(tmp_path: Path) -> None:
    settings = _with_passwords(tmp_path)
    for account, database in store.DATABASES.items():
        env = stack._store_env("P_", settings, account)
        assert env["P_MONGODB_USERNAME"] == f"nbembed_{account}"
        assert env["P_MONGODB_PASSWORD_FILE"] == str(store.password_file(settings, account))
        assert env["P_MONGODB_DATABASE"] == database
        assert "authMechanism=PLAIN" in env["P_MONGODB_URI"]
        # Nothing that ends up in supervisord's config or a process environment
        # carries any account's password.
        assert not [v for v in env.values() for a in store.ACCOUNTS if f"secret-of-{a}" in v]


def test_an_external_mongodb_uri_reaches_every_process_as_given(tmp_path: Path) -> None:
    uri = "mongodb://ops:pw@db.internal:27017/?authSource=admin"
    settings = StackSettings(state_dir=tmp_path, mongodb_uri=SecretStr(uri))
    env = stack._store_env("P_", settings, "sync")
    assert env == {"P_MONGODB_URI": uri, "P_MONGODB_DATABASE": "nbembed_sync"}


async def test_a_service_reads_its_password_from_the_file(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("from-the-file\n")
    settings = ServiceSettings(
        mongodb_uri=SecretStr("mongodb://127.0.0.1:1/?authMechanism=PLAIN&authSource=%24external"),
        mongodb_username="nbembed_sync",
        mongodb_password_file=password_file,
    )
    client = connect(settings)
    try:
        credentials = client.options.pool_options._credentials
        assert credentials is not None
        assert (credentials.username, credentials.password) == ("nbembed_sync", "from-the-file")
        assert credentials.mechanism == "PLAIN"
    finally:
        await client.close()
