#!/usr/bin/env bash
# Build and install FreeSWITCH 1.10.12 + sofia-sip + spandsp + mod_audio_stream (with libwsc) on
# Debian 12, then lay the project's freeswitch_conf/ over the installed vanilla configuration.
# Run with --help for the options. Everything it does is in this file; docs/freeswitch.md explains it.
set -euo pipefail
# The whole script is one { ... } block, so bash reads all of it before running any of it: editing
# or updating this file while a build runs cannot change what that build does.
{

usage() {
  cat <<'EOF'
Usage: scripts/install_freeswitch.sh [options]

Builds FreeSWITCH 1.10.12 with sofia-sip, spandsp and mod_audio_stream (+ libwsc) for Debian 12,
installs it into a cached prefix outside the clone, and lays down the project's freeswitch_conf/.

Sources (one of):
  --sources PATH       a .tar.xz/.tar.gz archive or a directory holding the five trees
                       freeswitch/ sofia-sip/ spandsp/ mod_audio_stream/ libwsc/
                       (default: $CALLBOT_FS_SOURCES; if unset, git-clone the pinned commits)
  --key KEY            cache key to use instead of the computed one

Install location:
  --cache-dir DIR      cache root (default: $CALLBOT_FS_CACHE or /var/cache/callbot/freeswitch);
                       the prefix is DIR/<first 16 hex of the archive's sha256>
  --prefix DIR         install exactly here instead (no cache key)

Configuration:
  --esl-password PW    Event Socket password (default: $CALLBOT_ESL_PASSWORD). Required unless
                       --no-conf or --print-prefix. Never ClueCon.
  --softphone-password PW  SIP password of the softphone user 1000 (default:
                       $CALLBOT_SOFTPHONE_PASSWORD; else a random one, printed on stderr)
  --sip-ip IP          address for SIP/RTP and $${local_ip_v4} (default 127.0.0.1)
  --no-conf            build/install only, do not touch the configuration
  --conf-only          skip the build (the prefix must be built) and only lay down the configuration

Other:
  --print-prefix       print the prefix only and exit: status 0 if it is built, 3 if not
  --no-apt             do not apt-get install the build dependencies (fail if one is missing)
  --jobs N             make -jN (default: nproc)
  -h, --help           this text

Environment: CALLBOT_FS_SOURCES, CALLBOT_FS_CACHE, CALLBOT_ESL_PASSWORD, CALLBOT_SOFTPHONE_PASSWORD.
At the end it prints the prefix on stdout (progress goes to stderr).
A prefix is complete only when its stamp file .callbot-build-complete exists; a prefix without it
(an interrupted build) is removed and rebuilt. A second run with the same key skips the build.
EOF
}

# ---- pinned sources (the commits of the archive in ../shared/realswitch/) -----------------------
PIN_FREESWITCH_URL=https://github.com/signalwire/freeswitch.git
PIN_FREESWITCH_REV=a88d069d6ffb74df797bcaf001f7e63181c07a09        # tag v1.10.12
PIN_SOFIA_URL=https://github.com/freeswitch/sofia-sip.git
PIN_SOFIA_REV=6198851a610b7889c17e2d98fb84617bc1dd7aec             # tag v1.13.17
PIN_SPANDSP_URL=https://github.com/freeswitch/spandsp.git
PIN_SPANDSP_REV=0c7bcebef4f057b99832a338aafab7e379ef1395
PIN_AUDIO_STREAM_URL=https://github.com/amigniter/mod_audio_stream.git
PIN_AUDIO_STREAM_REV=ec2a781026a1c09b0c3a6161b8b896f0b9305922
PIN_LIBWSC_URL=https://github.com/amigniter/libwsc.git
PIN_LIBWSC_REV=09d18e5db9243a996692261a7a0839c9c346bc47

DEB_PACKAGES=(build-essential autoconf automake libtool libtool-bin pkg-config cmake git xz-utils
  libssl-dev zlib1g-dev libjpeg-dev libtiff-dev libsqlite3-dev libcurl4-openssl-dev libpcre3-dev
  libspeex-dev libspeexdsp-dev libedit-dev libldns-dev libopus-dev libsndfile1-dev uuid-dev
  libevent-dev)

# FreeSWITCH modules to build (modules.conf); freeswitch_conf/autoload_configs/modules.conf.xml loads them.
FS_MODULES=(applications/mod_commands applications/mod_db applications/mod_dptools applications/mod_expr
  applications/mod_hash codecs/mod_opus dialplans/mod_dialplan_xml endpoints/mod_loopback endpoints/mod_sofia
  event_handlers/mod_event_socket formats/mod_native_file formats/mod_sndfile formats/mod_tone_stream
  loggers/mod_console loggers/mod_logfile)

STAMP_NAME=.callbot-build-complete

log() { printf 'install_freeswitch: %s\n' "$*" >&2; }
die() { printf 'install_freeswitch: error: %s\n' "$*" >&2; exit 1; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF_SRC="$REPO_ROOT/freeswitch_conf"

sources=${CALLBOT_FS_SOURCES:-}
key=""
cache_dir=${CALLBOT_FS_CACHE:-/var/cache/callbot/freeswitch}
prefix=""
esl_password=${CALLBOT_ESL_PASSWORD:-}
softphone_password=${CALLBOT_SOFTPHONE_PASSWORD:-}
sip_ip=127.0.0.1
do_conf=1
conf_only=0
print_prefix=0
use_apt=1
jobs=$(nproc)

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --sources) need_arg "$@"; sources=$2; shift 2 ;;
    --key) need_arg "$@"; key=$2; shift 2 ;;
    --cache-dir) need_arg "$@"; cache_dir=$2; shift 2 ;;
    --prefix) need_arg "$@"; prefix=$2; shift 2 ;;
    --esl-password) need_arg "$@"; esl_password=$2; shift 2 ;;
    --softphone-password) need_arg "$@"; softphone_password=$2; shift 2 ;;
    --sip-ip) need_arg "$@"; sip_ip=$2; shift 2 ;;
    --no-conf) do_conf=0; shift ;;
    --conf-only) conf_only=1; shift ;;
    --print-prefix) print_prefix=1; shift ;;
    --no-apt) use_apt=0; shift ;;
    --jobs) need_arg "$@"; jobs=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

