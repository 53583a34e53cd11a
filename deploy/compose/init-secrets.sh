#!/bin/sh
# One-shot of docker-compose.yml (service `init-secrets`, image alpine/openssl): the evaluation
# stack's credentials and the gateway's self-signed TLS certificate, each made once, into the
# named volumes mounted under $ROOT/secrets (kept across restarts; `docker compose down -v`
# drops them). An existing file is never replaced: put your own there to use it instead.
#
#   db/spring.datasource.password   Postgres password of the `hapi` role: read by Postgres
#                                   (POSTGRES_PASSWORD_FILE) and HAPI (Spring's configtree)
#   minio/root-user, root-password  MinIO's root credentials: MinIO and the bucket one-shot only
#   s3/credentials                  the gateway's own MinIO access key, an AWS credentials file
#                                   (AWS_SHARED_CREDENTIALS_FILE); MinIO learns it from the
#                                   bucket one-shot (minio-init.sh)
#   tls/tls.crt, tls/tls.key        self-signed for localhost and 127.0.0.1 (one year)
#   keys/                           only made writable for the gateway's `keygen` one-shot
#
# Modes: each volume is mounted only into the containers that need it; files they share are
# world-readable inside it (those containers run as different users), the rest are owned by
# the one reader. ROOT (default /) lets the tests run this outside a container.
set -eu
ROOT=${ROOT:-}
S=$ROOT/secrets
GATEWAY_UID=1000 # the gateway image's numeric user

umask 077
mkdir -p "$S/db" "$S/minio" "$S/s3" "$S/tls" "$S/keys"
chmod 0755 "$S/db" "$S/minio" "$S/s3" "$S/tls" "$S/keys"

# A random secret: 32 hex characters (128 bits), no newline (Spring, MinIO and the Postgres
# entrypoint read the file's bytes).
random() { openssl rand -hex 16 | tr -d '\n'; }

# Ownership is set when running as root (as in the container), left as it is otherwise (tests).
own() { if [ "$(id -u)" = 0 ]; then chown "$@"; fi; }

# write FILE MODE [OWNER]: stdin to FILE unless FILE already has content; mode and owner always.
write() {
  if [ ! -s "$1" ]; then
    cat >"$1.tmp"
    mv "$1.tmp" "$1"
    echo "init-secrets: created ${1#"$ROOT"}"
  else
    cat >/dev/null
  fi
  chmod "$2" "$1"
  if [ -n "${3:-}" ]; then own "$3" "$1"; fi
}

random | write "$S/db/spring.datasource.password" 0444
printf 'admin-%s' "$(openssl rand -hex 4)" | write "$S/minio/root-user" 0400
random | write "$S/minio/root-password" 0400
# The gateway's access key (not MinIO's root): minio-init.sh registers it, for one bucket.
printf '[default]\naws_access_key_id=fbg-%s\naws_secret_access_key=%s\n' "$(openssl rand -hex 8)" "$(random)" |
  write "$S/s3/credentials" 0400 "$GATEWAY_UID:$GATEWAY_UID"

if [ ! -s "$S/tls/tls.key" ] || [ ! -s "$S/tls/tls.crt" ]; then
  openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 365 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$S/tls/tls.key.tmp" -out "$S/tls/tls.crt.tmp" 2>/dev/null
  mv "$S/tls/tls.key.tmp" "$S/tls/tls.key"
  mv "$S/tls/tls.crt.tmp" "$S/tls/tls.crt"
  echo "init-secrets: created ${S#"$ROOT"}/tls/tls.crt (self-signed, localhost)"
fi
chmod 0400 "$S/tls/tls.key"
chmod 0444 "$S/tls/tls.crt"
own "$GATEWAY_UID:$GATEWAY_UID" "$S/tls/tls.key" "$S/keys"
