#!/bin/bash
# Single-node Kafka (KRaft) for deploy/compose.yaml, secured as the local stack
# (infra/kafka.py): SCRAM-SHA-512 on every listener, ACLs enforced, the admin a
# super user. SCRAM users are created when the storage is first formatted, from
# the compose secrets; the setup service then sets the services' ACLs.
set -euo pipefail
S=/run/secrets
props=/tmp/kafka/server.properties
mkdir -p /tmp/kafka && umask 077
jaas() {
  printf 'org.apache.kafka.common.security.scram.ScramLoginModule required username="nbembed-admin" password="%s";' \
    "$(cat "$S/kafka-admin-password")"
}
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=BROKER://:9092,CONTROLLER://:9093
advertised.listeners=BROKER://kafka:9092
inter.broker.listener.name=BROKER
controller.listener.names=CONTROLLER
listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=SCRAM-SHA-512
listener.name.broker.scram-sha-512.sasl.jaas.config=$(jaas)
listener.name.controller.scram-sha-512.sasl.jaas.config=$(jaas)
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:nbembed-admin
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
PROPS
scram=()
for user in admin gateway provisioner sync; do
  scram+=(--add-scram "SCRAM-SHA-512=[name=nbembed-$user,password=$(cat "$S/kafka-$user-password")]")
done
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "${KAFKA_CLUSTER_ID}" -c "$props" "${scram[@]}"
exec /opt/kafka/bin/kafka-server-start.sh "$props"
