#!/usr/bin/env bash
# CI: prepare the real FreeSWITCH for the `realswitch` tests (tests/realswitch/), when the sources
# archive is beside the clone in ../shared/realswitch/. Progress goes to stderr; stdout carries only
# `export NAME=value` lines, for `.ci/run` to eval:
#     eval "$(bash .ci/realswitch.sh)"
# Without the archive it prints a comment saying why the realswitch tests will skip, and exits 0.
# The build is cached outside the clone (scripts/install_freeswitch.sh, keyed by the archive's
# sha256): the first run takes about 6 minutes on 2 cores, a warm one about a second.
set -euo pipefail
{
cd "$(dirname "$0")/.."
archive=${CALLBOT_FS_SOURCES:-../shared/realswitch/freeswitch-1.10.12-sources.tar.xz}
if [ ! -f "$archive" ]; then
  echo "# realswitch: $archive not found: the realswitch tests will skip"
  echo "realswitch: $archive not found: the realswitch tests will skip" >&2
  exit 0
fi
start=$(date +%s)
# A password for this build's first configuration only: the test session lays the configuration
# down again with its own fresh passwords. It is not exported (it would leak into other tests).
password="ci-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
if ! prefix=$(scripts/install_freeswitch.sh --sources "$archive" --esl-password "$password" | tail -n 1); then
  echo "# realswitch: scripts/install_freeswitch.sh failed: the realswitch tests will skip"
  echo "realswitch: scripts/install_freeswitch.sh failed (see above)" >&2
  exit 0
fi
if ! command -v baresip >/dev/null 2>&1; then
  echo "realswitch: installing baresip (the softphone test)" >&2
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if ! { "${sudo[@]}" apt-get update -q && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q \
      --no-install-recommends baresip-core; } >&2; then
    echo "realswitch: baresip could not be installed: the softphone tests will skip" >&2
  fi
fi
echo "realswitch: FreeSWITCH ready in $prefix after $(( $(date +%s) - start )) s" >&2
printf 'export CALLBOT_FREESWITCH_PREFIX=%q\n' "$prefix"
exit 0
}
