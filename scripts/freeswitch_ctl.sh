#!/usr/bin/env bash
# Start, stop or query a FreeSWITCH installed by scripts/install_freeswitch.sh.
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: scripts/freeswitch_ctl.sh start|stop|status|cli [PREFIX] [-- fs_cli args]

  start   run PREFIX/bin/freeswitch -nc -nonat (in the background, no NAT probing) and wait until
          `fs_cli -p PASSWORD -x status` answers (up to $CALLBOT_FS_START_TIMEOUT s, default 60)
  stop    `fs_cli -x 'fsctl shutdown'`, wait for the process to exit (SIGTERM, then SIGKILL, after 20 s)
  status  print `fs_cli -x status`; exit 0 if it answers, 3 if FreeSWITCH is not running
  cli     run PREFIX/bin/fs_cli with the address and password, e.g. `cli PREFIX -- -x 'show channels'`

PREFIX defaults to $CALLBOT_FREESWITCH_PREFIX, else to `scripts/install_freeswitch.sh --print-prefix`.
The ESL password is $CALLBOT_ESL_PASSWORD, else the one in PREFIX/conf/callbot_vars.xml.
EOF_USAGE
}

die() { printf 'freeswitch_ctl: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'freeswitch_ctl: %s\n' "$*" >&2; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
action=$1; shift
case "$action" in -h|--help) usage; exit 0 ;; start|stop|status|cli) ;; *) usage >&2; exit 2 ;; esac

prefix=""
if [ $# -ge 1 ] && [ "$1" != -- ]; then prefix=$1; shift; fi
if [ $# -ge 1 ] && [ "$1" = -- ]; then shift; fi
if [ -z "$prefix" ]; then
  prefix=${CALLBOT_FREESWITCH_PREFIX:-$("$(dirname "${BASH_SOURCE[0]}")/install_freeswitch.sh" --print-prefix || true)}
fi
[ -x "$prefix/bin/freeswitch" ] || die "$prefix/bin/freeswitch: not installed (run scripts/install_freeswitch.sh)"

password=${CALLBOT_ESL_PASSWORD:-}
if [ -z "$password" ] && [ -r "$prefix/conf/callbot_vars.xml" ]; then
  password=$(sed -n 's|.*data="callbot_esl_password=\([^"]*\)".*|\1|p' "$prefix/conf/callbot_vars.xml")
fi
[ -n "$password" ] || die "no ESL password: set CALLBOT_ESL_PASSWORD"
port=${CALLBOT_ESL_PORT:-8021}

fs_cli() { "$prefix/bin/fs_cli" -H 127.0.0.1 -P "$port" -p "$password" "$@"; }
pidfile="$prefix/run/freeswitch.pid"
pid_alive() {
  local pid
  [ -f "$pidfile" ] && pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
answers() { fs_cli -t 2000 -x status 2>/dev/null | grep -q '^UP '; }

case "$action" in
  start)
    if pid_alive; then
      answers || die "FreeSWITCH pid $(cat "$pidfile") is running but does not answer on ESL 127.0.0.1:$port"
      log "already running (pid $(cat "$pidfile"))"
      exit 0
    fi
    rm -f "$pidfile"
    # -nc: no console, it forks into the background; what it prints before that (an XML error in
    # the configuration, for one) goes to log/freeswitch.start.log
    mkdir -p "$prefix/log"
    "$prefix/bin/freeswitch" -nc -nonat >"$prefix/log/freeswitch.start.log" 2>&1
    timeout=${CALLBOT_FS_START_TIMEOUT:-60}
    deadline=$(( $(date +%s) + timeout ))
    started=$(date +%s)
    until answers; do
      if ! pid_alive && [ "$(date +%s)" -ge $(( started + 2 )) ]; then
        cat "$prefix/log/freeswitch.start.log" >&2
        tail -n 30 "$prefix/log/freeswitch.log" >&2 2>/dev/null || true
        die "FreeSWITCH exited during start-up (see above and $prefix/log/freeswitch.log)"
      fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        tail -n 30 "$prefix/log/freeswitch.log" >&2 || true
        die "FreeSWITCH did not answer on ESL 127.0.0.1:$port within $timeout s (log: $prefix/log/freeswitch.log)"
      fi
      sleep 0.2
    done
    log "up (pid $(cat "$pidfile")), ESL 127.0.0.1:$port"
    ;;
  stop)
    if ! pid_alive; then log "not running"; exit 0; fi
    pid=$(cat "$pidfile")
    fs_cli -x 'fsctl shutdown' >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still running after 20 s: SIGTERM"
      kill -TERM "$pid" 2>/dev/null || true
      sleep 3
      kill -0 "$pid" 2>/dev/null && { log "SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    log "stopped"
    ;;
  status)
    if ! pid_alive; then echo "FreeSWITCH is not running ($prefix)"; exit 3; fi
    fs_cli -x status
    ;;
  cli)
    exec "$prefix/bin/fs_cli" -H 127.0.0.1 -P "$port" -p "$password" "$@"
    ;;
esac
