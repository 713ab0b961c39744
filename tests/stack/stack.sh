#!/usr/bin/env bash
# Local test stack for changestream: Kafka (KRaft, single node), Apicurio Registry
# (Confluent-compatible API) and a private PostgreSQL cluster, all on 127.0.0.1 on
# free ports, with data in a fresh temp dir. No Docker. See tests/stack/README.md.
#
#   tests/stack/stack.sh up | down | status | stop-kafka | start-kafka
#
# `up` writes <repo>/.stack.env (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL,
# POSTGRES_DSN, DEBEZIUM_CONNECT_URL, STACK_DIR, ports); `down` stops everything and removes both.
#
# Independent instances (e.g. for tests that stop and restart a broker of their own):
#   CHANGESTREAM_STACK_ENV=/path/x.env   the instance's env file (default <repo>/.stack.env); each
#                                        env file is one stack with its own dir, ports and lock
#   CHANGESTREAM_STACK_SERVICES=kafka,registry   what `up` starts (default kafka,registry,postgres;
#                                        `debezium` adds Kafka Connect with Debezium's PostgreSQL
#                                        connector, and can be added to a running stack)
#   CHANGESTREAM_STACK_KAFKA_SECURITY=1  Kafka also gets SSL, SASL_SSL (SCRAM-SHA-512 and PLAIN)
#                                        and SASL_PLAINTEXT (PLAIN) listeners, a CA and users
#   CHANGESTREAM_STACK_KAFKA_ACL=1       with SECURITY=1: an ACL authorizer (StandardAuthorizer) and a
#                                        SCRAM super user `admin`; alice and bob may do only what
#                                        ACLs allow (PLAINTEXT, i.e. ANONYMOUS, stays a super user)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$SCRIPT_DIR/../.." && pwd))
DEFAULT_ENV_FILE=$(realpath -m -- "$REPO_ROOT/.stack.env")
ENV_FILE=$(realpath -m -- "${CHANGESTREAM_STACK_ENV:-$DEFAULT_ENV_FILE}")
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/changestream"

KAFKA_VERSION="${STACK_KAFKA_VERSION:-4.3.1}"
LOG4J_VERSION="${STACK_LOG4J_VERSION:-2.25.5}"
APICURIO_VERSION="${STACK_APICURIO_VERSION:-3.3.3}"
DEBEZIUM_VERSION="${STACK_DEBEZIUM_VERSION:-3.6.1.Final}"
APICURIO_CONVERTER_VERSION="${STACK_APICURIO_CONVERTER_VERSION:-2.6.13.Final}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
KAFKA_LIB="$CACHE_DIR/kafka-$KAFKA_VERSION/lib"
APICURIO_HOME="$CACHE_DIR/apicurio-$APICURIO_VERSION"
# Kafka Connect's worker jars (lib/) and its plugin.path (plugins/: the connector, the converter)
DEBEZIUM_HOME="$CACHE_DIR/debezium-$DEBEZIUM_VERSION-connect-$KAFKA_VERSION-apicurio-$APICURIO_CONVERTER_VERSION"
KAFKA_JAVA="${STACK_KAFKA_JAVA:-java}"   # Java 17+ (the default `java`)
DEFAULT_KAFKA_LIB="$KAFKA_LIB" DEFAULT_KAFKA_JAVA="$KAFKA_JAVA"

KAFKA_TIMEOUT="${STACK_KAFKA_TIMEOUT:-120}"        # seconds
APICURIO_TIMEOUT="${STACK_APICURIO_TIMEOUT:-180}"
POSTGRES_TIMEOUT="${STACK_POSTGRES_TIMEOUT:-60}"
DEBEZIUM_TIMEOUT="${STACK_DEBEZIUM_TIMEOUT:-180}"
STOP_TIMEOUT=60
TMP_PREFIX="/tmp/changestream-stack."

UTIL=("python3" "$SCRIPT_DIR/stackutil.py")

# State (filled by up, or read from .stack.env)
STACK_DIR=""
KAFKA_PORT="" KAFKA_CONTROLLER_PORT="" APICURIO_PORT="" APICURIO_MGMT_PORT="" POSTGRES_PORT=""
DEBEZIUM_CONNECT_PORT=""
KAFKA_SSL_PORT="" KAFKA_SASL_SSL_PORT="" KAFKA_SASL_PLAINTEXT_PORT="" KAFKA_OAUTHBEARER_PORT=""
JAVA21="" PG_BIN=""
# What this instance runs: from the environment at `up`, afterwards from $STACK_DIR/state.env
DEFAULT_SERVICES="kafka,registry,postgres"
ALL_SERVICES="$DEFAULT_SERVICES,debezium"
SERVICES="${CHANGESTREAM_STACK_SERVICES:-$DEFAULT_SERVICES}"
SECURITY="${CHANGESTREAM_STACK_KAFKA_SECURITY:-0}"
ACL="${CHANGESTREAM_STACK_KAFKA_ACL:-0}"
SCRAM_USER="alice" PLAIN_USER="bob" SCRAM_PASSWORD="" PLAIN_PASSWORD=""
ADMIN_USER="admin" ADMIN_PASSWORD=""

log() { echo "stack: $*"; }
err() { echo "stack: ERROR: $*" >&2; }
die() { err "$*"; exit 1; }
now_ms() { date +%s%3N; }
has() { [[ ",$SERVICES," == *",$1,"* ]]; }  # has SERVICE: this instance runs it

