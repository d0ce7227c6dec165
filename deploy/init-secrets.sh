#!/usr/bin/env bash
# Create the secrets deploy/compose.yaml reads, once: random passwords and the URLs that carry them.
#
#   deploy/init-secrets.sh            # into deploy/secrets (or $WHISTLE_SECRETS_DIR)
#
# Never overwrites a file that exists (re-running keeps what is there). The directory is 0700, so only its
# owner sees the secrets on the host; the files are 0444, so each container's own user (postgres, the
# image's uid 10001) can read the one bind-mounted into it. Back this directory up with the database.
set -euo pipefail

DIR="${WHISTLE_SECRETS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets}"
mkdir -p "$DIR"
chmod 0700 "$DIR"

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }  # URL-safe: no escaping in URLs

write() {
    local name="$1" value="$2"
    if [ -e "$DIR/$name" ]; then
        echo "kept   $DIR/$name"
        return
    fi
    (umask 077 && printf '%s\n' "$value" > "$DIR/$name")
    chmod 0444 "$DIR/$name"
    echo "wrote  $DIR/$name"
}

value() { if [ -e "$DIR/$1" ]; then head -n1 "$DIR/$1"; else random; fi; }

pg="$(value postgres_password)"
write postgres_password "$pg"
write database_url "postgresql://whistle:${pg}@timescaledb:5432/whistle"
mq="$(value mqtt_collector_password)"
write mqtt_collector_password "$mq"
write mqtt_url "mqtt://whistle-collector:${mq}@mosquitto:1884"
write admin_token "$(value admin_token)"
