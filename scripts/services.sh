#!/usr/bin/env bash
# Starts the local PostgreSQL and NATS JetStream servers when they are down (the commands the machine uses).
set -uo pipefail
up() { (echo > "/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; echo "$2 did not come up on port $1" >&2; return 1; }
if ! up 5432; then
  echo "==> starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_up 5432 PostgreSQL || exit 1
fi
if ! up 4222; then
  echo "==> starting NATS JetStream"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_up 4222 NATS || exit 1
fi
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null
exit 0