check_services() {
  local s
  [[ -n "$SERVICES" ]] || die "CHANGESTREAM_STACK_SERVICES is empty (choose from $ALL_SERVICES)"
  for s in ${SERVICES//,/ }; do
    case "$s" in
      kafka | registry | postgres | debezium) ;;
      *) die "unknown service '$s' in CHANGESTREAM_STACK_SERVICES (choose from $ALL_SERVICES)" ;;
    esac
  done
  [[ "$SECURITY" == 0 || "$SECURITY" == 1 ]] || die "CHANGESTREAM_STACK_KAFKA_SECURITY must be 0 or 1"
  [[ "$SECURITY" == 0 ]] || has kafka || die "CHANGESTREAM_STACK_KAFKA_SECURITY=1 needs the kafka service"
  [[ "$ACL" == 0 || "$ACL" == 1 ]] || die "CHANGESTREAM_STACK_KAFKA_ACL must be 0 or 1"
  [[ "$ACL" == 0 || "$SECURITY" == 1 ]] || die "CHANGESTREAM_STACK_KAFKA_ACL=1 needs CHANGESTREAM_STACK_KAFKA_SECURITY=1 (users to authorize)"
  if has debezium; then
    has kafka && has registry && has postgres || die "the debezium service needs kafka, registry and postgres"
    [[ "$SECURITY" == 0 ]] || die "the debezium service talks PLAINTEXT to Kafka: it cannot run with CHANGESTREAM_STACK_KAFKA_SECURITY=1"
  fi
}
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100)); }

# ---------------------------------------------------------------- prerequisites

java_major() {  # java_major /path/to/java -> 17, 21, 25, ...
  "$1" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); m = (v[1] == "1") ? v[2] : v[1];
                                               sub(/[^0-9].*/, "", m); print m; exit }'
}

