#!/usr/bin/env bash
# Installs gVisor (Debian's runsc) and registers it with the running dockerd as the runtime "runsc", so the
# hostile suites also run under --runtime runsc. Idempotent; needs root. Used by .ci/run; see ENVIRONMENT.md.
set -euo pipefail
if ! command -v runsc >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q runsc >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q runsc >/dev/null
  }
fi
config=/etc/docker/daemon.json
mkdir -p /etc/docker
# --network=none: without it every start fails in a daemon with no bridge ("cannot run with network enabled").
# --oci-seccomp: without it runsc ignores the container's seccomp profile (asp refuses such a runsc).
node -e '
  const fs = require("fs");
  const file = process.argv[1];
  const config = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
  config.runtimes = { ...(config.runtimes || {}), runsc: { path: "/usr/bin/runsc", runtimeArgs: ["--network=none", "--oci-seccomp"] } };
  fs.writeFileSync(file, JSON.stringify(config, null, 2) + "\n");
' "$config"
# dockerd reloads its runtimes on SIGHUP.
pkill -HUP -x dockerd
for _ in $(seq 1 20); do
  docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q runsc && { echo "gvisor: runsc registered ($(runsc --version 2>/dev/null | head -1))"; exit 0; }
  sleep 0.5
done
echo "gvisor: dockerd did not pick up the runsc runtime" >&2
exit 1