# ---- the cache key and the prefix ----------------------------------------------------------------
compute_key() {
  if [ -n "$key" ]; then
    printf '%s' "$key"
  elif [ -z "$sources" ]; then
    # git fetch of the pinned commits: key by the pins themselves
    printf '%s\n' "$PIN_FREESWITCH_REV" "$PIN_SOFIA_REV" "$PIN_SPANDSP_REV" "$PIN_AUDIO_STREAM_REV" \
      "$PIN_LIBWSC_REV" "${FS_MODULES[@]}" | sha256sum | cut -c1-16
  elif [ -f "$sources" ]; then
    sha256sum "$sources" | cut -c1-16
  elif [ -d "$sources" ]; then
    # a directory: key by the listing of its trees (path, size, mtime), not by reading every byte
    (cd "$sources" && find freeswitch sofia-sip spandsp mod_audio_stream libwsc -path '*/.git' -prune -o \
      -type f -printf '%p %s %T@\n' | LC_ALL=C sort) | sha256sum | cut -c1-16
  else
    die "--sources $sources: no such file or directory"
  fi
}

if [ -z "$prefix" ]; then
  prefix="$cache_dir/$(compute_key)"
fi
stamp="$prefix/$STAMP_NAME"

if [ "$print_prefix" = 1 ]; then
  printf '%s\n' "$prefix"
  [ -f "$stamp" ] && exit 0 || exit 3
fi