find_java21() {
  local j m best="" best_m=0
  if [[ -n "${JAVA21_HOME:-}" ]]; then
    j="$JAVA21_HOME/bin/java"
    [[ -x "$j" ]] || die "JAVA21_HOME=$JAVA21_HOME has no bin/java"
    m=$(java_major "$j")
    [[ "${m:-0}" -ge 21 ]] || die "JAVA21_HOME=$JAVA21_HOME is Java ${m:-?}; Apicurio $APICURIO_VERSION needs Java 21+"
    JAVA21="$j"; return
  fi
  for j in /usr/lib/jvm/*/bin/java; do
    [[ -x "$j" ]] || continue
    m=$(java_major "$j")
    if [[ "${m:-0}" -ge 21 && "${m:-0}" -gt "$best_m" ]]; then best="$j"; best_m="$m"; fi
  done
  [[ -n "$best" ]] || die "no JDK >= 21 found under /usr/lib/jvm (Apicurio $APICURIO_VERSION needs Java 21+): install one (e.g. temurin-25-jdk or openjdk-21-jdk-headless) or set JAVA21_HOME"
  JAVA21="$best"
}

find_pg_bin() {
  if [[ -n "${STACK_PG_BIN:-}" ]]; then PG_BIN="$STACK_PG_BIN"; else
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [[ -n "$PG_BIN" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" ]] ||
    die "PostgreSQL server not found under /usr/lib/postgresql/<ver>/bin: apt-get install postgresql-15 (or set STACK_PG_BIN)"
}

check_prereqs() {  # check_prereqs [kafka-only]
  local c m
  command -v python3 >/dev/null || die "python3 not found: apt-get install python3"
  for c in setsid flock; do command -v "$c" >/dev/null || die "$c not found: apt-get install util-linux"; done
  command -v "$KAFKA_JAVA" >/dev/null || die "java not found: apt-get install openjdk-17-jre-headless"
  m=$(java_major "$(command -v "$KAFKA_JAVA")")
  [[ "${m:-0}" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, but '$KAFKA_JAVA' is Java ${m:-?}"
  [[ "${1:-}" == kafka-only ]] && return
  if [[ ! -d "$KAFKA_LIB" ]] || { has registry && [[ ! -d "$APICURIO_HOME" ]]; } ||
    { has debezium && [[ ! -d "$DEBEZIUM_HOME" ]]; }; then
    command -v mvn >/dev/null || die "mvn not found: apt-get install maven"
  fi
  if [[ "$SECURITY" == 1 ]]; then
    command -v openssl >/dev/null || die "openssl not found: apt-get install openssl"
  fi
  if has registry; then find_java21; fi
  has postgres || return 0
  find_pg_bin
  if [[ $EUID -eq 0 ]]; then
    command -v runuser >/dev/null || die "runuser not found: apt-get install util-linux"
    id postgres >/dev/null 2>&1 || die "user 'postgres' missing (root cannot run postgres): apt-get install postgresql-15"
  fi
}

as_pg() {  # run a PostgreSQL binary as the postgres user (root cannot run postgres)
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ------------------------------------------------------------------- caches

mvn_or_die() {  # mvn_or_die LOG args...
  local logf="$1"; shift
  if ! mvn -B -q -Dstyle.color=never "$@" >"$logf" 2>&1; then
    err "Maven failed: mvn -B -q $*"
    tail -n 40 "$logf" >&2
    die "see $logf"
  fi
}

# download_lock: one first-run download at a time across instances (fd 8, held until exit)
download_lock() {
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/download.lock"
  flock -w 1800 8 || die "another stack.sh is downloading (lock $CACHE_DIR/download.lock)"
}

ensure_kafka_lib() {
  [[ -d "$KAFKA_LIB" ]] && return
  download_lock
  [[ -d "$KAFKA_LIB" ]] && return
  mkdir -p "$CACHE_DIR"
  log "downloading Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIB (first run only, can take minutes)"
  local tmp="$KAFKA_LIB.partial"
  rm -rf "$tmp"
  mvn_or_die "$CACHE_DIR/mvn-kafka.log" -f "$SCRIPT_DIR/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION"
  ls "$tmp"/kafka_2.13-*.jar "$tmp"/log4j-slf4j-impl-*.jar >/dev/null 2>&1 ||
    die "Kafka lib dir $tmp is incomplete (see $CACHE_DIR/mvn-kafka.log)"
  mv "$tmp" "$KAFKA_LIB"
}

ensure_apicurio() {
  [[ -d "$APICURIO_HOME" ]] && return
  download_lock
  [[ -d "$APICURIO_HOME" ]] && return
  mkdir -p "$CACHE_DIR"
  log "downloading Apicurio Registry $APICURIO_VERSION (~160 MB) with Maven into $APICURIO_HOME (first run only, can take minutes)"
  local tmp="$APICURIO_HOME.partial" work
  rm -rf "$tmp"
  work=$(mktemp -d "$CACHE_DIR/mvn-work.XXXXXX")   # unpack leaves plugin markers in the cwd
  (cd "$work" && mvn_or_die "$CACHE_DIR/mvn-apicurio.log" "$DEP_PLUGIN:unpack" \
     -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
     -DoutputDirectory="$tmp" -DmarkersDirectory="$work/markers")
  rm -rf "$work"
  [[ -f "$tmp/quarkus-run.jar" ]] || die "no quarkus-run.jar in the Apicurio archive unpacked at $tmp"
  mv "$tmp" "$APICURIO_HOME"
}

# ensure_debezium: Connect's worker jars into lib/, the Debezium PostgreSQL connector and
# Apicurio's converter into plugins/ (a directory each), by Maven from Central only
ensure_debezium() {
  [[ -d "$DEBEZIUM_HOME" ]] && return
  download_lock
  [[ -d "$DEBEZIUM_HOME" ]] && return
  mkdir -p "$CACHE_DIR"
  log "downloading Kafka Connect $KAFKA_VERSION, Debezium $DEBEZIUM_VERSION and Apicurio's converter $APICURIO_CONVERTER_VERSION with Maven into $DEBEZIUM_HOME (first run only)"
  local tmp="$DEBEZIUM_HOME.partial" profile dir
  rm -rf "$tmp"
  for profile in worker:lib connector:plugins/debezium-connector-postgres converter:plugins/apicurio-converter; do
    dir="$tmp/${profile#*:}"
    # Plugins leave out Kafka's and SLF4J's jars (the worker's are the ones a plugin sees
    # anyway); the connector also leaves out Jackson's core, as Debezium's own plugin archive
    # does: connect-json's JsonConverter, which Debezium calls, takes the worker's JsonNode.
    local exclude=()
    case "${profile%%:*}" in
      connector) exclude=(-DexcludeGroupIds=org.apache.kafka,org.slf4j,com.fasterxml.jackson.core) ;;
      converter) exclude=(-DexcludeGroupIds=org.apache.kafka,org.slf4j) ;;
    esac
    mvn_or_die "$CACHE_DIR/mvn-debezium.log" -s "$SCRIPT_DIR/debezium-maven-settings.xml" \
      -f "$SCRIPT_DIR/debezium-pom.xml" -P "${profile%%:*}" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$dir" "${exclude[@]+"${exclude[@]}"}" \
      -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
      -Ddebezium.version="$DEBEZIUM_VERSION" -Dapicurio.converter.version="$APICURIO_CONVERTER_VERSION"
  done
  ls "$tmp"/lib/connect-runtime-*.jar "$tmp"/plugins/debezium-connector-postgres/debezium-connector-postgres-*.jar \
    "$tmp"/plugins/apicurio-converter/apicurio-registry-utils-converter-*.jar >/dev/null 2>&1 ||
    die "Debezium dir $tmp is incomplete (see $CACHE_DIR/mvn-debezium.log)"
  mv "$tmp" "$DEBEZIUM_HOME"
}

# --------------------------------------------------------------- processes

# launch PIDFILE LOGFILE CWD cmd...: start cmd detached (own session, stdin closed,
# output appended to LOGFILE); its PID is written to PIDFILE. fds 8, 9 (our locks) are not inherited.
launch() {
  local pidfile="$1" logfile="$2" cwd="$3"; shift 3
  rm -f "$pidfile"
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  ( cd "$cwd" && exec setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" ) \
    </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  local i
  for i in $(seq 50); do [[ -s "$pidfile" ]] && return 0; sleep 0.1; done
  return 1
}

# is_ours PID: PID is alive and is a JVM of this stack (guards against PID reuse)
is_ours() {
  [[ -n "${1:-}" && -r "/proc/$1/cmdline" ]] || return 1
  local c; c=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $'\n'"$c"$'\n' == *$'\n'"-Dchangestream.stack.dir=$STACK_DIR"$'\n'* ]]
}

read_pid() { [[ -s "$1" ]] && cat "$1" || true; }

# stop_jvms PIDFILE...: SIGTERM all, wait up to STOP_TIMEOUT, then SIGKILL
stop_jvms() {
  local f pid pids=() i
  for f in "$@"; do
    pid=$(read_pid "$f")
    if is_ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do is_ours "$pid" && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    if is_ours "$pid"; then
      err "PID $pid did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for f in "$@"; do rm -f "$f"; done
}

# -------------------------------------------------------------------- kafka

kafka_dir() { echo "$STACK_DIR/kafka"; }
kafka_log() { echo "$STACK_DIR/kafka/server.log"; }
kafka_pidfile() { echo "$STACK_DIR/kafka/kafka.pid"; }

kafka_tls_dir() { echo "$STACK_DIR/kafka/tls"; }

# kafka_certs: with the openssl CLI, a CA, a broker certificate it signs (SAN IP:127.0.0.1 and
# DNS:localhost) and an unrelated CA, all PEM; the broker's PEM keystore is its unencrypted
# PKCS#8 key followed by its certificate.
kafka_certs() {
  local t; t=$(kafka_tls_dir)
  mkdir -p "$t"
  (
    set -euo pipefail
    cd "$t"
    umask 077
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    local ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign")
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 \
      -subj "/CN=changestream stack CA" "${ca_ext[@]}"
    openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.pem -days 30 \
      -subj "/CN=changestream unrelated CA" "${ca_ext[@]}"
    openssl req "${ec[@]}" -keyout broker.key -out broker.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile broker.ext -out broker.pem
    cat broker.key broker.pem >broker-keystore.pem
    chmod 644 ca.pem other-ca.pem broker.pem
  ) >"$t/openssl.log" 2>&1 || fail_service kafka "$t/openssl.log" "certificate generation (openssl) failed"
}

kafka_prepare() {  # write server.properties and format the storage (once per stack)
  local d; d=$(kafka_dir)
  mkdir -p "$d/data"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  # SASL/OAUTHBEARER on every stack (no secret to keep: Kafka's unsecured JWT validator)
  if [[ -n "$KAFKA_OAUTHBEARER_PORT" ]]; then
    listeners+=",OAUTHBEARER://127.0.0.1:$KAFKA_OAUTHBEARER_PORT"
    protocols+=",OAUTHBEARER:SASL_PLAINTEXT"
  fi
  if [[ "$SECURITY" == 1 ]]; then
    listeners+=",SSL://127.0.0.1:$KAFKA_SSL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT"
    protocols+=",SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  (umask 077 && : >"$d/server.properties")   # it may hold the PLAIN password
  cat >"$d/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$d/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  if [[ -n "$KAFKA_OAUTHBEARER_PORT" ]]; then
    # No server callback handler: Kafka validates tokens with its unsecured JWT validator
    # (alg "none", principal from "sub", "exp" enforced). A session lasts as long as its
    # token, so clients re-authenticate with a fresh one (KIP-368).
    cat >>"$d/server.properties" <<EOF
listener.name.oauthbearer.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauthbearer.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
EOF
  fi
  local scram=()
  if [[ "$SECURITY" == 1 ]]; then
    kafka_certs
    local plain_jaas="org.apache.kafka.common.security.plain.PlainLoginModule required user_$PLAIN_USER=\"$PLAIN_PASSWORD\";"
    cat >>"$d/server.properties" <<EOF
# TLS with a PEM keystore; SASL/SCRAM-SHA-512 (users in the metadata log, added at format
# time) and SASL/PLAIN (users in the JAAS config)
ssl.keystore.type=PEM
ssl.keystore.location=$(kafka_tls_dir)/broker-keystore.pem
ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=$plain_jaas
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=$plain_jaas
EOF
    scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]")
  fi
  if [[ "$ACL" == 1 ]]; then
    # KRaft's ACL authorizer (on the controller and the broker: they share this file). The
    # controller and inter-broker listeners are PLAINTEXT, whose principal is ANONYMOUS, so
    # ANONYMOUS must be a super user; `admin` (SCRAM) is the one to manage ACLs with over SASL.
    cat >>"$d/server.properties" <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$ADMIN_USER
allow.everyone.if.no.acl.found=false
EOF
    scram+=(--add-scram "SCRAM-SHA-512=[name=$ADMIN_USER,password=$ADMIN_PASSWORD]")
  fi
  local cid; cid=$("${UTIL[@]}" cluster-id)
  if ! "$KAFKA_JAVA" -Xmx256m -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format \
       -t "$cid" -c "$d/server.properties" "${scram[@]+"${scram[@]}"}" >"$d/format.log" 2>&1; then
    fail_service kafka "$d/format.log" "storage format (kafka.tools.StorageTool) failed"
  fi
}

kafka_launch() {
  local d; d=$(kafka_dir)
  mkdir -p "$d/tmp"
  launch "$(kafka_pidfile)" "$(kafka_log)" "$d" \
    "$KAFKA_JAVA" -Xms256m -Xmx768m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 ${STACK_KAFKA_JVM_OPTS:-} \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
    -Djava.awt.headless=true -Dchangestream.stack.dir="$STACK_DIR" -Djava.io.tmpdir="$d/tmp" \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka-log4j2.properties" -Dkafka.logs.dir="$d" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$d/server.properties" ||
    fail_service kafka "$(kafka_log)" "did not start (no PID)"
}

kafka_ready() { "${UTIL[@]}" kafka 127.0.0.1 "$KAFKA_PORT" 2>/dev/null; }
kafka_alive() { is_ours "$(read_pid "$(kafka_pidfile)")"; }
kafka_stop() { stop_jvms "$(kafka_pidfile)"; }

# ----------------------------------------------------------------- apicurio

apicurio_log() { echo "$STACK_DIR/apicurio/apicurio.log"; }
apicurio_pidfile() { echo "$STACK_DIR/apicurio/apicurio.pid"; }

apicurio_launch() {
  local d="$STACK_DIR/apicurio"
  mkdir -p "$d/tmp"
  launch "$(apicurio_pidfile)" "$(apicurio_log)" "$d" \
    "$JAVA21" -Xmx512m -Dchangestream.stack.dir="$STACK_DIR" \
    -Djava.io.tmpdir="$d/tmp" -Dvertx.cacheDirBase="$d/tmp/vertx-cache" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$APICURIO_PORT" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$APICURIO_MGMT_PORT" \
    -jar "$APICURIO_HOME/quarkus-run.jar" ||
    fail_service apicurio "$(apicurio_log)" "did not start (no PID)"
}

apicurio_ready() { "${UTIL[@]}" http "http://127.0.0.1:$APICURIO_PORT/apis/ccompat/v7/subjects"; }
apicurio_alive() { is_ours "$(read_pid "$(apicurio_pidfile)")"; }

# ----------------------------------------------------------------- debezium

debezium_dir() { echo "$STACK_DIR/debezium"; }
debezium_log() { echo "$STACK_DIR/debezium/connect.log"; }
debezium_pidfile() { echo "$STACK_DIR/debezium/connect.pid"; }

# Kafka Connect, standalone, with no connector: tests register theirs through the REST API.
# Offsets are in a file of this stack; each connector has its own slot and topic prefix.
debezium_launch() {
  local d; d=$(debezium_dir)
  mkdir -p "$d/tmp"
  cat >"$d/worker.properties" <<EOF
bootstrap.servers=127.0.0.1:$KAFKA_PORT
listeners=http://127.0.0.1:$DEBEZIUM_CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$DEBEZIUM_CONNECT_PORT
# connectors name their own (Avro) converters; these are only the worker's defaults
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
offset.storage.file.filename=$d/connect.offsets
offset.flush.interval.ms=1000
plugin.path=$DEBEZIUM_HOME/plugins
# Apicurio's 2.6 converter has no service manifest: it is found by scanning
plugin.discovery=hybrid_warn
EOF
  launch "$(debezium_pidfile)" "$(debezium_log)" "$d" \
    "$KAFKA_JAVA" -Xms128m -Xmx768m -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dchangestream.stack.dir="$STACK_DIR" -Djava.io.tmpdir="$d/tmp" \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka-log4j2.properties" -Dkafka.logs.dir="$d" \
    -cp "$DEBEZIUM_HOME/lib/*" org.apache.kafka.connect.cli.ConnectStandalone "$d/worker.properties" ||
    fail_service debezium "$(debezium_log)" "did not start (no PID)"
}

debezium_ready() { "${UTIL[@]}" http "http://127.0.0.1:$DEBEZIUM_CONNECT_PORT/connectors"; }
debezium_alive() { is_ours "$(read_pid "$(debezium_pidfile)")"; }

# ----------------------------------------------------------------- postgres

pg_data() { echo "$STACK_DIR/pg/data"; }
pg_log() { echo "$STACK_DIR/pg/postgres.log"; }

postgres_start() {  # synchronous: initdb + pg_ctl start -w
  local d="$STACK_DIR/pg"
  mkdir -p "$d"
  [[ $EUID -eq 0 ]] && chown postgres:postgres "$d"
  if ! (cd "$d" && as_pg "$PG_BIN/initdb" -D "$(pg_data)" --auth=trust -E UTF8 --locale=C.UTF-8 \
          -U postgres --no-sync >"$d/initdb.log" 2>&1); then
    fail_service postgres "$d/initdb.log" "initdb failed"
  fi
  if ! (cd "$d" && as_pg "$PG_BIN/pg_ctl" -D "$(pg_data)" -l "$(pg_log)" -w -t "$POSTGRES_TIMEOUT" \
          -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -k $(pg_data) -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10" \
          start >"$d/pg_ctl.log" 2>&1 8>&- 9>&-); then
    cat "$d/pg_ctl.log" >>"$(pg_log)" 2>/dev/null || true
    fail_service postgres "$(pg_log)" "pg_ctl start failed or timed out after ${POSTGRES_TIMEOUT}s"
  fi
}

postgres_ready() { "$PG_BIN/pg_isready" -q -t 3 -h 127.0.0.1 -p "$POSTGRES_PORT" >/dev/null 2>&1; }

postgres_stop() {
  [[ -n "$STACK_DIR" && -f "$(pg_data)/postmaster.pid" ]] || return 0
  [[ -n "$PG_BIN" ]] || find_pg_bin
  (cd "$STACK_DIR" && as_pg "$PG_BIN/pg_ctl" -D "$(pg_data)" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1) || {
    err "pg_ctl stop failed; killing the postmaster"
    local pid; pid=$(head -n 1 "$(pg_data)/postmaster.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  }
}

# -------------------------------------------------------------- whole stack

load_env() {
  [[ -f "$ENV_FILE" ]] || return 1
  local k v
  while IFS='=' read -r k v; do
    case "$k" in
      STACK_DIR | KAFKA_PORT | KAFKA_CONTROLLER_PORT | APICURIO_PORT | APICURIO_MGMT_PORT | POSTGRES_PORT | \
        DEBEZIUM_CONNECT_PORT | KAFKA_SSL_PORT | KAFKA_SASL_SSL_PORT | KAFKA_SASL_PLAINTEXT_PORT | \
        KAFKA_OAUTHBEARER_PORT)
        printf -v "$k" '%s' "$v" ;;
    esac
  done <"$ENV_FILE"
  [[ -n "$STACK_DIR" ]] || return 1
  # what this stack was started with (so start-kafka/down use the same jars, binaries and
  # services; a state.env without SERVICES is from a stack that ran all three)
  SERVICES="$DEFAULT_SERVICES" SECURITY=0 ACL=0
  if [[ -f "$STACK_DIR/state.env" ]]; then
    while IFS='=' read -r k v; do
      case "$k" in KAFKA_LIB | KAFKA_JAVA | PG_BIN | SERVICES | SECURITY | ACL) printf -v "$k" '%s' "$v" ;; esac
    done <"$STACK_DIR/state.env"
  fi
  return 0
}

write_state() {
  printf 'KAFKA_LIB=%s\nKAFKA_JAVA=%s\nPG_BIN=%s\nSERVICES=%s\nSECURITY=%s\nACL=%s\n' "$KAFKA_LIB" \
    "$(command -v "$KAFKA_JAVA")" "$PG_BIN" "$SERVICES" "$SECURITY" "$ACL" >"$STACK_DIR/state.env"
}

write_env() {  # the keys of the services this instance runs (all three: the original layout)
  mkdir -p "$(dirname "$ENV_FILE")"
  (umask 077 && : >"$ENV_FILE.tmp")   # it may hold passwords
  {
    if has kafka; then echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"; fi
    if has registry; then
      echo "SCHEMA_REGISTRY_URL=http://127.0.0.1:$APICURIO_PORT/apis/ccompat/v7"
      echo "APICURIO_REGISTRY_URL=http://127.0.0.1:$APICURIO_PORT/apis/registry/v3"
    fi
    if has postgres; then echo "POSTGRES_DSN=postgresql://postgres@127.0.0.1:$POSTGRES_PORT/postgres"; fi
    if has debezium; then echo "DEBEZIUM_CONNECT_URL=http://127.0.0.1:$DEBEZIUM_CONNECT_PORT"; fi
    echo "STACK_DIR=$STACK_DIR"
    if has kafka; then printf 'KAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; fi
    if has kafka && [[ -n "$KAFKA_OAUTHBEARER_PORT" ]]; then
      printf 'KAFKA_OAUTHBEARER_BOOTSTRAP_SERVERS=127.0.0.1:%s\nKAFKA_OAUTHBEARER_PORT=%s\n' \
        "$KAFKA_OAUTHBEARER_PORT" "$KAFKA_OAUTHBEARER_PORT"
    fi
    if has registry; then printf 'APICURIO_PORT=%s\nAPICURIO_MGMT_PORT=%s\n' "$APICURIO_PORT" "$APICURIO_MGMT_PORT"; fi
    if has postgres; then echo "POSTGRES_PORT=$POSTGRES_PORT"; fi
    if has debezium; then echo "DEBEZIUM_CONNECT_PORT=$DEBEZIUM_CONNECT_PORT"; fi
    if [[ "$SECURITY" == 1 ]]; then
      cat <<EOF
KAFKA_SSL_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SSL_PORT
KAFKA_SASL_SSL_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_SSL_PORT
KAFKA_SASL_PLAINTEXT_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT
KAFKA_SSL_PORT=$KAFKA_SSL_PORT
KAFKA_SASL_SSL_PORT=$KAFKA_SASL_SSL_PORT
KAFKA_SASL_PLAINTEXT_PORT=$KAFKA_SASL_PLAINTEXT_PORT
KAFKA_SSL_CA_LOCATION=$(kafka_tls_dir)/ca.pem
KAFKA_SSL_OTHER_CA_LOCATION=$(kafka_tls_dir)/other-ca.pem
KAFKA_SCRAM_MECHANISM=SCRAM-SHA-512
KAFKA_SCRAM_USERNAME=$SCRAM_USER
KAFKA_SCRAM_PASSWORD=$SCRAM_PASSWORD
KAFKA_PLAIN_USERNAME=$PLAIN_USER
KAFKA_PLAIN_PASSWORD=$PLAIN_PASSWORD
EOF
    fi
    if [[ "$ACL" == 1 ]]; then
      printf 'KAFKA_ACL=1\nKAFKA_ADMIN_USERNAME=%s\nKAFKA_ADMIN_PASSWORD=%s\n' "$ADMIN_USER" "$ADMIN_PASSWORD"
    fi
  } >>"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

all_answer() {
  if has postgres && [[ -z "$PG_BIN" ]]; then find_pg_bin; fi
  { ! has kafka || kafka_ready; } && { ! has registry || apicurio_ready; } &&
    { ! has postgres || postgres_ready; } && { ! has debezium || debezium_ready; }
}

stop_all() {  # stop whatever runs under STACK_DIR
  [[ -n "$STACK_DIR" && -d "$STACK_DIR" ]] || return 0
  stop_jvms "$(debezium_pidfile)"   # first: it would only log errors without Kafka
  stop_jvms "$(kafka_pidfile)" "$(apicurio_pidfile)"
  postgres_stop
}

remove_stack_dir() {
  [[ -n "$STACK_DIR" && "$STACK_DIR" == "$TMP_PREFIX"* && -d "$STACK_DIR" ]] && rm -rf "$STACK_DIR"
  return 0
}

UP_MODE=""   # "up" while `up` runs: failures then tear down the whole stack

# fail_service NAME LOG REASON: report, show the log tail, clean up, exit 1
fail_service() {
  local name="$1" logf="$2" reason="$3"
  err "$name: $reason"
  err "$name log: $logf"
  if [[ -s "$logf" ]]; then
    echo "----- last 30 lines of $logf -----" >&2
    tail -n 30 "$logf" >&2
    echo "-----" >&2
  else
    err "($logf is empty or missing)"
  fi
  if [[ "$UP_MODE" == add ]]; then
    err "stopping Kafka Connect (the rest of the stack keeps running)"
    stop_jvms "$(debezium_pidfile)"
  fi
  if [[ "$UP_MODE" == up ]]; then
    err "stopping the services that were started"
    trap - EXIT INT TERM
    stop_all
    rm -rf "$STACK_DIR/kafka/data" "$STACK_DIR/pg/data" "$STACK_DIR/apicurio/tmp" "$STACK_DIR/debezium/tmp"
    err "logs kept in $STACK_DIR (delete it when done)"
  fi
  exit 1
}

# wait_ready TIMEOUT START_MS svc...: wait until every svc answers; svc_ready / svc_alive functions
wait_ready() {
  local timeout="$1" start="$2" s; shift 2
  local pending=("$@")
  while ((${#pending[@]})); do
    local still=()
    for s in "${pending[@]}"; do
      if "${s}_ready"; then
        READY_AT[$s]=$(secs_since "${START[$s]:-$start}")
      elif ! "${s}_alive"; then
        fail_service "$s" "$("${s}_log")" "process exited during startup"
      elif (($(now_ms) - ${START[$s]:-$start} > ${TIMEOUT[$s]:-$timeout} * 1000)); then
        fail_service "$s" "$("${s}_log")" "not ready within ${TIMEOUT[$s]:-$timeout}s"
      else
        still+=("$s")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]})) && sleep 0.5
  done
  return 0
}

declare -A START READY_AT TIMEOUT
TIMEOUT[kafka]=$KAFKA_TIMEOUT
TIMEOUT[apicurio]=$APICURIO_TIMEOUT
TIMEOUT[debezium]=$DEBEZIUM_TIMEOUT

lock() {  # one lock per instance: stack.lock for the default, one named by the env file otherwise
  mkdir -p "$CACHE_DIR"
  local f="$CACHE_DIR/stack.lock"
  if [[ "$ENV_FILE" != "$DEFAULT_ENV_FILE" ]]; then
    f="$CACHE_DIR/stack-$(printf '%s' "$ENV_FILE" | cksum | cut -d' ' -f1).lock"
  fi
  exec 9>"$f"
  flock -w 900 9 || die "another stack.sh is running (lock $f)"
}

on_up_exit() {  # EXIT trap while `up` runs: an unexpected error or an interrupt
  local rc=$?
  trap - EXIT INT TERM
  err "up aborted (exit $rc); stopping the services that were started"
  stop_all
  remove_stack_dir
  exit $((rc == 0 ? 1 : rc))
}

# ------------------------------------------------------------------ commands

# debezium_start: start Connect on a stack whose Kafka is up (a free port unless it has one)
debezium_start() {
  [[ -n "$DEBEZIUM_CONNECT_PORT" ]] || read -r DEBEZIUM_CONNECT_PORT < <("${UTIL[@]}" free-ports 1)
  stop_jvms "$(debezium_pidfile)"   # a hung leftover, if any
  START[debezium]=$(now_ms)
  debezium_launch
  wait_ready "$DEBEZIUM_TIMEOUT" "${START[debezium]}" debezium
}

# up on a running stack: start (or restart) Connect if asked for or recorded but not answering,
# leaving the other services, and the tests using them, alone
up_running_stack() {
  local wanted="${CHANGESTREAM_STACK_SERVICES:-$DEFAULT_SERVICES}"
  if [[ ",$wanted," == *",debezium,"* ]] && ! has debezium; then SERVICES="$SERVICES,debezium"; fi
  if ! has debezium || { debezium_alive && debezium_ready; }; then
    log "stack already up ($ENV_FILE)"
    return 0
  fi
  check_services
  check_prereqs
  ensure_debezium
  UP_MODE=add
  debezium_start
  UP_MODE=""
  write_state
  write_env
  log "debezium  http://127.0.0.1:$DEBEZIUM_CONNECT_PORT  ready in ${READY_AT[debezium]} (added to $ENV_FILE)"
}

cmd_up() {
  lock
  if load_env; then
    if (SERVICES="${SERVICES//,debezium/}" && all_answer); then up_running_stack; return; fi
    log "stale $ENV_FILE: services do not answer; cleaning up and starting fresh"
    stop_all
    remove_stack_dir
    rm -f "$ENV_FILE"
    STACK_DIR="" KAFKA_LIB="$DEFAULT_KAFKA_LIB" KAFKA_JAVA="$DEFAULT_KAFKA_JAVA" PG_BIN=""
  fi
  SERVICES="${CHANGESTREAM_STACK_SERVICES:-$DEFAULT_SERVICES}"
  SECURITY="${CHANGESTREAM_STACK_KAFKA_SECURITY:-0}"
  ACL="${CHANGESTREAM_STACK_KAFKA_ACL:-0}"
  check_services
  check_prereqs
  ensure_kafka_lib
  if has registry; then ensure_apicurio; fi
  if has debezium; then ensure_debezium; fi

  local t0; t0=$(now_ms)
  read -r KAFKA_PORT KAFKA_CONTROLLER_PORT APICURIO_PORT APICURIO_MGMT_PORT POSTGRES_PORT \
    KAFKA_SSL_PORT KAFKA_SASL_SSL_PORT KAFKA_SASL_PLAINTEXT_PORT DEBEZIUM_CONNECT_PORT \
    KAFKA_OAUTHBEARER_PORT < <("${UTIL[@]}" free-ports 10)
  if [[ "$SECURITY" == 1 ]]; then
    SCRAM_PASSWORD="scram-pw-$(openssl rand -hex 12)" PLAIN_PASSWORD="plain-pw-$(openssl rand -hex 12)"
  fi
  if [[ "$ACL" == 1 ]]; then ADMIN_PASSWORD="admin-pw-$(openssl rand -hex 12)"; fi
  STACK_DIR=$(mktemp -d "${TMP_PREFIX}XXXXXX")
  chmod 755 "$STACK_DIR"   # the postgres user must traverse it
  UP_MODE=up
  trap on_up_exit EXIT
  trap 'exit 130' INT TERM
  write_state

  local waiting=()
  if has kafka; then kafka_prepare; START[kafka]=$(now_ms); kafka_launch; waiting+=(kafka); fi
  if has registry; then START[apicurio]=$(now_ms); apicurio_launch; waiting+=(apicurio); fi
  if has postgres; then
    START[postgres]=$(now_ms); postgres_start
    READY_AT[postgres]=$(secs_since "${START[postgres]}")
  fi
  wait_ready 0 "$t0" "${waiting[@]+"${waiting[@]}"}"
  # Connect exits if Kafka does not answer when it starts
  if has debezium; then debezium_start; fi

  write_env
  trap - EXIT INT TERM
  UP_MODE=""
  if has kafka; then
    log "kafka     127.0.0.1:$KAFKA_PORT  ready in ${READY_AT[kafka]}; SASL_PLAINTEXT (OAUTHBEARER) 127.0.0.1:$KAFKA_OAUTHBEARER_PORT"
  fi
  if [[ "$SECURITY" == 1 ]]; then
    log "kafka     SSL 127.0.0.1:$KAFKA_SSL_PORT, SASL_SSL 127.0.0.1:$KAFKA_SASL_SSL_PORT (SCRAM-SHA-512, PLAIN), SASL_PLAINTEXT 127.0.0.1:$KAFKA_SASL_PLAINTEXT_PORT (PLAIN); CA $(kafka_tls_dir)/ca.pem"
  fi
  if [[ "$ACL" == 1 ]]; then
    log "kafka     ACLs enforced (StandardAuthorizer); super users: $ADMIN_USER (SCRAM-SHA-512), ANONYMOUS (PLAINTEXT)"
  fi
  if has registry; then
    log "registry  http://127.0.0.1:$APICURIO_PORT/apis/ccompat/v7  ready in ${READY_AT[apicurio]} (Java $(java_major "$JAVA21"))"
  fi
  if has postgres; then
    log "postgres  127.0.0.1:$POSTGRES_PORT  ready in ${READY_AT[postgres]} ($(basename "$(dirname "$PG_BIN")"))"
  fi
  if has debezium; then
    log "debezium  http://127.0.0.1:$DEBEZIUM_CONNECT_PORT  ready in ${READY_AT[debezium]} (Kafka Connect $KAFKA_VERSION, Debezium $DEBEZIUM_VERSION)"
  fi
  log "up in $(secs_since "$t0"); wrote $ENV_FILE (STACK_DIR=$STACK_DIR)"
}

cmd_down() {
  lock
  if ! load_env; then log "no stack ($ENV_FILE absent)"; return 0; fi
  stop_all
  remove_stack_dir
  rm -f "$ENV_FILE"
  log "down"
}

cmd_status() {
  if ! load_env; then log "no stack ($ENV_FILE absent)"; return 1; fi
  if has postgres; then find_pg_bin; fi
  local rc=0
  if has kafka; then
    if kafka_ready; then log "kafka     127.0.0.1:$KAFKA_PORT  up"; else log "kafka     127.0.0.1:$KAFKA_PORT  DOWN"; rc=1; fi
  fi
  if has registry; then
    if apicurio_ready; then log "registry  http://127.0.0.1:$APICURIO_PORT/apis/ccompat/v7  up"; else log "registry  http://127.0.0.1:$APICURIO_PORT/apis/ccompat/v7  DOWN"; rc=1; fi
  fi
  if has postgres; then
    if postgres_ready; then log "postgres  127.0.0.1:$POSTGRES_PORT  up"; else log "postgres  127.0.0.1:$POSTGRES_PORT  DOWN"; rc=1; fi
  fi
  if has debezium; then
    if debezium_ready; then log "debezium  http://127.0.0.1:$DEBEZIUM_CONNECT_PORT  up"; else log "debezium  http://127.0.0.1:$DEBEZIUM_CONNECT_PORT  DOWN"; rc=1; fi
  fi
  log "STACK_DIR=$STACK_DIR"
  return $rc
}

cmd_stop_kafka() {
  lock
  load_env || die "no stack ($ENV_FILE absent): run up first"
  has kafka || die "the stack of $ENV_FILE runs no kafka"
  kafka_stop
  log "kafka stopped (port $KAFKA_PORT, data kept in $(kafka_dir)/data)"
}

cmd_start_kafka() {
  lock
  load_env || die "no stack ($ENV_FILE absent): run up first"
  has kafka || die "the stack of $ENV_FILE runs no kafka"
  if kafka_alive && kafka_ready; then log "kafka already running on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  check_prereqs kafka-only
  [[ -d "$KAFKA_LIB" ]] || die "Kafka jars missing: $KAFKA_LIB"
  kafka_stop   # a hung leftover, if any
  local t0; t0=$(now_ms)
  START[kafka]=$t0; kafka_launch
  wait_ready "$KAFKA_TIMEOUT" "$t0" kafka
  log "kafka     127.0.0.1:$KAFKA_PORT  ready in ${READY_AT[kafka]}"
}

usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop-kafka) cmd_stop_kafka ;;
  start-kafka) cmd_start_kafka ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
