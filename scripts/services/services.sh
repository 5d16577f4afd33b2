#!/usr/bin/env bash
# Real services for ferry's tests and for a developer machine, without Docker:
# Apache Kafka (KRaft), Apache Cassandra (CQL, stands in for ScyllaDB), Jaeger
# all-in-one (OTLP + query API), plus the helm binary.
#
#   services.sh fetch      [kafka|cassandra|jaeger|helm|cqlsh|all]
#   services.sh start      [kafka|cassandra|jaeger|all]
#   services.sh stop       [kafka|cassandra|jaeger|all]
#   services.sh restart    [kafka|cassandra|jaeger|all]
#   services.sh status
#   services.sh env
#   services.sh reset-data [kafka|cassandra|jaeger|all]
#   services.sh kafka-run CLASS ARGS...     run a Kafka tool class on the broker's classpath
#   services.sh kafka-topics ARGS...        TopicCommand with --bootstrap-server filled in
#   services.sh cqlsh ARGS...               cqlsh against the local node
#
# Downloads are cached under ${FERRY_CACHE:-$HOME/.cache/ferry} (never in the repo);
# data, logs and pid files live under ${FERRY_SERVICES_DIR:-$FERRY_CACHE/run}.
# Everything listens on 127.0.0.1 only. See README.md next to this file.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/python.sh
source "$HERE/../lib/python.sh"

CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
RUN="${FERRY_SERVICES_DIR:-$CACHE/run}"
BIN="$CACHE/bin"

KAFKA_VERSION="${FERRY_KAFKA_VERSION:-4.4.0}"
CASSANDRA_VERSION="${FERRY_CASSANDRA_VERSION:-5.0.9}"
JAEGER_VERSION="${FERRY_JAEGER_VERSION:-v1.76.0}"
HELM_VERSION="${FERRY_HELM_VERSION:-v3.22.0}"
CQLSH_VERSION="${FERRY_CQLSH_VERSION:-6.0.40}"

HOST=127.0.0.1
KAFKA_PORT="${FERRY_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${FERRY_KAFKA_CONTROLLER_PORT:-9093}"
CQL_PORT="${FERRY_CQL_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${FERRY_CASSANDRA_STORAGE_PORT:-7000}"
OTLP_GRPC_PORT="${FERRY_OTLP_GRPC_PORT:-4317}"
OTLP_HTTP_PORT="${FERRY_OTLP_HTTP_PORT:-4318}"
JAEGER_QUERY_PORT="${FERRY_JAEGER_QUERY_PORT:-16686}"
JAEGER_QUERY_GRPC_PORT="${FERRY_JAEGER_QUERY_GRPC_PORT:-16685}"
JAEGER_HEALTH_PORT="${FERRY_JAEGER_HEALTH_PORT:-13133}"

KAFKA_HEAP="${FERRY_KAFKA_HEAP:--Xms512m -Xmx1g}"
CASSANDRA_HEAP="${FERRY_CASSANDRA_HEAP:--Xms1g -Xmx2g}"
# periodic (default, as Cassandra's and ScyllaDB's own): writes are acknowledged before
# the commit log is synced (every 10 s), and a node killed with SIGKILL replays only up
# to its last sync: the acknowledged writes of the last period are gone from the store.
# ferry's sequencer keeps them in the log (scylla.durability_horizon_secs, 10 by
# default) and applies them again; the fault matrix kills this default. batch: a write
# is acknowledged once synced (slower writes; ferry can then run with a horizon of 0).
CASSANDRA_COMMITLOG_SYNC="${FERRY_CASSANDRA_COMMITLOG_SYNC:-periodic}"
JAEGER_MAX_TRACES="${FERRY_JAEGER_MAX_TRACES:-100000}"

KAFKA_TIMEOUT="${FERRY_KAFKA_START_TIMEOUT:-180}"
CASSANDRA_TIMEOUT="${FERRY_CASSANDRA_START_TIMEOUT:-180}"
JAEGER_TIMEOUT="${FERRY_JAEGER_START_TIMEOUT:-60}"

KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
CASSANDRA_HOME="$CACHE/cassandra-$CASSANDRA_VERSION"
M2="$CACHE/m2"
VENV="$CACHE/venv"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

# Be gentle with the CPU: builds may be running next to us.
NICE=(nice -n 10)

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ----------------------------------------------------------------------------
# fetch
# ----------------------------------------------------------------------------

