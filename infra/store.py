"""The store's accounts: one credential per process, one database per service.

FerretDB's PostgreSQL backend authenticates each MongoDB connection (``PLAIN``)
by opening PostgreSQL connections as that user, so PostgreSQL's privileges
decide what each credential may touch. A MongoDB database is a PostgreSQL
schema holding FerretDB's metadata table and one table per collection:

- each service's database is a schema owned by the stack's admin role, in
  which only that service may create collections; the collections it creates
  are its own tables, which no other service role may read or write;
- every role may read every nbembed schema's metadata table (collection
  names and indexes, no documents): FerretDB caches the metadata of the first
  connection that asks for it, so all roles must see the same databases;
- the admin role (a PostgreSQL superuser) is for the stack's checks and the tests.

Passwords live in ``.run/secrets/store-<account>-password`` (0600); processes
get the file's path, never the password.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from infra import postgres
from infra.postgres import quote_ident, quote_literal
from infra.settings import StackSettings

ADMIN = "admin"
DATABASES = {
    "gateway": "nbembed_gateway",
    "provisioner": "nbembed_provisioner",
    "sync": "nbembed_sync",
}
"""Each service's MongoDB database (the hub needs none: the gateway redeems tickets)."""
ACCOUNTS = (ADMIN, *DATABASES)
METADATA_TABLE = "_ferretdb_database_metadata"
"""FerretDB 1.24's per-database metadata table (internal/backends/postgresql/metadata)."""
ANONYMOUS_ROLE = "nbembed_anonymous"
"""FerretDB's base URL user: a role that does not exist, so a client without
credentials (FerretDB then uses the base URL's) gets no connection at all."""
LOCAL_AUTH_OPTIONS = "authMechanism=PLAIN&authSource=%24external"
"""FerretDB 1.x with PostgreSQL accepts PLAIN only (SCRAM is its SQLite-era
experimental mode); the password crosses loopback, never the network."""


@dataclass(frozen=True)
class Credential:
    """How one process reaches the store: a URI without secrets, a user and a password file."""

    uri: str
    username: str | None
    password_file: Path | None

    def client(self, **kwargs: Any) -> AsyncMongoClient[dict[str, Any]]:
        """An async client with this credential."""
        if self.username is not None and self.password_file is not None:
            kwargs |= {"username": self.username, "password": read_password(self.password_file)}
        return AsyncMongoClient(self.uri, **kwargs)


def role(account: str) -> str:
    """The PostgreSQL role (and MongoDB user name) of an account."""
    return f"nbembed_{account}"


def password_file(settings: StackSettings, account: str) -> Path:
    return settings.secrets_dir / f"store-{account}-password"


def read_password(path: Path) -> str:
    return path.read_text().strip()


def local_uri(settings: StackSettings) -> str:
    return f"mongodb://127.0.0.1:{settings.mongodb_port}/?{LOCAL_AUTH_OPTIONS}"


def credential(settings: StackSettings, account: str) -> Credential:
    """An account's credential; with an external MongoDB, its URI for every account.

    Operators of an external store give each service its own user through the
    services' own settings (``NBEMBED_<SERVICE>_MONGODB_USERNAME`` and
    ``..._MONGODB_PASSWORD_FILE``), see the README.
    """
    if not settings.local_mongodb:
        return Credential(settings.mongodb, None, None)
    return Credential(local_uri(settings), role(account), password_file(settings, account))


def admin_client(settings: StackSettings, **kwargs: Any) -> AsyncMongoClient[dict[str, Any]]:
    """The stack's own client (checks, tests): the admin credential."""
    return credential(settings, ADMIN).client(**kwargs)


def ferretdb_postgresql_url(settings: StackSettings) -> str:
    """FerretDB's base URL: the socket, the database, a user that cannot log in."""
    return f"postgres://{ANONYMOUS_ROLE}@/{postgres.DATABASE}?host={postgres.socket_dir(settings)}"


def _roles_sql(settings: StackSettings) -> str:
    statements = []
    for account in ACCOUNTS:
        name = role(account)
        verifier = quote_literal(
            postgres.scram_verifier(read_password(password_file(settings, account)))
        )
        attributes = "LOGIN SUPERUSER" if account == ADMIN else "LOGIN NOSUPERUSER"
        statements += [
            # Constants and quoted values only, no outside input: S608 does not apply.
            f"SELECT 'CREATE ROLE {name}' WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT FROM pg_roles WHERE rolname = {quote_literal(name)}) \\gexec",
            f"ALTER ROLE {quote_ident(name)} {attributes} PASSWORD {verifier};",
        ]
    return "\n".join(statements) + "\n"


