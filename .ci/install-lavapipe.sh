#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) from <codename>-backports so that Dawn (npm `webgpu`)
# finds a Vulkan adapter on a machine without a GPU. Debian bookworm's own Mesa 22 is too old for Dawn;
# bookworm-backports carries Mesa 25, which works.
#
# Idempotent:
#   * if mesa-vulkan-drivers >= 24 and libvulkan1 are already installed it does nothing and exits 0;
#   * if <codename>-backports is already configured in any apt source it is reused as is; otherwise an entry
#     is derived from the machine's existing Debian source (deb822 /etc/apt/sources.list.d/*.sources or a
#     classic "deb ..." line) by reusing its URI and signed-by key, and written to
#     /etc/apt/sources.list.d/lavi-backports.sources.
# apt's output goes to a temporary log that is printed only when a step fails.
#
# Environment: LAVI_MIN_MESA (default 24) is the lowest acceptable Mesa major version.
set -euo pipefail

MIN_MESA="${LAVI_MIN_MESA:-24}"
OUR_SOURCE=/etc/apt/sources.list.d/lavi-backports.sources

log() { printf 'install-lavapipe: %s\n' "$*"; }
die() { printf 'install-lavapipe: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- already installed? ---------------------------------------------------------------------------------
installed_version() {
  # Prints the installed version of package $1, or nothing when it is not (fully) installed.
  local out
  out="$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null || true)"
  case "$out" in
    installed\ *) printf '%s' "${out#installed }" ;;
  esac
}

mesa_ok() {
  local v
  v="$(installed_version mesa-vulkan-drivers)"
  [ -n "$v" ] || return 1
  [ -n "$(installed_version libvulkan1)" ] || return 1
  dpkg --compare-versions "$v" ge "${MIN_MESA}~" || return 1
  # the lavapipe ICD manifest must be present as well
  compgen -G '/usr/share/vulkan/icd.d/lvp_icd*.json' >/dev/null || return 1
}

if mesa_ok; then
  log "lavapipe already installed (mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers), libvulkan1 $(installed_version libvulkan1)); nothing to do"
  exit 0
fi

if [ -n "$(installed_version mesa-vulkan-drivers)" ]; then
  log "installed mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers) is older than Mesa ${MIN_MESA}; upgrading from backports"
fi

# ---- privileges -------------------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    die "must run as root (or with password-less sudo) to install packages"
  fi
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian only"

# ---- codename ---------------------------------------------------------------------------------------------
CODENAME=""
if [ -r /etc/os-release ]; then
  # shellcheck source=/dev/null
  CODENAME="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
fi
[ -n "$CODENAME" ] || CODENAME=bookworm
BACKPORTS="${CODENAME}-backports"

