"""A single-node KRaft Kafka broker from the Maven Central jars that install.sh fetched."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from infra.settings import StackSettings


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
    properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"listeners=PLAINTEXT://{broker},CONTROLLER://{controller}",
                f"advertised.listeners=PLAINTEXT://{broker}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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
        )
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


def format_storage_once(settings: StackSettings, properties: Path) -> bool:
    """Format the KRaft log dir on first start; True when it formatted now."""
    if (kafka_dir(settings) / "data" / "meta.properties").exists():
        return False
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run(
        java_command(
            settings,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(properties),
        ),
        check=True,
        capture_output=True,
    )
    return True


def server_command(settings: StackSettings, properties: Path) -> list[str]:
    """The broker's command line."""
    return java_command(settings, "kafka.Kafka", str(properties))
