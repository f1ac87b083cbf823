"""A single-node KRaft Kafka broker from the Maven Central jars that install.sh fetched.

Every listener, the broker's and the controller's, speaks SASL/SCRAM-SHA-512;
the StandardAuthorizer refuses whatever no ACL allows. The stack's admin user
is the only super user: the broker talks to its controller as it, ``infra``
creates topics and ACLs as it, and tests watch topics as it. SCRAM users live
in the KRaft metadata log: they are written when the log is formatted, and
``ensure_users`` adds (or updates) any whose password does not work at ``up``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra import readiness
from infra.kafka_access import ADMIN, USERS, principal
from infra.settings import StackSettings

log = logging.getLogger(__name__)

MECHANISM = "SCRAM-SHA-512"
SASL_MARKER = "nbembed-sasl"
"""Written into the log dir once it is formatted with SCRAM users."""


def kafka_dir(settings: StackSettings) -> Path:
    return settings.state_dir / "kafka"


def classpath(settings: StackSettings) -> str:
    return str(settings.cache_dir / "kafka" / "lib" / "*")


def write_config(settings: StackSettings) -> Path:
    """Render server.properties and the log4j2 config; return the properties path."""
    home = kafka_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    properties = home / "server.properties"
    broker = f"127.0.0.1:{settings.kafka_port}"
    controller = f"127.0.0.1:{settings.kafka_controller_port}"
    _write_private(
        properties,
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"listeners=BROKER://{broker},CONTROLLER://{controller}",
                f"advertised.listeners=BROKER://{broker}",
                "inter.broker.listener.name=BROKER",
                "controller.listener.names=CONTROLLER",
                # No PLAINTEXT listener at all: every connection authenticates.
                "listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
                f"sasl.mechanism.controller.protocol={MECHANISM}",
                f"listener.name.broker.{MECHANISM.lower()}.sasl.jaas.config={_jaas(settings)}",
                f"listener.name.controller.{MECHANISM.lower()}.sasl.jaas.config={_jaas(settings)}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                f"super.users=User:{principal(ADMIN)}",
                f"controller.quorum.bootstrap.servers={controller}",
                f"log.dirs={home / 'data'}",
                f"num.partitions={settings.kafka_partitions}",
                # One broker: internal topics cannot have more than one replica.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # Topics come from schemas/ (infra creates them): a typo must fail loudly.
                "auto.create.topics.enable=false",
                # No 3 s wait before the first consumer group forms.
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        ),
    )
    (home / "log4j2.properties").write_text(
        "\n".join(
            [
                "status = warn",
                "appender.console.type = Console",
                "appender.console.name = STDOUT",
                "appender.console.layout.type = PatternLayout",
                "appender.console.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = info",
                "rootLogger.appenderRef.stdout.ref = STDOUT",
                "logger.kafka.name = kafka",
                "logger.kafka.level = warn",
                "logger.state.name = state.change.logger",
                "logger.state.level = warn",
                "",
            ]
        )
    )
    return properties


def java_command(settings: StackSettings, main_class: str, *args: str) -> list[str]:
    """A ``java`` command line running ``main_class`` from the Kafka jars."""
    home = kafka_dir(settings)
    return [
        "java",
        f"-Xms{settings.kafka_heap}",
        f"-Xmx{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={settings.logs_dir}",
        "-cp",
        classpath(settings),
        main_class,
        *args,
    ]


def prepare_storage(settings: StackSettings, properties: Path) -> bool:
    """Format the KRaft log dir with the stack's SCRAM users on first start.

    A log dir formatted before the stack used SASL has no users, and without
    them the broker cannot even reach its own controller: it is moved aside
    (``data.plaintext-<time>``, with a warning) and a new one is formatted.
    Its events are transient (notebooks live in MongoDB). True when it
    formatted now.
    """
    data = kafka_dir(settings) / "data"
    if (data / "meta.properties").exists():
        if (data / SASL_MARKER).exists():
            return False
        aside = data.with_name(f"data.plaintext-{time.strftime('%Y%m%dT%H%M%S')}")
        data.rename(aside)
        log.warning(
            "Kafka's log was formatted without SASL users: moved to %s, formatting anew", aside
        )
    cluster_id = new_cluster_id()
    scram = [f"{MECHANISM}=[name={principal(u)},password={password(settings, u)}]" for u in USERS]
    args = ["format", "--standalone", "-t", cluster_id, "-c", str(properties)]
    for credential in scram:
        args += ["--add-scram", credential]
    _run_tool(settings, "kafka.tools.StorageTool", args)
    (data / SASL_MARKER).write_text("formatted with SCRAM users\n")
    return True


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64, never starting with "-".

    One id in 64 would start with "-", and kafka-storage's argument parser then
    takes it for an option ("--cluster-id: expected one argument"). Kafka's own
    ``Uuid.randomUuid`` draws again in that case; so does this.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


async def users_failing_login(settings: StackSettings) -> list[str]:
    """The service users whose password does not log in (missing, or changed since)."""
    services = [u for u in USERS if u != ADMIN]
    answers = await asyncio.gather(
        *(readiness.kafka_answers(client_options(settings, u)) for u in services)
    )
    return [user for user, ok in zip(services, answers, strict=True) if not ok]


def add_users(settings: StackSettings, users: list[str]) -> None:
    """Create or update these users' SCRAM credentials from their secret files.

    For a user added to the table after the log was formatted, or a password
    file deleted (a new password was generated). Uses Kafka's own ConfigCommand
    as the admin, since aiokafka has no SCRAM admin API: one JVM start, only
    when something is missing.
    """
    with _admin_client_config(settings) as config:
        for user in users:
            _run_tool(
                settings,
                "kafka.admin.ConfigCommand",
                [
                    "--bootstrap-server",
                    settings.kafka_bootstrap_servers,
                    "--command-config",
                    str(config),
                    "--alter",
                    "--entity-type",
                    "users",
                    "--entity-name",
                    principal(user),
                    "--add-config",
                    f"{MECHANISM}=[password={password(settings, user)}]",
                ],
            )


def password(settings: StackSettings, user: str) -> str:
    """A stack user's Kafka password, from its secret file (``infra.stack`` creates it)."""
    return settings.kafka_password_file(user).read_text().strip()