if [ "$do_conf" = 1 ]; then
  [ -n "$esl_password" ] || die "no ESL password: pass --esl-password PW or set CALLBOT_ESL_PASSWORD (or --no-conf)"
  [ "$esl_password" != ClueCon ] || die "refusing the vanilla ESL password ClueCon: choose your own"
  case "$esl_password" in
    *[!A-Za-z0-9._~+=-]*) die "ESL password: use only letters, digits and ._~+=- (it goes into XML and a shell)" ;;
  esac
  case "$softphone_password" in
    *[!A-Za-z0-9._~+=-]*) die "softphone password: use only letters, digits and ._~+=-" ;;
  esac
  case "$sip_ip" in
    *[!0-9.]*|"") die "--sip-ip $sip_ip: an IPv4 address" ;;
  esac
fi

# ---- Debian build dependencies -------------------------------------------------------------------
install_deps() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian build dependencies: all present, apt skipped"
    return
  fi
  [ "$use_apt" = 1 ] || die "missing Debian packages (and --no-apt): ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# ---- sources into the work dir -------------------------------------------------------------------
git_pinned() {  # url rev dir
  git init -q "$3"
  git -C "$3" fetch -q --depth 1 "$1" "$2"
  git -C "$3" checkout -q FETCH_HEAD
}

get_sources() {  # into $work/src
  local src="$work/src"
  mkdir -p "$src"
  if [ -z "$sources" ]; then
    log "fetching the pinned sources with git"
    git_pinned "$PIN_FREESWITCH_URL" "$PIN_FREESWITCH_REV" "$src/freeswitch"
    git_pinned "$PIN_SOFIA_URL" "$PIN_SOFIA_REV" "$src/sofia-sip"
    git_pinned "$PIN_SPANDSP_URL" "$PIN_SPANDSP_REV" "$src/spandsp"
    git_pinned "$PIN_AUDIO_STREAM_URL" "$PIN_AUDIO_STREAM_REV" "$src/mod_audio_stream"
    git_pinned "$PIN_LIBWSC_URL" "$PIN_LIBWSC_REV" "$src/libwsc"
  elif [ -f "$sources" ]; then
    log "unpacking $sources"
    tar -xf "$sources" -C "$src"
    # accept the five trees at the top, or inside one top-level directory
    if [ ! -d "$src/freeswitch" ]; then
      local top
      top=$(find "$src" -mindepth 2 -maxdepth 2 -type d -name freeswitch | head -n1)
      [ -n "$top" ] || die "$sources holds no freeswitch/ tree"
      src=$(dirname "$top")
    fi
  else
    log "copying $sources"
    cp -a "$sources"/. "$src"/
  fi
  local t
  for t in freeswitch sofia-sip spandsp mod_audio_stream libwsc; do
    [ -d "$src/$t" ] || die "sources lack the $t/ tree"
  done
  SRC=$src
}

build_all() {
  local P=$prefix
  export PKG_CONFIG_PATH="$P/lib/pkgconfig" LDFLAGS="-Wl,-rpath,$P/lib" CPPFLAGS="-I$P/include"
  local t0 t
  t0=$(date +%s)

  t=$(date +%s); log "sofia-sip: building"
  (cd "$SRC/sofia-sip" && ./bootstrap.sh && ./configure --prefix="$P" --with-pic --without-glib --without-doxygen \
    && make -j"$jobs" && make install) >"$work/sofia-sip.log" 2>&1 || { tail -n 40 "$work/sofia-sip.log" >&2; die "sofia-sip build failed"; }
  log "sofia-sip: $(( $(date +%s) - t )) s"

  t=$(date +%s); log "spandsp: building"
  (cd "$SRC/spandsp" && ./bootstrap.sh && ./configure --prefix="$P" --with-pic \
    && make -j"$jobs" && make install) >"$work/spandsp.log" 2>&1 || { tail -n 40 "$work/spandsp.log" >&2; die "spandsp build failed"; }
  log "spandsp: $(( $(date +%s) - t )) s"

  t=$(date +%s); log "FreeSWITCH: building (the long one)"
  printf '%s\n' "${FS_MODULES[@]}" >"$SRC/freeswitch/modules.conf"
  (cd "$SRC/freeswitch" && ./bootstrap.sh -j \
    && ./configure --prefix="$P" --disable-fhs --disable-libvpx --disable-libyuv \
         --disable-core-odbc-support --disable-core-pgsql-support \
    && make -j"$jobs" && make install) >"$work/freeswitch.log" 2>&1 || { tail -n 60 "$work/freeswitch.log" >&2; die "FreeSWITCH build failed"; }
  log "FreeSWITCH: $(( $(date +%s) - t )) s"

  t=$(date +%s); log "mod_audio_stream: building"
  rm -rf "$SRC/mod_audio_stream/libs/libwsc"
  mkdir -p "$SRC/mod_audio_stream/libs"
  cp -a "$SRC/libwsc" "$SRC/mod_audio_stream/libs/libwsc"
  (mkdir -p "$SRC/mod_audio_stream/build" && cd "$SRC/mod_audio_stream/build" \
    && cmake -DCMAKE_BUILD_TYPE=Release -DUSE_TLS=OFF -DCMAKE_INSTALL_PREFIX="$P" .. \
    && make -j"$jobs" && make install) >"$work/mod_audio_stream.log" 2>&1 || { tail -n 40 "$work/mod_audio_stream.log" >&2; die "mod_audio_stream build failed"; }
  [ -f "$P/mod/mod_audio_stream.so" ] || die "mod_audio_stream.so did not land in $P/mod/"
  log "mod_audio_stream: $(( $(date +%s) - t )) s"

  log "build: $(( $(date +%s) - t0 )) s in all"
}

