"""One-shot setup of deploy/compose.yaml's data plane: topics, ACLs, store users.

``python -m infra.compose_setup`` runs once in the services image after Kafka
and MongoDB answer, before the services start. It does what ``python -m infra
up`` does for the local stack, against real ``apache/kafka`` and ``mongo``
containers: creates every topic (`infra.readiness.create_topics`), makes the
service principals' ACLs equal the table (`infra.kafka_access.ensure_acls`),
and gives each service a MongoDB user with readWrite on its own database only
(as `infra.store.DATABASES`). Idempotent; passwords come from files (compose
secrets), never from the environment or argv.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from infra import readiness
from infra.kafka_access import ADMIN, ensure_acls, principal
from infra.store import DATABASES

DUPLICATE_USER = 51003


class ComposeSetupSettings(BaseSettings):
    """Where the containers are and where their secrets are mounted."""

    model_config = SettingsConfigDict(env_prefix="NBEMBED_SETUP_", extra="ignore")

    kafka_bootstrap: str = "kafka:9092"
    mongodb_uri: str = "mongodb://mongo:27017/"
    secrets_dir: Path = Field(
        default=Path("/run/secrets"),
        description="kafka-<user>-password and store-<account>-password files.",
    )
    partitions: int = Field(default=12, ge=1)

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()


def kafka_admin_options(settings: ComposeSetupSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": principal(ADMIN),
        "sasl_plain_password": settings.secret(f"kafka-{ADMIN}-password"),
    }


async def ensure_store_users(settings: ComposeSetupSettings) -> None:
    """Each service's user, readWrite on its own database; its password follows the file."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri,
        username="root",
        password=settings.secret("store-admin-password"),
        serverSelectionTimeoutMS=30000,
    )
    try:
        admin = client["admin"]
        for service, database in DATABASES.items():
            password = settings.secret(f"store-{service}-password")
            roles = [{"role": "readWrite", "db": database}]
            try:
                await admin.command("createUser", service, pwd=password, roles=roles)
            except OperationFailure as error:
                if error.code != DUPLICATE_USER:
                    raise
                await admin.command("updateUser", service, pwd=password, roles=roles)
    finally:
        await client.close()


async def main() -> None:
    settings = ComposeSetupSettings()
    options = kafka_admin_options(settings)
    created = await readiness.create_topics(options, settings.partitions)
    print(f"topics created: {len(created)}")
    added, removed = await ensure_acls(options)
    print(f"ACLs: {len(added)} created, {len(removed)} deleted")
    await ensure_store_users(settings)
    print("store users: " + ", ".join(DATABASES))


if __name__ == "__main__":
    asyncio.run(main())