# ---- apt source -------------------------------------------------------------------------------------------
backports_configured() {
  local f
  # classic one-line sources
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -Eq "^[[:space:]]*deb[[:space:]].*[[:space:]]${BACKPORTS}([[:space:]]|$)" "$f" && return 0
  done
  # deb822 sources: a stanza whose Suites lists <codename>-backports and which is not disabled
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$BACKPORTS" '
      function flush() { if (hit && !disabled) found = 1; hit = 0; disabled = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
      tolower($1) == "enabled:" && tolower($2) == "no" { disabled = 1 }
      END { flush(); exit found ? 0 : 1 }
    ' "$f" && return 0
  done
  return 1
}

# Prints a deb822 stanza for <codename>-backports derived from the first enabled deb822 stanza that serves
# the plain <codename> suite. The Signed-By field is copied verbatim (it may be a path or an inline key).
derive_from_deb822() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    [ "$f" = "$OUR_SOURCE" ] && continue
    awk -v want="$CODENAME" -v bp="$BACKPORTS" '
      function reset() { uri = ""; signed = ""; types = ""; suite_hit = 0; disabled = 0; field = "" }
      function flush() {
        if (!done && suite_hit && !disabled && uri != "" && types ~ /(^|[[:space:]])deb([[:space:]]|$)/) {
          print "Types: deb"
          print "URIs: " uri
          print "Suites: " bp
          print "Components: main"
          if (signed != "") printf "%s", signed
          done = 1
        }
        reset()
      }
      BEGIN { reset(); done = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      /^[[:space:]]/ { if (field == "signed-by:") signed = signed $0 "\n"; next }   # continuation line
      {
        field = tolower($1)
        if (field == "types:") { types = $0; sub(/^[^:]*:/, "", types) }
        else if (field == "uris:") uri = $2
        else if (field == "suites:") { for (i = 2; i <= NF; i++) if ($i == want) suite_hit = 1 }
        else if (field == "enabled:" && tolower($2) == "no") disabled = 1
        else if (field == "signed-by:") { signed = $0 "\n" }
      }
      END { flush(); exit done ? 0 : 1 }
    ' "$f" && return 0
  done
  return 1
}

# Same from a classic line: deb [signed-by=/path arch=...] URI <codename> main ...
derive_from_list() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v want="$CODENAME" -v bp="$BACKPORTS" '
      /^[[:space:]]*deb[[:space:]]/ {
        line = $0
        sub(/#.*/, "", line)
        opts = ""
        if (match(line, /\[[^]]*\]/)) { opts = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH) }
        n = split(line, w, /[[:space:]]+/)
        k = 0; for (i = 1; i <= n; i++) if (w[i] != "") v[++k] = w[i]
        # v[1] = "deb", v[2] = URI, v[3] = suite
        if (k < 3 || v[3] != want) next
        signed = ""
        m = split(opts, o, /[[:space:]]+/)
        for (i = 1; i <= m; i++) if (tolower(o[i]) ~ /^signed-by=/) { signed = o[i]; sub(/^[^=]*=/, "", signed) }
        print "Types: deb"
        print "URIs: " v[2]
        print "Suites: " bp
        print "Components: main"
        if (signed != "") print "Signed-By: " signed
        found = 1
        exit
      }
      END { exit found ? 0 : 1 }
    ' "$f" && return 0
  done
  return 1
}

APT_LOG="$(mktemp /tmp/lavi-apt.XXXXXX.log)"
trap 'rm -f "$APT_LOG"' EXIT

run_quiet() {
  # Runs "$@" with output into $APT_LOG; on failure prints the log and exits.
  if ! "$@" >"$APT_LOG" 2>&1; then
    printf 'install-lavapipe: command failed: %s\n--- output ---\n' "$*" >&2
    cat "$APT_LOG" >&2
    printf -- '--------------\n' >&2
    exit 1
  fi
}

t0=$SECONDS
if backports_configured; then
  log "${BACKPORTS} already configured"
else
  entry="$(derive_from_deb822 || derive_from_list || true)"
  [ -n "$entry" ] || die "no Debian apt source for suite '${CODENAME}' found to derive ${BACKPORTS} from"
  log "adding ${BACKPORTS} as ${OUR_SOURCE}:"
  printf '%s\n' "$entry" | sed 's/^/    /'
  printf '# Written by lavi-ts .ci/install-lavapipe.sh (Mesa lavapipe for WebGPU tests)\n%s\n' "$entry" \
    | "${SUDO[@]}" tee "$OUR_SOURCE" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
# Retries for flaky mirrors; wait for a dpkg/apt lock held by e.g. unattended-upgrades on a fresh machine.
APT_OPTS=(-o Dpkg::Use-Pty=0 -o APT::Color=0 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

log "apt-get update"
run_quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update
log "apt-get install -t ${BACKPORTS} mesa-vulkan-drivers libvulkan1"
run_quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y --no-install-recommends \
  -t "$BACKPORTS" mesa-vulkan-drivers libvulkan1

mesa_ok || die "after installing, mesa-vulkan-drivers is '$(installed_version mesa-vulkan-drivers)' (need >= ${MIN_MESA}) or the lavapipe ICD is missing"
log "installed mesa-vulkan-drivers $(installed_version mesa-vulkan-drivers), libvulkan1 $(installed_version libvulkan1) in $((SECONDS - t0))s"