# ---- configuration --------------------------------------------------------------------------------
xml_subst() {  # template -> dest, replacing @PLACEHOLDERS@
  sed -e "s|@CALLBOT_ESL_PASSWORD@|$esl_password|g" \
      -e "s|@CALLBOT_SOFTPHONE_PASSWORD@|$softphone_password|g" \
      -e "s|@CALLBOT_DEFAULT_PASSWORD@|$default_password|g" \
      -e "s|@CALLBOT_SIP_IP@|$sip_ip|g" "$1" >"$2"
}

find_fixture() {  # NAME.wav -> its path in the repository
  local d
  for d in tests/fixtures/calls tests/fixtures/amd callbot/demo_calls; do
    if [ -f "$REPO_ROOT/$d/$1" ]; then printf '%s\n' "$REPO_ROOT/$d/$1"; return; fi
  done
  d=$(find "$REPO_ROOT" \( -name .git -o -name .venv -o -name node_modules \) -prune -o -type f -name "$1" -print | head -n1)
  [ -n "$d" ] || die "fixture $1 not found in $REPO_ROOT"
  printf '%s\n' "$d"
}

lay_down_conf() {
  local C="$prefix/conf"
  [ -f "$C/freeswitch.xml" ] && [ -f "$C/vars.xml" ] || die "$C is not an installed FreeSWITCH configuration"
  log "laying freeswitch_conf/ over $C"
  if [ -z "$softphone_password" ] && [ -f "$C/callbot_vars.xml" ]; then  # keep the one laid down before
    softphone_password=$(sed -n 's|.*data="callbot_softphone_password=\([^"]*\)".*|\1|p' "$C/callbot_vars.xml")
    case "$softphone_password" in @*|*[!A-Za-z0-9._~+=-]*) softphone_password="" ;; esac
  fi
  if [ -z "$softphone_password" ]; then
    softphone_password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    log "generated the softphone SIP password: $softphone_password (pass --softphone-password to choose it)"
  fi
  # default_password is only the vanilla directory users' password (1000-1019); nobody needs to know it
  default_password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

  # secrets and addresses: one file, included at the TOP of the vanilla vars.xml (local_ip_v4 and
  # domain are expanded while vars.xml is read); the vanilla default_password=1234 and the two STUN
  # lookups are removed (an X-PRE-PROCESS line cannot be commented out). See callbot_vars.xml.
  (umask 077 && xml_subst "$CONF_SRC/callbot_vars.xml" "$C/callbot_vars.xml")
  sed -i -e '/<X-PRE-PROCESS cmd="set" data="default_password=1234"\/>/d' \
         -e '/<X-PRE-PROCESS cmd="stun-set" data="external_rtp_ip=stun:/d' \
         -e '/<X-PRE-PROCESS cmd="stun-set" data="external_sip_ip=stun:/d' "$C/vars.xml"
  if ! grep -q 'data="callbot_vars.xml"' "$C/vars.xml"; then
    sed -i -e '0,/^<include>/s|^<include>|<include>\n  <!-- callbot: secrets and addresses, first (scripts/install_freeswitch.sh) -->\n  <X-PRE-PROCESS cmd="include" data="callbot_vars.xml"/>|' "$C/vars.xml"
  fi
  grep -q 'data="callbot_vars.xml"' "$C/vars.xml" || die "could not add the callbot_vars.xml include to $C/vars.xml"
  if grep -q 'default_password=1234\|cmd="stun-set"' "$C/vars.xml"; then
    die "$C/vars.xml still sets default_password=1234 or a STUN lookup: edit it by hand (see freeswitch_conf/callbot_vars.xml)"
  fi

  install -m 0644 "$CONF_SRC/autoload_configs/event_socket.conf.xml" "$C/autoload_configs/event_socket.conf.xml"
  install -m 0644 "$CONF_SRC/autoload_configs/modules.conf.xml" "$C/autoload_configs/modules.conf.xml"
  install -m 0644 "$CONF_SRC/dialplan/callbot.xml" "$C/dialplan/callbot.xml"
  # the test callees (loopback/<ext>/callbot_test)
  install -m 0644 "$CONF_SRC/dialplan/callbot_test.xml" "$C/dialplan/callbot_test.xml"
  install -m 0644 "$CONF_SRC/directory/default/callbot_softphone.xml" "$C/directory/default/callbot_softphone.xml"
  # the vanilla user 1000 would shadow ours: keep a copy beside, out of the include glob
  if [ -f "$C/directory/default/1000.xml" ]; then
    mv "$C/directory/default/1000.xml" "$C/directory/default/1000.xml.vanilla"
  fi
  install -m 0644 "$CONF_SRC/sip_profiles/external/callbot_gateway.xml.example" \
    "$C/sip_profiles/external/callbot_gateway.xml.example"
  # IPv6 profiles: not used (and they fail to bind on hosts without IPv6)
  local f
  for f in internal-ipv6.xml external-ipv6.xml; do
    if [ -f "$C/sip_profiles/$f" ]; then mv "$C/sip_profiles/$f" "$C/sip_profiles/$f.disabled"; fi
  done

  # the test callees' voices and their sidecars, from the repository's fixtures (never copied
  # into the repository itself)
  local S="$prefix/sounds/callbot" w f
  mkdir -p "$S"
  for w in long_reply short_yes vm_en_us_beep1000 human_en_us_hello; do
    f=$(find_fixture "$w.wav")
    install -m 0644 "$f" "$S/$w.wav"
    if [ -f "${f%.wav}.json" ]; then install -m 0644 "${f%.wav}.json" "$S/$w.json"; fi
  done
  log "configuration laid down; test callee sounds in $S"
}

# ---- main ------------------------------------------------------------------------------------------
if [ "$conf_only" = 1 ]; then
  [ -f "$stamp" ] || die "--conf-only: $prefix is not built (no $STAMP_NAME)"
  log "--conf-only: build skipped"
elif [ -f "$stamp" ]; then
  log "already built in $prefix ($(cat "$stamp")): build skipped"
else
  if [ -e "$prefix" ]; then
    log "$prefix exists without $STAMP_NAME (an interrupted build): removing it"
    rm -rf "$prefix"
  fi
  install_deps
  work=$(mktemp -d "${TMPDIR:-/tmp}/callbot-fs-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  started=$(date +%s)
  get_sources
  mkdir -p "$prefix"
  build_all
  # the stamp is written last: its presence means the prefix is complete
  printf 'built %s from %s in %s s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${sources:-pinned git commits}" \
    "$(( $(date +%s) - started ))" >"$stamp"
  log "built in $(( $(date +%s) - started )) s"
fi

if [ "$do_conf" = 1 ]; then
  lay_down_conf
fi
printf '%s\n' "$prefix"
exit 0
}
