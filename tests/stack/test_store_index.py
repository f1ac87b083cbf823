"""A lookup by ``_id`` goes through an index on the local store (infra/store.py).

FerretDB 1.24 on PostgreSQL filters on ``_id`` with ``_jsonb->$1 @> $2``, which
its own btree index cannot serve: without the GIN index the stack adds to each
collection's table, every lookup read the whole table and every hop of nbembed
slowed down as collections grew (20 ms per lookup with 2,000 sessions).
"""

from __future__ import annotations

import random
import string

from infra import postgres, store
from infra.settings import StackSettings
from tests.stack.helpers import eventually

LOOKUPS = 20


def _table_of(settings: StackSettings, schema: str, collection: str) -> str:
    """The table FerretDB made for ``collection`` (``<collection>_<hash>`` for a name of
    lowercase letters and underscores), schema-qualified."""
    prefix = collection.replace("_", "\\_") + "\\_%"
    name = postgres.run_sql(
        settings,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "  # noqa: S608 - quoted values only
        f"WHERE c.relkind = 'r' AND n.nspname = {postgres.quote_literal(schema)} "
        f"AND c.relname LIKE {postgres.quote_literal(prefix)}",
    )
    assert name and "\n" not in name, name
    return f"{postgres.quote_ident(schema)}.{postgres.quote_ident(name)}"


def _gin_index_scans(settings: StackSettings, table: str) -> int | None:
    """Index scans PostgreSQL counted on ``table``'s GIN indexes; None when it has none."""
    answer = postgres.run_sql(
        settings,
        "SELECT sum(s.idx_scan) FROM pg_stat_user_indexes s "  # noqa: S608 - quoted values only
        "JOIN pg_class ic ON ic.oid = s.indexrelid JOIN pg_am am ON am.oid = ic.relam "
        f"WHERE s.relid = {postgres.quote_literal(table)}::regclass AND am.amname = 'gin'",
    )
    return None if answer == "" else int(answer)


async def test_a_collection_a_service_creates_is_looked_up_by_id_through_an_index(
    stack_settings: StackSettings,
) -> None:
    database = store.DATABASES["gateway"]
    # Letters only: FerretDB names the table after the collection, digits replaced.
    collection = "id_index_" + "".join(random.choices(string.ascii_lowercase, k=10))
    # Created by the service's own credential, as the gateway creates its collections.
    client = store.credential(stack_settings, "gateway").client(serverSelectionTimeoutMS=5000)
    documents = client[database][collection]
    try:
        await documents.insert_many([{"_id": f"doc-{n}", "n": n} for n in range(2000)])
        table = _table_of(stack_settings, database, collection)
        postgres.run_sql(stack_settings, f"ANALYZE {table};")
        before = _gin_index_scans(stack_settings, table)
        assert before is not None, "the new collection's table has no GIN index on _id"
        for n in range(0, 2000, 2000 // LOOKUPS):
            found = await documents.find_one({"_id": f"doc-{n}"})
            assert found is not None and found["n"] == n

        async def lookups_used_the_index() -> bool:
            scans = _gin_index_scans(stack_settings, table) or 0
            return scans - before >= LOOKUPS

        # PostgreSQL publishes its counters within a second or so of each query.
        await eventually(lookups_used_the_index, timeout=20, interval=0.5)
    finally:
        await documents.drop()
        await client.close()


async def test_every_collection_of_the_stack_has_its_id_index(
    stack_settings: StackSettings,
) -> None:
    schemas = ", ".join(postgres.quote_literal(db) for db in store.DATABASES.values())
    without = postgres.run_sql(
        stack_settings,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "  # noqa: S608 - quoted values only
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'r' AND n.nspname IN ({schemas}) "
        f"AND c.relname <> {postgres.quote_literal(store.METADATA_TABLE)} "
        "AND NOT EXISTS (SELECT FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = ic.relam WHERE i.indrelid = c.oid AND am.amname = 'gin')",
    )
    tables = postgres.run_sql(
        stack_settings,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "  # noqa: S608 - quoted values only
        f"WHERE c.relkind = 'r' AND n.nspname IN ({schemas})",
    )
    assert int(tables) > 5  # the services' collections exist (the stack has run)
    assert without == "", f"collections without an _id index: {without.split()}"