_ID_INDEX_SQL = r"""
-- Runs as the role that creates the table (its owner): nothing here needs a schema
-- that role cannot use (public is closed to it).
CREATE OR REPLACE FUNCTION public.nbembed_index_ids() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT c.oid::regclass AS tbl, c.oid, c.relname
        FROM pg_event_trigger_ddl_commands() d
        JOIN pg_catalog.pg_class c ON c.oid = d.objid
        WHERE d.object_type = 'table' AND d.schema_name LIKE 'nbembed\_%'
          AND c.relname <> '_ferretdb_database_metadata'
    LOOP
        BEGIN
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin '
                           '((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
                           left(created.relname, 40) || '_' || created.oid || '_id_gin',
                           created.tbl);
        EXCEPTION WHEN others THEN
            -- A collection without this index works (slower): never fail its creation.
            RAISE WARNING 'nbembed: no _id index on %: %', created.tbl, SQLERRM;
        END;
    END LOOP;
END $fn$;

DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'nbembed_index_ids')
    THEN
        CREATE EVENT TRIGGER nbembed_index_ids ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
            EXECUTE FUNCTION public.nbembed_index_ids();
    END IF;
END $do$;
"""
"""Every collection's table gets a GIN index on its `_id`, as FerretDB creates it.

FerretDB 1.24 on PostgreSQL turns a filter on ``_id`` into ``_jsonb->$1 @> $2``
(``internal/backends/postgresql/query.go``), which its own btree index on
``_jsonb->'_id'`` cannot serve: every lookup by ``_id`` read the whole table
(20 ms with 2,000 sessions, growing with each one). A GIN index on the same
expression serves ``@>`` (``jsonb_path_ops``: the smallest; ``fastupdate``
off, or every lookup would also read the index's list of pending entries):
0.04 ms. PostgreSQL plans each execution with the key's value
(``plan_cache_mode``, set in `bootstrap_roles`), so the index matches; a
FerretDB already running keeps its connections' plans until it restarts.
Created by an event trigger in the same transaction as the table, as the
service role that creates it (its owner); a failure only warns.
"""

_ID_INDEX_EXISTING_SQL = r"""
-- Collections made before the trigger existed (a stack started by an older version).
DO $do$
DECLARE
    existing record;
BEGIN
    FOR existing IN
        SELECT c.oid::regclass AS tbl, c.oid, c.relname
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname LIKE 'nbembed\_%'
          AND c.relname <> '_ferretdb_database_metadata'
          AND NOT EXISTS (
              SELECT FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_catalog.pg_am am ON am.oid = ic.relam
              WHERE i.indrelid = c.oid AND am.amname = 'gin')
    LOOP
        EXECUTE format('CREATE INDEX %I ON %s USING gin '
                       '((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
                       left(existing.relname, 40) || '_' || existing.oid || '_id_gin',
                       existing.tbl);
    END LOOP;
END $do$;
"""
"""The same index on collections made before the trigger existed (a stack of an older
version); once per table, after the roles are set up."""


def bootstrap_roles(settings: StackSettings) -> None:
    """Roles (passwords synced with the secret files) and the database; idempotent."""
    postgres.run_sql(
        settings,
        f"SELECT 'CREATE DATABASE {postgres.DATABASE}' WHERE NOT EXISTS "  # noqa: S608
        f"(SELECT FROM pg_database WHERE datname = {quote_literal(postgres.DATABASE)}) \\gexec\n",
        database="postgres",
    )
    roles = ", ".join(quote_ident(role(account)) for account in ACCOUNTS)
    postgres.run_sql(
        settings,
        # First, so no service can log in and create a collection before the trigger.
        _ID_INDEX_SQL
        # FerretDB prepares its statements with the filter's key as a parameter: a
        # generic plan of `_jsonb->$1 @> $2` could use no index (see _ID_INDEX_SQL).
        + f"ALTER DATABASE {postgres.DATABASE} SET plan_cache_mode = force_custom_plan;\n"
        + _roles_sql(settings)
        + f"REVOKE ALL ON DATABASE {postgres.DATABASE} FROM PUBLIC;\n"
        + "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
        + f"GRANT CONNECT ON DATABASE {postgres.DATABASE} TO {roles};\n",
    )


async def _create_databases(settings: StackSettings) -> None:
    # FerretDB makes a database (schema + metadata table) with its first
    # collection; made by the admin role, the schema is not a service's to drop.
    admin = admin_client(settings, serverSelectionTimeoutMS=5000)
    try:
        existing = set(await admin.list_database_names())
        for database in DATABASES.values():
            if database not in existing:
                await admin[database].create_collection("_created")
                await admin[database].drop_collection("_created")
    finally:
        await admin.close()


def _grants_sql() -> str:
    everyone = ", ".join(quote_ident(role(account)) for account in ACCOUNTS if account != ADMIN)
    statements = []
    for service, database in DATABASES.items():
        schema = quote_ident(database)
        metadata = f"{schema}.{quote_ident(METADATA_TABLE)}"
        statements += [
            f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;",
            f"GRANT USAGE ON SCHEMA {schema} TO {everyone};",
            f"GRANT SELECT ON {metadata} TO {everyone};",
            f"GRANT CREATE ON SCHEMA {schema} TO {quote_ident(role(service))};",
            f"GRANT INSERT, UPDATE, DELETE ON {metadata} TO {quote_ident(role(service))};",
        ]
    return "\n".join(statements) + "\n"


def bootstrap_databases(settings: StackSettings) -> None:
    """Each service's database and the grants above; idempotent, before services start."""
    asyncio.run(_create_databases(settings))
    postgres.run_sql(settings, _grants_sql() + _ID_INDEX_EXISTING_SQL)
