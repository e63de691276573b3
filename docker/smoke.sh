#!/usr/bin/env bash
# Smoke test of the container image, for real: build it, run it, and drive the whole flow through the
# published port (TLS ping, user add, passcode by mail, login, token check), then healthcheck, the
# ops port closed to the container network, `docker stop`, restart on the same volume, and a
# production-like run (own certificate mounted read-only, SMTP to the sink, read-only root
# filesystem, no capabilities).
# Run from anywhere, by anyone the Docker engine answers (`docker info`); only when none answers does
# it start one with the CI machine's ../shared/docker/prepare.sh (as root, where that file exists).
# Needs the host repo's node_modules (npm ci) for the host-side client. Prints PASS/FAIL per step; exits non-zero on any failure.
#   usage: bash docker/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# A client whose BuildKit works: a newer client without its buildx plugin refuses to build with
# BuildKit, while Debian's docker.io client (20.10) has BuildKit built in (../shared/DOCKER.md). So
# the first docker on PATH, unless it lacks buildx and Debian's is there; with neither, the legacy
# builder (DOCKER_BUILDKIT=0, which reads .dockerignore). Chosen again after prepare.sh, which may
# have just installed Debian's client (on a fresh CI machine it did: the first choice had no buildx).
user_docker=${DOCKER:-}
pick_docker() {
  DOCKER=${user_docker:-$(command -v docker || echo /usr/bin/docker)}
  if [ -z "$user_docker" ] && ! $DOCKER buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
  BUILDKIT=1
  if ! $DOCKER buildx version >/dev/null 2>&1 && [ "$DOCKER" != /usr/bin/docker ]; then BUILDKIT=0; fi
}
pick_docker
PREPARE=../shared/docker/prepare.sh
IMAGE=${HELLWALL_SMOKE_IMAGE:-hellwall:ci}
SINK_IMAGE=${HELLWALL_SMOKE_SINK_IMAGE:-hellwall-smtp-sink:ci}
RUN=hwsmoke-$$
APP=$RUN-app VOL=$RUN-data            # the default run: dev certificate, outbox mailer
PROD=$RUN-prod PVOL=$RUN-prod-data    # the production-like run
SINK=$RUN-sink NET=$RUN-net
EMAIL=ops@example.com PHONE='+1 555 0100' MAC=00:1a:2b:3c:4d:5e
export HELLWALL_PASSWORD="smoke $RUN correct horse battery staple"
STOP_LIMIT=10 # docker stop's default timeout: after it, SIGKILL (exit 137)

# The host-side client reads HELLWALL_* too: none from the caller's environment may leak in.
for v in $(compgen -e | grep '^HELLWALL_' | grep -v '^HELLWALL_PASSWORD$' || true); do unset "$v"; done

TMP=$(mktemp -d)
started_engine=0
current='' reason='' t0=0 steps=0 T_START=$SECONDS

step() { current=$1; reason=''; t0=$SECONDS; }
ok() { steps=$((steps + 1)); echo "PASS $current${1:+: $1} ($((SECONDS - t0))s)"; current=''; }
die() { reason=$1; exit 1; } # never call inside $(...): it would only leave the subshell

cleanup() {
  $DOCKER rm -f "$APP" "$PROD" "$SINK" >/dev/null 2>&1 || true
  $DOCKER volume rm -f "$VOL" "$PVOL" >/dev/null 2>&1 || true
  $DOCKER network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "$TMP"
  if [ "$started_engine" = 1 ]; then bash "$PREPARE" --stop || true; fi
}
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    echo "FAIL ${current:-smoke test}${reason:+: $reason} (exit $rc)"
    for c in "$APP" "$PROD" "$SINK"; do
      if $DOCKER inspect "$c" >/dev/null 2>&1; then
        echo "--- last log lines of $c ($($DOCKER inspect --format '{{.State.Status}} exit={{.State.ExitCode}}' "$c"))"
        $DOCKER logs --tail 25 "$c" 2>&1 | sed 's/^/    /'
      fi
    done
  fi
  cleanup
  if [ "$rc" -eq 0 ]; then echo "smoke: PASS ($steps steps, $((SECONDS - T_START))s)"; else echo "smoke: FAIL"; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'reason="interrupted"; exit 130' INT TERM

