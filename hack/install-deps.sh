#!/usr/bin/env bash
# Installs the real servers the integration tests run against, from Debian 12's
# archive: prometheus (with promtool), prometheus-alertmanager, victoria-metrics and
# docker-registry (the CNCF distribution registry, which test/release pushes the release to).
#
# Idempotent: a package is installed only when its binary is missing, and
# `apt-get update` runs (once) only when something has to be installed.
# Meant for CI on a fresh Debian 12 machine, run as root.
#
# The packages' maintainer scripts would start system services listening on
# 0.0.0.0:9090/9093/8428/5000. Tests start their own servers on free 127.0.0.1
# ports, so this script keeps the package services from starting (a temporary
# policy-rc.d while installing) and stops any that started all the same.
#
# Exits non-zero if a binary is still missing at the end.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Each component: Debian package | binaries to look for (first found wins) |
# service name (init script / systemd unit) | pgrep -f pattern for the daemon.
# pgrep -x cannot be used: process names are cut to 15 characters
# ("prometheus-aler", "victoria-metric").
COMPONENTS=(
  "prometheus|prometheus|prometheus|^(/usr/bin/)?prometheus( |$)"
  "prometheus-alertmanager|prometheus-alertmanager alertmanager|prometheus-alertmanager|^(/usr/bin/)?(prometheus-)?alertmanager( |$)"
  "victoria-metrics|victoria-metrics victoria-metrics-prod|victoria-metrics|^(/usr/bin/)?victoria-metrics(-prod)?( |$)"
  "docker-registry|docker-registry|docker-registry|^(/usr/bin/)?docker-registry( |$)"
)

# find_binary BINARIES: prints the path of the first binary found.
find_binary() {
  local b p
  for b in $1; do
    if p=$(command -v "$b" 2>/dev/null); then
      printf '%s\n' "$p"
      return 0
    fi
    if [[ -x /usr/bin/$b ]]; then
      printf '%s\n' "/usr/bin/$b"
      return 0
    fi
  done
  return 1
}

# daemon_pids PATTERN: PIDs whose parent is init (PID 1), i.e. daemons started
# by an init script or a service manager, whose command line matches PATTERN.
daemon_pids() {
  local pid ppid
  for pid in $(pgrep -f "$1" || true); do
    ppid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ') || continue
    [[ $ppid == 1 ]] && printf '%s\n' "$pid"
  done
  return 0
}

missing_pkgs=()
declare -A before_pids=()
for c in "${COMPONENTS[@]}"; do
  IFS='|' read -r pkg bins svc pattern <<<"$c"
  if bin=$(find_binary "$bins"); then
    log "$pkg: found $bin"
  else
    missing_pkgs+=("$pkg")
  fi
  before_pids[$pkg]=" $(daemon_pids "$pattern" | tr '\n' ' ')"
done

if ((${#missing_pkgs[@]} > 0)); then
  [[ $(id -u) == 0 ]] || die "must run as root to install: ${missing_pkgs[*]}"
  log "installing: ${missing_pkgs[*]}"

  # Keep maintainer scripts from starting the services (invoke-rc.d and
  # deb-systemd-invoke honour policy-rc.d exit code 101). Only when the
  # machine has no policy of its own, and removed again on exit.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from hack/install-deps.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi

  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}"

  rm -f "$policy" 2>/dev/null || true
  trap - EXIT

  # Stop services the packages started all the same: new daemons (not there
  # before the install) whose parent is init.
  have_systemd=false
  [[ -d /run/systemd/system ]] && have_systemd=true
  for c in "${COMPONENTS[@]}"; do
    IFS='|' read -r pkg bins svc pattern <<<"$c"
    [[ " ${missing_pkgs[*]} " == *" $pkg "* ]] || continue
    for pid in $(daemon_pids "$pattern"); do
      [[ ${before_pids[$pkg]} == *" $pid "* ]] && continue
      log "$pkg: stopping service $svc started by the package (pid $pid)"
      if $have_systemd; then
        systemctl stop "$svc" || true
      elif [[ -x /etc/init.d/$svc ]]; then
        /etc/init.d/"$svc" stop || true
      fi
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 2
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  done
fi

# Final check and versions.
failed=0
for c in "${COMPONENTS[@]}"; do
  IFS='|' read -r pkg bins svc pattern <<<"$c"
  if ! bin=$(find_binary "$bins"); then
    log "ERROR: $pkg: none of [$bins] found after install"
    failed=1
    continue
  fi
  case $pkg in
    # Debian's victoria-metrics build prints an empty -version.
    victoria-metrics) version=$("$bin" -version 2>&1 | head -n1) || true ;;
    *) version=$("$bin" --version 2>&1 | head -n1) || true ;;
  esac
  deb=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || deb="not from dpkg"
  printf '%-24s %-34s deb %-22s %s\n' "$pkg" "$bin" "$deb" "${version:-(binary reports no version)}"
done
# promtool comes with the prometheus package; test/monitoring runs `promtool check rules` and
# `promtool test rules` on the shipped alerts.
if promtool=$(find_binary promtool); then
  printf '%-24s %-34s deb %-22s %s\n' "promtool" "$promtool" "(prometheus)" "$("$promtool" --version 2>&1 | head -n1)"
else
  log "ERROR: promtool: not found after installing prometheus"
  failed=1
fi
((failed == 0)) || die "some binaries are still missing"