def client_options(settings: StackSettings, user: str = ADMIN) -> dict[str, Any]:
    """aiokafka client arguments to connect as one of the stack's users (admin by default).

    The one place tests and ``infra`` get Kafka connection settings from.
    """
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": principal(user),
        "sasl_plain_password": password(settings, user),
    }


def _jaas(settings: StackSettings) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{principal(ADMIN)}" password="{password(settings, ADMIN)}";'
    )


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


@contextlib.contextmanager
def _admin_client_config(settings: StackSettings) -> Iterator[Path]:
    """A Kafka client properties file for the admin, removed afterwards."""
    path = kafka_dir(settings) / "admin-client.properties"
    _write_private(
        path,
        "\n".join(
            [
                "security.protocol=SASL_PLAINTEXT",
                f"sasl.mechanism={MECHANISM}",
                f"sasl.jaas.config={_jaas(settings)}",
                "",
            ]
        ),
    )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _run_tool(settings: StackSettings, main_class: str, args: list[str]) -> None:
    """Run a Kafka tool with its arguments in a private java @argfile.

    Passwords on a command line would show in every process listing; the
    java launcher reads the main class and its arguments from the file instead.
    """
    command = java_command(settings, main_class, *args)
    split = command.index(main_class)
    argfile = kafka_dir(settings) / f"args-{os.getpid()}"
    _write_private(argfile, "\n".join(f'"{arg}"' for arg in command[split:]) + "\n")
    try:
        done = subprocess.run(
            [*command[:split], f"@{argfile}"], capture_output=True, text=True, errors="replace"
        )
    finally:
        argfile.unlink(missing_ok=True)
    if done.returncode != 0:
        # What the tool said, so a failed `up` can be diagnosed from its error alone.
        said = _without_passwords((done.stderr or done.stdout or "")[-2000:], args)
        raise RuntimeError(f"{main_class} exited with {done.returncode}: {said.strip()}")


def _without_passwords(text: str, args: list[str]) -> str:
    for secret in re.findall(r"password=([^,\]\s]+)", " ".join(args)):
        text = text.replace(secret, "[redacted]")
    return text


def server_command(settings: StackSettings, properties: Path) -> list[str]:
    """The broker's command line."""
    return java_command(settings, "kafka.Kafka", str(properties))
