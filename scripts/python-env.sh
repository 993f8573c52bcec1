# Sourced by scripts/test and scripts/serve: finds a Python 3.11+ that may pip-install, making a
# project venv (.venv) when the system's Python refuses (Debian's own, PEP 668), and installs the
# Debian packages the caller lists in APT_PACKAGES. Leaves PY (the interpreter) and SCRIPTS (where
# its console scripts go, put first on PATH).

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

apt_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    [[ -n $candidate ]] || continue
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      "$candidate" -c 'import sys; print(sys.executable)'
      return
    fi
  done
  die "Python 3.11 or newer is required"
}

externally_managed() {
  "$1" - <<'EOF'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if not in_venv and os.path.exists(marker) else 1)
EOF
}

PY=$(pick_python)
VENV=.venv
MAKE_VENV=0
if [[ -x $VENV/bin/python ]]; then
  PY=$VENV/bin/python
elif externally_managed "$PY"; then
  "$PY" -c 'import ensurepip' 2>/dev/null || APT_PACKAGES+=(python3-venv)
  MAKE_VENV=1
elif ! "$PY" -m pip --version >/dev/null 2>&1; then
  APT_PACKAGES+=(python3-pip)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  apt_installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $MAKE_VENV -eq 1 ]]; then
  log "creating $VENV ($PY is managed by the system)"
  "$PY" -m venv "$VENV"
  PY=$VENV/bin/python
fi

SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$SCRIPTS:$PATH"

# pip_install STAMP ARGS...: runs pip only when pyproject.toml changed since STAMP was written, or
# when the caller's check (CHECK, a shell command) fails.
pip_install() {
  local stamp=$1 want
  shift
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $PY $*"
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]] || ! eval "$CHECK" >/dev/null 2>&1; then
    log "installing $* (pip)"
    "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@"
    mkdir -p "$(dirname "$stamp")"
    printf '%s' "$want" >"$stamp"
  fi
}