mvn_copy() { # <pom dir> <dest lib dir> <-Dversion property>
  local pomdir="$1" dest="$2" prop="$3" work
  work="$CACHE/build/$(basename "$pomdir")"
  mkdir -p "$work" "$M2"
  # Run from a copy inside the cache so nothing (target/) is written to the repo.
  cp "$pomdir/pom.xml" "$work/pom.xml"
  rm -rf "$dest.tmp"
  "${NICE[@]}" mvn -B -q -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$M2" "$prop" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest.tmp"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
}

fetch_kafka() {
  if [[ -f "$KAFKA_HOME/.complete" ]]; then log "kafka $KAFKA_VERSION: cached"; return; fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  log "kafka $KAFKA_VERSION: fetching jars from Maven Central"
  mkdir -p "$KAFKA_HOME"
  mvn_copy "$HERE/kafka" "$KAFKA_HOME/lib" "-Dkafka.version=$KAFKA_VERSION"
  touch "$KAFKA_HOME/.complete"
  log "kafka $KAFKA_VERSION: $(ls "$KAFKA_HOME/lib" | wc -l) jars in $KAFKA_HOME/lib"
}

fetch_cassandra() {
  if [[ -f "$CASSANDRA_HOME/.complete" ]]; then log "cassandra $CASSANDRA_VERSION: cached"; return; fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  log "cassandra $CASSANDRA_VERSION: fetching jars from Maven Central"
  mkdir -p "$CASSANDRA_HOME"
  mvn_copy "$HERE/cassandra" "$CASSANDRA_HOME/lib" "-Dcassandra.version=$CASSANDRA_VERSION"
  touch "$CASSANDRA_HOME/.complete"
  log "cassandra $CASSANDRA_VERSION: $(ls "$CASSANDRA_HOME/lib" | wc -l) jars in $CASSANDRA_HOME/lib"
}

go_install() { # <name> <package@version> [ldflags]
  local name="$1" pkg="$2" ldflags="${3:-}" stamp="$BIN/.$1.version"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then
    log "$name: cached ($pkg)"; return
  fi
  command -v go >/dev/null || die "go not found"
  log "$name: go install $pkg"
  mkdir -p "$BIN"
  GOBIN="$BIN" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -modcacherw" \
    CGO_ENABLED=0 "${NICE[@]}" go install -trimpath -ldflags "-s -w $ldflags" "$pkg"
  echo "$pkg" >"$stamp"
}