# --- helpers ---------------------------------------------------------------------------------------
# The service's own CLI on the host, against a published port: client PORT CA SUBCOMMAND [ARGS...]
client() {
  local port=$1 ca=$2
  shift 2
  # `client login` stores the token; a file of this run's own, never the caller's ~/.hellwall-token.
  HELLWALL_TOKEN_FILE="$TMP/hellwall-token" node dist/cli.js client "$@" --host 127.0.0.1 --port "$port" --ca "$ca"
}
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];console.log(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }
host_port() { $DOCKER port "$1" "$2" | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | tail -n 1; }
# Captured first, then searched: `docker logs | grep -q` can fail under pipefail when grep stops early.
logs_have() { local logs; logs=$($DOCKER logs "$1" 2>&1) && grep -qE -- "$2" <<<"$logs"; }
# retry SECONDS CMD...: until CMD succeeds, once a second.
retry() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}
# A published port accepts TCP before the app listens: only a real TLS reply counts.
hello_ok() { local out; out=$(client "$1" "$2" hello) && [[ "$out" == *'"status": "ok"'* ]]; }
copy_dev_cert() { $DOCKER cp "$1:/data/dev-cert.pem" "$2" 2>/dev/null && [ -s "$2" ]; }
ping_app() { copy_dev_cert "$APP" "$TMP/dev-cert.pem" && hello_ok "$1" "$TMP/dev-cert.pem"; }
health_is() { [ "$($DOCKER inspect --format '{{.State.Health.Status}}' "$1")" = "$2" ]; }
outbox_code() { $DOCKER exec "$APP" sh -c 'cat /data/outbox/*.eml 2>/dev/null' | sed -n 's/.*passcode is: \([A-Z0-9]\{6\}\).*/\1/p' | tail -n 1; }
has_outbox_code() { [ -n "$(outbox_code)" ]; }
sink_code() { node -e 'fetch(process.argv[1]).then(r=>r.json()).then(m=>{const c=m.map(x=>/passcode is: ([A-Z0-9]{6})/.exec(x.text)?.[1]).filter(Boolean).pop();if(!c)process.exit(1);console.log(c)})' "http://127.0.0.1:$1/messages"; }
# stop_clean CONTAINER: docker stop must end it with exit 0 inside the timeout, logging a clean shutdown.
stop_clean() {
  local t=$SECONDS
  $DOCKER stop "$1" >/dev/null
  local took=$((SECONDS - t)) code
  code=$($DOCKER inspect --format '{{.State.ExitCode}}' "$1")
  [ "$code" = 0 ] || die "exit code $code after docker stop (137 = killed after the ${STOP_LIMIT}s timeout)"
  [ "$took" -lt "$STOP_LIMIT" ] || die "docker stop took ${took}s"
  logs_have "$1" '"signal":"SIGTERM".*"msg":"shutting down"' || die "no 'shutting down' (SIGTERM) in the logs"
  local last
  last=$($DOCKER logs --tail 3 "$1" 2>&1)
  [[ "$last" == *'"msg":"hellwall stopped"'* ]] || die "the logs do not end with 'hellwall stopped'"
  stop_took=$took
}

# --- steps -----------------------------------------------------------------------------------------
step "host client ready (dist/cli.js)"
[ -d node_modules ] || die "no node_modules: run npm ci first"
[ -f dist/cli.js ] || npm run build >/dev/null 2>&1 || [ -f dist/cli.js ] || die "npm run build failed"
ok

step "docker engine and base image"
# An engine that already answers (a user's Docker) is used as it is. Only where none answers does
# the CI machine's prepare.sh (outside this repository, absent from a user's checkout) start one.
if ! $DOCKER info >/dev/null 2>&1; then
  [ -f "$PREPARE" ] || die "no Docker engine answers ($DOCKER info): start Docker, then run this again"
  [ "$(id -u)" = 0 ] || die "no Docker engine answers, and $PREPARE (which starts one) needs root"
  started_engine=1
  bash "$PREPARE" >"$TMP/prepare.log" 2>&1 || { cat "$TMP/prepare.log"; die "prepare.sh failed"; }
  pick_docker
fi
$DOCKER image inspect node:20-bookworm-slim >/dev/null 2>&1 || $DOCKER pull node:20-bookworm-slim >/dev/null 2>&1 ||
  die "no node:20-bookworm-slim image, and it could not be pulled"
ok "$([ "$started_engine" = 1 ] && echo "engine started by this run" || echo "engine already running")"

step "build image $IMAGE"
previous=$($DOCKER image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if ! DOCKER_BUILDKIT=$BUILDKIT $DOCKER build -f docker/Dockerfile -t "$IMAGE" . >"$TMP/build.log" 2>&1; then
  tail -n 40 "$TMP/build.log"
  die "docker build failed"
fi
# The image this tag named before, now untagged: remove it so repeated runs do not pile up images.
if [ -n "$previous" ] && [ "$previous" != "$($DOCKER image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  $DOCKER rmi "$previous" >/dev/null 2>&1 || true
fi
ok

step "image runs as non-root"
user=$($DOCKER image inspect --format '{{.Config.User}}' "$IMAGE")
uid=$($DOCKER run --rm --entrypoint id "$IMAGE" -u)
[ "$user" = node ] && [ "$uid" = 1000 ] || die "USER is '$user', uid $uid"
ok "USER $user, uid $uid"

step "image has no devDependencies"
# Every devDependency of package.json must be absent from the image's node_modules.
present=$($DOCKER run --rm --entrypoint node "$IMAGE" -e '
  const fs = require("fs");
  const dev = Object.keys(JSON.parse(fs.readFileSync("package.json", "utf8")).devDependencies || {});
  console.log(dev.filter((d) => fs.existsSync("node_modules/" + d)).join(" "));')
[ -z "$present" ] || die "devDependencies in the image: $present"
$DOCKER run --rm --entrypoint sh "$IMAGE" -c '[ ! -e node_modules/typescript ] && [ ! -e node_modules/.bin/tsc ]' || die "typescript in the image"
size=$($DOCKER image inspect --format '{{.Size}}' "$IMAGE")
base=$($DOCKER image inspect --format '{{.Size}}' node:20-bookworm-slim)
ok "image $((size / 1000000)) MB (base $((base / 1000000)) MB + $(((size - base) / 1000000)) MB)"

step "container starts (fresh volume, port on 127.0.0.1)"
$DOCKER volume create "$VOL" >/dev/null
$DOCKER run -d --name "$APP" -v "$VOL:/data" -p 127.0.0.1::7443 "$IMAGE" >/dev/null
port=$(host_port "$APP" 7443)
[ -n "$port" ] || die "port 7443 not published on 127.0.0.1: $($DOCKER port "$APP" 7443 | tr '\n' ' ')"
[ "$($DOCKER inspect --format '{{.State.Running}}' "$APP")" = true ] || die "not running"
ok "127.0.0.1:$port"

step "TLS ping (client hello, trusting the dev certificate from the volume)"
retry 90 ping_app "$port" || die "no TLS reply on 127.0.0.1:$port within 90s"
logs_have "$APP" '"host":"0\.0\.0\.0","port":7443,.*"msg":"hellwall listening"' || die "not listening on 0.0.0.0:7443"
ok

step "user add (docker exec, password from HELLWALL_PASSWORD)"
out=$($DOCKER exec -e HELLWALL_PASSWORD "$APP" node dist/cli.js user add --email "$EMAIL" --phone "$PHONE")
[[ "$out" == "added user $EMAIL"* ]] || die "unexpected output: $out"
ok "$out"

step "passcode request -> mail in /data/outbox"
client "$port" "$TMP/dev-cert.pem" passcode --email "$EMAIL" --mac "$MAC" >"$TMP/passcode.json" || die "passcode request failed: $(cat "$TMP/passcode.json")"
retry 30 has_outbox_code || die "no passcode mail in /data/outbox within 30s"
code=$(outbox_code)
ok "passcode ${code:0:2}**** read from the outbox"

step "login with the passcode -> token"
client "$port" "$TMP/dev-cert.pem" login --email "$EMAIL" --phone "$PHONE" --mac "$MAC" --passcode "$code" >"$TMP/login.json" || die "login failed: $(cat "$TMP/login.json")"
token=$(json token <"$TMP/login.json")
[[ "$token" == Awfer_hellwall_* ]] || die "no token in the login answer"
ok

step "token check -> authorized"
HELLWALL_TOKEN=$token client "$port" "$TMP/dev-cert.pem" check --mac "$MAC" --request inventory.read >"$TMP/check.json" || die "check failed: $(cat "$TMP/check.json")"
[ "$(json status <"$TMP/check.json")" = authorized ] || die "status $(json status <"$TMP/check.json")"
ok

step "HEALTHCHECK reaches healthy"
retry 120 health_is "$APP" healthy || die "health is $($DOCKER inspect --format '{{.State.Health.Status}}' "$APP") after 120s"
ok

step "health, readiness and metrics on the ops port inside the container (9464)"
ops_get() { $DOCKER exec "$APP" node -e "fetch('http://127.0.0.1:9464$1').then(async (r) => { process.stdout.write(await r.text()); process.exit(r.status === 200 ? 0 : 1) }, () => process.exit(2))"; }
ops_get /healthz >/dev/null || die "/healthz did not answer 200"
ops_get /readyz >"$TMP/ready.json" || die "/readyz: $(cat "$TMP/ready.json")"
ops_get /metrics >"$TMP/metrics.txt" || die "/metrics did not answer 200"
grep -q '^hellwall_requests_total{command="token.check",outcome="authorized"} [1-9]' "$TMP/metrics.txt" || die "no authorized token.check counted in /metrics"
grep -q '^hellwall_sessions_active 1$' "$TMP/metrics.txt" || die "hellwall_sessions_active is not 1"
ok

step "the ops port answers only inside the container (loopback), not on the container network"
logs_have "$APP" '"host":"127\.0\.0\.1","port":9464,.*"msg":"health and metrics listening"' || die "the ops listener is not on 127.0.0.1:9464"
exposed=$($DOCKER image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE")
[[ "$exposed" != *9464* ]] || die "the image exposes 9464: $exposed"
app_ip=$($DOCKER inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$APP")
[ -n "$app_ip" ] || die "no container address"
# From a neighbour on the same network (where a Prometheus would sit): TLS reachable, ops not.
probe() { $DOCKER run --rm --entrypoint node "$IMAGE" -e "const s = require('net').connect($2, '$1'); s.setTimeout(3000, () => process.exit(3)); s.on('connect', () => process.exit(0)); s.on('error', () => process.exit(1))"; }
probe "$app_ip" 7443 || die "the neighbour cannot reach $app_ip:7443 at all: the check below would prove nothing"
if probe "$app_ip" 9464; then die "$app_ip:9464 (/metrics, /readyz) answers from outside the container"; fi
ok "$app_ip:7443 open, $app_ip:9464 closed"

step "docker stop: SIGTERM, clean shutdown, exit 0 within ${STOP_LIMIT}s"
stop_clean "$APP"
ok "stopped in ${stop_took}s"

step "docker start again: user and session survive (same token authorized)"
$DOCKER start "$APP" >/dev/null
port=$(host_port "$APP" 7443)
[ -n "$port" ] || die "port not published after restart"
retry 90 ping_app "$port" || die "no TLS reply after restart"
HELLWALL_TOKEN=$token client "$port" "$TMP/dev-cert.pem" check --mac "$MAC" --request inventory.read >"$TMP/check2.json" || die "check after restart failed: $(cat "$TMP/check2.json")"
[ "$(json status <"$TMP/check2.json")" = authorized ] || die "status $(json status <"$TMP/check2.json") after restart"
ok "127.0.0.1:$port"
$DOCKER rm -f "$APP" >/dev/null

# --- production-like: own certificate (read-only mount), SMTP to the sink, hardened run ------------
step "build SMTP sink image $SINK_IMAGE"
previous=$($DOCKER image inspect --format '{{.Id}}' "$SINK_IMAGE" 2>/dev/null || true)
if ! DOCKER_BUILDKIT=$BUILDKIT $DOCKER build -t "$SINK_IMAGE" docker/smtp-sink >"$TMP/sink-build.log" 2>&1; then
  tail -n 30 "$TMP/sink-build.log"
  die "docker build of the sink failed"
fi
if [ -n "$previous" ] && [ "$previous" != "$($DOCKER image inspect --format '{{.Id}}' "$SINK_IMAGE")" ]; then
  $DOCKER rmi "$previous" >/dev/null 2>&1 || true
fi
ok

step "certificates: private CA and server certificate (openssl)"
command -v openssl >/dev/null || die "openssl not found"
mkdir -p "$TMP/certs"
(
  cd "$TMP/certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj '/CN=Hellwall smoke CA' -keyout ca.key -out ca.pem
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj '/CN=hellwall.internal' -keyout privkey.pem -out server.csr
  printf 'subjectAltName=DNS:hellwall.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out fullchain.pem
  rm -f ca.key server.csr ext.cnf ca.srl
) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log"; die "openssl failed"; }
# The key stays 0600, owned by the container's user (uid 1000), as the README tells operators to do.
chmod 0600 "$TMP/certs/privkey.pem"
# (A group- or world-readable key is refused at start: see src/tls/tls-files.ts.)
chown 1000:1000 "$TMP/certs/privkey.pem" || die "cannot chown the key to uid 1000 (run as root)"
chmod 0755 "$TMP/certs"
ok

step "production-like container starts (certs :ro, SMTP sink, --read-only, --cap-drop ALL)"
$DOCKER network create "$NET" >/dev/null
$DOCKER run -d --name "$SINK" --network "$NET" --network-alias smtp-sink -p 127.0.0.1::8025 "$SINK_IMAGE" >/dev/null
$DOCKER volume create "$PVOL" >/dev/null
$DOCKER run -d --name "$PROD" --network "$NET" --hostname hellwall.internal \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$PVOL:/data" -v "$TMP/certs:/certs:ro" -p 127.0.0.1::7443 \
  -e HELLWALL_TLS_CERT=/certs/fullchain.pem -e HELLWALL_TLS_KEY=/certs/privkey.pem \
  -e HELLWALL_SMTP_HOST=smtp-sink -e HELLWALL_SMTP_PORT=1025 -e HELLWALL_SMTP_SECURITY=none \
  "$IMAGE" >/dev/null
pport=$(host_port "$PROD" 7443)
sport=$(host_port "$SINK" 8025)
[ -n "$pport" ] && [ -n "$sport" ] || die "ports not published on 127.0.0.1"
ok "127.0.0.1:$pport, sink web 127.0.0.1:$sport"

step "TLS ping trusting the private CA; no dev certificate made"
retry 90 hello_ok "$pport" "$TMP/certs/ca.pem" || die "no TLS reply within 90s"
if $DOCKER exec "$PROD" test -e /data/dev-cert.pem; then die "a dev certificate was generated"; fi
if logs_have "$PROD" 'SELF-SIGNED'; then die "dev certificate warning in the logs"; fi
ok

step "passcode by SMTP to the sink -> login -> authorized"
$DOCKER exec -e HELLWALL_PASSWORD "$PROD" node dist/cli.js user add --email "$EMAIL" --phone "$PHONE" >/dev/null
client "$pport" "$TMP/certs/ca.pem" passcode --email "$EMAIL" --mac "$MAC" >"$TMP/p-passcode.json" || die "passcode request failed"
retry 30 sink_code "$sport" || die "no passcode mail at the sink within 30s"
code=$(sink_code "$sport")
if $DOCKER exec "$PROD" sh -c 'ls /data/outbox/*.eml' >/dev/null 2>&1; then die "mail went to the outbox, not SMTP"; fi
client "$pport" "$TMP/certs/ca.pem" login --email "$EMAIL" --phone "$PHONE" --mac "$MAC" --passcode "$code" >"$TMP/p-login.json" || die "login failed"
ptoken=$(json token <"$TMP/p-login.json")
HELLWALL_TOKEN=$ptoken client "$pport" "$TMP/certs/ca.pem" check --mac "$MAC" >"$TMP/p-check.json" || die "check failed"
[ "$(json status <"$TMP/p-check.json")" = authorized ] || die "status $(json status <"$TMP/p-check.json")"
ok

step "HEALTHCHECK healthy with the own certificate (it reads /readyz on loopback, no TLS)"
retry 120 health_is "$PROD" healthy || die "health is $($DOCKER inspect --format '{{.State.Health.Status}}' "$PROD") after 120s"
ok

step "docker stop (production-like): clean, exit 0 within ${STOP_LIMIT}s"
stop_clean "$PROD"
ok "stopped in ${stop_took}s"

current=''