# Jaeger's go.mod has a replace directive, so `go install ...@version` refuses it
# ("contains one or more replace directives"). Download the module through the
# module proxy instead and build its cmd/jaeger as the main module.
fetch_jaeger() {
  local mod="github.com/jaegertracing/jaeger" pkg stamp="$BIN/.jaeger.version" dir
  pkg="$mod/cmd/jaeger@$JAEGER_VERSION"
  if [[ -x "$BIN/jaeger" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then
    log "jaeger: cached ($pkg)"; return
  fi
  command -v go >/dev/null || die "go not found"
  log "jaeger: go mod download $mod@$JAEGER_VERSION && go build ./cmd/jaeger"
  mkdir -p "$BIN"
  dir="$(GOMODCACHE="$CACHE/go/mod" GOFLAGS=-modcacherw go mod download -json "$mod@$JAEGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir/cmd/jaeger" ]] || die "jaeger: module download failed"
  (cd "$dir" && GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -modcacherw" \
    CGO_ENABLED=0 GOTOOLCHAIN=local "${NICE[@]}" go build -trimpath -o "$BIN/jaeger" \
    -ldflags "-s -w -X $mod/internal/version.latestVersion=$JAEGER_VERSION" ./cmd/jaeger)
  echo "$pkg" >"$stamp"
}
fetch_helm() {
  go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

fetch_cqlsh() {
  # cqlsh (ScyllaDB's packaging of it, talks to Cassandra too) doubles as the
  # readiness probe for the CQL port.
  if [[ -x "$VENV/bin/cqlsh" && -f "$VENV/.cqlsh-$CQLSH_VERSION" ]]; then log "cqlsh: cached"; return; fi
  log "cqlsh: pip install scylla-cqlsh==$CQLSH_VERSION into $VENV"
  make_venv "$VENV" "cqlsh (services.sh)"
  PIP_CACHE_DIR="$CACHE/pip" "${NICE[@]}" "$VENV/bin/pip" install -q --disable-pip-version-check \
    "scylla-cqlsh==$CQLSH_VERSION"
  touch "$VENV/.cqlsh-$CQLSH_VERSION"
}

# ----------------------------------------------------------------------------
# process helpers
# ----------------------------------------------------------------------------

pidfile() { echo "$RUN/$1/$1.pid"; }

# Prints the pid if the service is running (and really is the process we started).
running_pid() {
  local f pid
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  # only trust the pid if that process runs with this service's run dir
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUN/$1/" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

port_busy_check() { # <service> <port>...
  local svc="$1"; shift
  local p
  for p in "$@"; do
    if port_open "$p"; then
      die "$svc: port $HOST:$p is already in use by another process (set FERRY_*_PORT to move it)"
    fi
  done
}

rss_mb() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

fail_start() { # <service> <log> <message>
  log "$1: $3"
  log "---- last 40 lines of $2 ----"
  tail -n 40 "$2" >&2 || true
  log "----"
  stop_one "$1" >/dev/null 2>&1 || true
  exit 1
}

# wait_ready <service> <log> <timeout s> <check function>
# 0 when ready; 2 when the process is gone (the caller decides); exits on a timeout.
wait_ready() {
  local svc="$1" logf="$2" timeout="$3" check="$4" pid start now
  start=$(date +%s)
  while :; do
    pid="$(running_pid "$svc")" || return 2
    if "$check"; then
      now=$(date +%s)
      log "$svc: ready in $((now - start))s (pid $pid, RSS $(rss_mb "$pid") MB)"
      return 0
    fi
    now=$(date +%s)
    if (( now - start >= timeout )); then
      fail_start "$svc" "$logf" "not ready after ${timeout}s"
    fi
    sleep 1
  done
}

# start_service <service> <launch log> <ready log> <timeout s> <check function> cmd...
# A process that is gone before it is ready is started once more (a signal from
# outside, e.g. a machine's clean-up of an earlier session, leaves no line in its
# log); gone twice is a failure, with both logs' tails.
start_service() {
  local svc="$1" outf="$2" logf="$3" timeout="$4" check="$5" attempt
  shift 5
  for attempt in 1 2; do
    launch "$svc" "$outf" "$@"
    if wait_ready "$svc" "$logf" "$timeout" "$check"; then return 0; fi
    [[ "$logf" == "$outf" ]] || { log "---- last 20 lines of $outf ----"; tail -n 20 "$outf" >&2 || true; }
    if [[ $attempt == 1 ]]; then
      log "$svc: process exited during start-up; starting it once more"
    fi
  done
  fail_start "$svc" "$logf" "process exited during start-up (twice)"
}

launch() { # <service> <log> cmd... : detached, own session, pid file written
  local svc="$1" logf="$2"; shift 2
  mkdir -p "$RUN/$svc"
  echo "==== $(date -Is) start: $*" >>"$logf"
  setsid nohup "$@" >>"$logf" 2>&1 </dev/null &
  local pid=$! i
  echo "$pid" >"$(pidfile "$svc")"
  # Until it execs the service the pid is a forked copy of this shell, whose command
  # line does not name the run dir: running_pid would take it for a process that
  # died, and fail_start would then stop the service that is just starting. Wait for
  # the exec (or the exit) first: up to a minute on a machine busy with builds.
  for ((i = 0; i < 1200; i++)); do
    [[ -d /proc/$pid ]] || break
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUN/$svc/" && break
    sleep 0.05
  done
}

stop_one() {
  local svc="$1" pid i grace
  case "$svc" in cassandra) grace=40 ;; kafka) grace=30 ;; *) grace=15 ;; esac
  if ! pid="$(running_pid "$svc")"; then
    rm -f "$(pidfile "$svc")"
    log "$svc: not running"
    return 0
  fi
  log "$svc: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 5; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.2
  done
  if [[ -d /proc/$pid ]]; then
    log "$svc: still running after ${grace}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(pidfile "$svc")"
  log "$svc: stopped"
}

# ----------------------------------------------------------------------------
# Kafka (KRaft, combined broker + controller, single node)
# ----------------------------------------------------------------------------

KAFKA_JVM_COMMON=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true)

kafka_tool_log4j() {
  local f="$RUN/kafka/log4j2-tools.properties"
  mkdir -p "$RUN/kafka"
  cat >"$f" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
EOF
  echo "$f"
}

# Runs a Kafka class (tool) with the broker's jars. Quick-starting JVM flags.
kafka_run() {
  local cls="$1"; shift
  [[ -f "$KAFKA_HOME/.complete" ]] || die "kafka not fetched (services.sh fetch kafka)"
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$(kafka_tool_log4j)" \
    -cp "$KAFKA_HOME/lib/*" "$cls" "$@"
}

kafka_write_config() {
  local dir="$RUN/kafka"
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<EOF
# generated by scripts/services/services.sh on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=2
log.retention.hours=24
log.segment.bytes=67108864
log.retention.check.interval.ms=300000
delete.topic.enable=true
EOF
  cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $dir/logs/server.log
appender.file.filePattern = $dir/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache.kafka
logger.apache.level = info
EOF
}

kafka_check() {
  port_open "$KAFKA_PORT" || return 1
  # A real metadata round trip, not just an open socket.
  timeout 30 "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$RUN/kafka/log4j2-tools.properties" -cp "$KAFKA_HOME/lib/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list \
    >/dev/null 2>>"$RUN/kafka/logs/check.log"
}

start_kafka() {
  local dir="$RUN/kafka" pid
  if pid="$(running_pid kafka)"; then log "kafka: already running (pid $pid)"; return; fi
  port_busy_check kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  kafka_write_config
  kafka_tool_log4j >/dev/null
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cid
    cid="$(kafka_run kafka.tools.StorageTool random-uuid)"
    log "kafka: formatting storage (cluster id $cid)"
    kafka_run kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
      >>"$dir/logs/format.log" 2>&1 || { tail -n 20 "$dir/logs/format.log" >&2; die "kafka: storage format failed"; }
  fi
  log "kafka: starting on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT)"
  # shellcheck disable=SC2086
  start_service kafka "$dir/logs/stdout.log" "$dir/logs/server.log" "$KAFKA_TIMEOUT" kafka_check \
    "$JAVA" -Dferry.service=kafka $KAFKA_HEAP "${KAFKA_JVM_COMMON[@]}" \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$dir/server.properties"
}

# ----------------------------------------------------------------------------
# Cassandra (single node, stands in for ScyllaDB)
# ----------------------------------------------------------------------------

# From Cassandra's conf/jvm17-server.options (JPMS) and jvm-server.options.
CASSANDRA_JVM17=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
  -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
  -ea -da:net.openhft... -XX:+UseThreadPriorities -Xss256k
  -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true
  -XX:+ExitOnOutOfMemoryError
)

cassandra_commitlog_sync() {
  case "$CASSANDRA_COMMITLOG_SYNC" in
    periodic) printf 'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms\n' ;;
    batch) printf 'commitlog_sync: batch\n' ;;
    *) die "FERRY_CASSANDRA_COMMITLOG_SYNC must be periodic or batch, not $CASSANDRA_COMMITLOG_SYNC" ;;
  esac
}

cassandra_write_config() {
  local dir="$RUN/cassandra" sync
  sync="$(cassandra_commitlog_sync)" || exit 1
  mkdir -p "$dir/conf/triggers" "$dir/data" "$dir/logs"
  cat >"$dir/conf/cassandra.yaml" <<EOF
# generated by scripts/services/services.sh on every start
cluster_name: ferry
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer
data_file_directories:
  - $dir/data/data
commitlog_directory: $dir/data/commitlog
saved_caches_directory: $dir/data/saved_caches
hints_directory: $dir/data/hints
cdc_raw_directory: $dir/data/cdc_raw
$sync
commitlog_segment_size: 32MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$HOST:$CASSANDRA_STORAGE_PORT"
listen_address: $HOST
rpc_address: $HOST
storage_port: $CASSANDRA_STORAGE_PORT
start_native_transport: true
native_transport_port: $CQL_PORT
endpoint_snitch: SimpleSnitch
auto_bootstrap: false
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
concurrent_compactors: 1
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
key_cache_size: 16MiB
file_cache_size: 64MiB
# a developer/test node: small, quick and quiet
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
dynamic_snitch: false
hinted_handoff_enabled: false
compaction_throughput: 0MiB/s
read_request_timeout: 10000ms
write_request_timeout: 5000ms
cas_contention_timeout: 5000ms
request_timeout: 15000ms
EOF
  cat >"$dir/conf/logback.xml" <<EOF
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$dir/logs/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$dir/logs/system.log.%i</fileNamePattern>
      <minIndex>1</minIndex><maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>50MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF
}

cassandra_check() {
  port_open "$CQL_PORT" || return 1
  timeout 20 "$VENV/bin/cqlsh" "$HOST" "$CQL_PORT" --connect-timeout=5 \
    -e "SELECT release_version FROM system.local" >"$RUN/cassandra/logs/check.out" 2>&1
}

start_cassandra() {
  local dir="$RUN/cassandra" pid jamm
  if pid="$(running_pid cassandra)"; then log "cassandra: already running (pid $pid)"; return; fi
  port_busy_check cassandra "$CQL_PORT" "$CASSANDRA_STORAGE_PORT"
  cassandra_write_config
  jamm="$(ls "$CASSANDRA_HOME"/lib/jamm-*.jar 2>/dev/null | head -n1)"
  log "cassandra: starting on $HOST:$CQL_PORT"
  # shellcheck disable=SC2086
  start_service cassandra "$dir/logs/stdout.log" "$dir/logs/system.log" "$CASSANDRA_TIMEOUT" \
    cassandra_check "$JAVA" -Dferry.service=cassandra $CASSANDRA_HEAP \
    ${jamm:+-javaagent:$jamm} "${CASSANDRA_JVM17[@]}" \
    -Dcassandra.config="file://$dir/conf/cassandra.yaml" \
    -Dlogback.configurationFile="$dir/conf/logback.xml" \
    -Dcassandra.logdir="$dir/logs" -Dcassandra.storagedir="$dir/data" \
    -Dcassandra.triggers_dir="$dir/conf/triggers" \
    -Dcassandra-foreground=yes \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=0 \
    -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.load_ring_state=false \
    -Dcassandra.jmx.local.port="${FERRY_CASSANDRA_JMX_PORT:-7199}" \
    -cp "$dir/conf:$CASSANDRA_HOME/lib/*" org.apache.cassandra.service.CassandraDaemon
}

# ----------------------------------------------------------------------------
# Jaeger all-in-one (v2 binary, OpenTelemetry collector config, in-memory)
# ----------------------------------------------------------------------------

jaeger_write_config() {
  local dir="$RUN/jaeger"
  mkdir -p "$dir/logs"
  cat >"$dir/config.yaml" <<EOF
# generated by scripts/services/services.sh on every start: the all-in-one
# set-up (memory storage) with every listener on $HOST.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: $HOST:$JAEGER_HEALTH_PORT
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: $HOST:$JAEGER_QUERY_PORT
    grpc:
      endpoint: $HOST:$JAEGER_QUERY_GRPC_PORT
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: $JAEGER_MAX_TRACES

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $HOST:$OTLP_GRPC_PORT
      http:
        endpoint: $HOST:$OTLP_HTTP_PORT

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

jaeger_check() {
  curl -fsS --max-time 3 "http://$HOST:$JAEGER_QUERY_PORT/api/services" >/dev/null 2>&1
}

start_jaeger() {
  local dir="$RUN/jaeger" pid
  if pid="$(running_pid jaeger)"; then log "jaeger: already running (pid $pid)"; return; fi
  port_busy_check jaeger "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" "$JAEGER_QUERY_PORT" \
    "$JAEGER_QUERY_GRPC_PORT" "$JAEGER_HEALTH_PORT"
  jaeger_write_config
  log "jaeger: starting (OTLP $HOST:$OTLP_GRPC_PORT/$OTLP_HTTP_PORT, query $HOST:$JAEGER_QUERY_PORT)"
  start_service jaeger "$dir/logs/jaeger.log" "$dir/logs/jaeger.log" "$JAEGER_TIMEOUT" jaeger_check \
    "$BIN/jaeger" --config "file:$dir/config.yaml"
}

# ----------------------------------------------------------------------------
# status / env / reset
# ----------------------------------------------------------------------------

status() {
  local svc pid rc=0
  for svc in kafka cassandra jaeger; do
    if pid="$(running_pid "$svc")"; then
      printf '%-10s running  pid %-8s RSS %5s MB\n' "$svc" "$pid" "$(rss_mb "$pid")"
    else
      printf '%-10s stopped\n' "$svc"; rc=3
    fi
  done
  printf '%-10s %s\n' helm "$([[ -x $BIN/helm ]] && echo "$BIN/helm" || echo 'not fetched')"
  return $rc
}

print_env() {
  cat <<EOF
export FERRY_TEST_KAFKA=$HOST:$KAFKA_PORT
export FERRY_TEST_CQL=$HOST:$CQL_PORT
export FERRY_TEST_OTLP=http://$HOST:$OTLP_GRPC_PORT
export FERRY_TEST_OTLP_HTTP=http://$HOST:$OTLP_HTTP_PORT
export FERRY_TEST_JAEGER_QUERY=http://$HOST:$JAEGER_QUERY_PORT
export FERRY_HELM=$BIN/helm
EOF
}

reset_data() {
  local svc="$1"
  stop_one "$svc"
  case "$svc" in
    kafka) rm -rf "$RUN/kafka/data" ;;
    cassandra) rm -rf "$RUN/cassandra/data" ;;
    jaeger) : ;; # in-memory: stopping is enough
  esac
  log "$svc: data wiped"
}

# ----------------------------------------------------------------------------

services_of() { # expands "all" for the start/stop/reset family
  case "${1:-all}" in
    all) echo "kafka cassandra jaeger" ;;
    kafka | cassandra | jaeger) echo "$1" ;;
    *) die "unknown service '$1' (kafka|cassandra|jaeger|all)" ;;
  esac
}

# The only caller of start_<service>.
# Fetches one after the other (no parallel Maven/Go builds), then starts the
# services side by side and waits for all of them; non-zero if any failed.
# FERRY_SERVICES_SEQUENTIAL=1 starts them one after the other.
start_many() {
  local s rc=0 pids=()
  for s in "$@"; do
    case "$s" in
      kafka) fetch_kafka ;;
      cassandra) fetch_cassandra; fetch_cqlsh ;;
      jaeger) fetch_jaeger ;;
    esac
  done
  if [[ $# -le 1 || "${FERRY_SERVICES_SEQUENTIAL:-0}" == 1 ]]; then
    for s in "$@"; do "start_$s"; done
    return
  fi
  for s in "$@"; do
    ("start_$s") &
    pids+=("$!")
  done
  for s in "${pids[@]}"; do wait "$s" || rc=1; done
  [[ $rc -eq 0 ]] || die "some services failed to start (see above)"
}

# Stops the given services side by side (each one TERM, then KILL after a grace period).
stop_many() {
  local s pids=()
  if [[ $# -le 1 ]]; then
    for s in "$@"; do stop_one "$s"; done
    return
  fi
  for s in "$@"; do
    (stop_one "$s") &
    pids+=("$!")
  done
  for s in "${pids[@]}"; do wait "$s" || true; done
}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

cmd="${1:-}"; shift || true
case "$cmd" in
  start | stop | restart | reset-data)
    svcs="$(services_of "${1:-all}")"          # exits non-zero on an unknown name
    read -r -a svcs <<<"$svcs"
    rsvcs=(); for ((i = ${#svcs[@]} - 1; i >= 0; i--)); do rsvcs+=("${svcs[i]}"); done ;;
esac
case "$cmd" in
  fetch)
    case "${1:-all}" in
      all) fetch_kafka; fetch_cassandra; fetch_cqlsh; fetch_jaeger; fetch_helm ;;
      kafka | cassandra | jaeger | helm | cqlsh) "fetch_$1" ;;
      *) die "unknown fetch target '$1' (kafka|cassandra|jaeger|helm|cqlsh|all)" ;;
    esac ;;
  start) start_many "${svcs[@]}" ;;
  stop) stop_many "${rsvcs[@]}" ;;
  restart) stop_many "${rsvcs[@]}"; start_many "${svcs[@]}" ;;
  status) status ;;
  env) print_env ;;
  reset-data) for s in "${svcs[@]}"; do reset_data "$s"; done ;;
  kafka-run) kafka_run "$@" ;;
  kafka-topics) kafka_run org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "$@" ;;
  cqlsh) fetch_cqlsh >&2; exec "$VENV/bin/cqlsh" "$HOST" "$CQL_PORT" "$@" ;;
  -h | --help | help | "") usage ;;
  *) usage; exit 2 ;;
esac
