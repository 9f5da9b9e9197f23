#!/usr/bin/env bash
# Install or update the streetwatch edge agent on a Debian 12 / Raspberry Pi OS (bookworm) / Jetson (Ubuntu) box.
#
# Idempotent: run it again to update the software (and the model, with --asset-mirror). The config
# /etc/streetwatch/agent.yaml and the secrets file /etc/streetwatch/agent.env are created once and never
# overwritten. Run it from a checkout or release tarball of the repository (it uses deploy/ and models/ beside it).
# How to enroll, check and troubleshoot a node: docs/technician.md.
#
# Layout:
#   /opt/streetwatch/venv            Python venv with streetwatch[edge]   (root, read-only to the agent)
#   /opt/streetwatch/assets/models   detector models                     (root, read-only to the agent)
#   /etc/streetwatch/agent.yaml      config                              (root:streetwatch 0640)
#   /etc/streetwatch/agent.env       secrets for systemd's EnvironmentFile (root 0600)
#   /var/lib/streetwatch             state: outbox, evidence, credentials, status.json (streetwatch 0750)
#   /etc/systemd/system/streetwatch-agent.service
#   /usr/local/bin/streetwatch-agent -> /opt/streetwatch/venv/bin/streetwatch-agent
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo scripts/install-node.sh [options]

  --source PATH            wheel, sdist or source folder to install (default: this repository)
  --asset-mirror DIR       copy the model from this mirror into /opt/streetwatch/assets (sha256-checked)
  --model NAME             model name from models/manifest.yaml (default: the manifest's default)
  --wheelhouse DIR         offline install: take every package from this folder of wheels (pip --no-index)
  --python PATH            interpreter for the venv, Python >= 3.11 (default: python3)
  --system-site-packages   let the venv see system packages (Jetson: JetPack's onnxruntime-gpu, OpenCV)
  --no-deps                install streetwatch alone; its dependencies must already be importable
  --prefix DIR             install every path under DIR (staging, tests): no user is created, nothing is
                           chowned, apt and systemctl are not called
  --no-systemd             do not install the systemd unit
  --no-apt                 never call apt-get
  --dry-run                print what would be done and change nothing
  -h, --help               this help
EOF
}

die() { printf 'install-node: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
SERVICE_USER=streetwatch
PREFIX=""
SOURCE="$REPO_DIR"
MIRROR=""
MODEL=""
WHEELHOUSE=""
PYTHON=python3
SYSTEM_SITE=0
NO_DEPS=0
SYSTEMD=1
APT=1
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --source) SOURCE=${2:?--source needs a path}; shift 2 ;;
    --asset-mirror) MIRROR=${2:?--asset-mirror needs a folder}; shift 2 ;;
    --model) MODEL=${2:?--model needs a name}; shift 2 ;;
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift 2 ;;
    --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
    --system-site-packages) SYSTEM_SITE=1; shift ;;
    --no-deps) NO_DEPS=1; shift ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --no-apt) APT=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

if [[ -n "$PREFIX" ]]; then
  [[ $DRY_RUN -eq 1 ]] || mkdir -p "$PREFIX" || die "cannot create prefix $PREFIX"
  [[ -d "$PREFIX" ]] && PREFIX=$(cd "$PREFIX" && pwd)
fi
OPT="$PREFIX/opt/streetwatch"
VENV="$OPT/venv"
ETC="$PREFIX/etc/streetwatch"
STATE="$PREFIX/var/lib/streetwatch"
UNIT_DIR="$PREFIX/etc/systemd/system"
BIN_DIR="$PREFIX/usr/local/bin"

# Run a command, or only print it (--dry-run).
run() {
  if [[ $DRY_RUN -eq 1 ]]; then
    printf '    +'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# Ownership only for a real install: a --prefix tree belongs to whoever built it.
own() {  # own OWNER:GROUP PATH
  [[ -z "$PREFIX" ]] && run chown "$1" "$2"
  return 0
}

# Copy a template, rewriting the standard paths to the prefixed ones (identity without --prefix).
render() {  # render SRC DEST MODE
  local esc_opt esc_etc esc_state
  esc_opt=$(printf '%s' "$OPT" | sed -e 's/[#&\\]/\\&/g')
  esc_etc=$(printf '%s' "$ETC" | sed -e 's/[#&\\]/\\&/g')
  esc_state=$(printf '%s' "$STATE" | sed -e 's/[#&\\]/\\&/g')
  if [[ $DRY_RUN -eq 1 ]]; then
    printf '    + write %q from %q (mode %s)\n' "$2" "$1" "$3"
    return 0
  fi
  local tmp
  tmp=$(mktemp "$(dirname "$2")/.install-node.XXXXXX")
  sed -e "s#/opt/streetwatch#$esc_opt#g" -e "s#/etc/streetwatch#$esc_etc#g" \
      -e "s#/var/lib/streetwatch#$esc_state#g" "$1" > "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
}

# -- preflight ------------------------------------------------------------------------------------------------
if [[ $DRY_RUN -eq 0 && -z "$PREFIX" && $EUID -ne 0 ]]; then
  die "run as root (sudo), or use --prefix DIR or --dry-run"
fi
if [[ -d "$SOURCE" ]]; then
  [[ -f "$SOURCE/pyproject.toml" ]] || die "$SOURCE is not a streetwatch source folder (no pyproject.toml)"
  SOURCE=$(cd "$SOURCE" && pwd)
elif [[ -f "$SOURCE" ]]; then
  case "$SOURCE" in
    *.whl|*.tar.gz|*.zip) SOURCE="$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")" ;;
    *) die "--source must be a wheel (.whl), an sdist (.tar.gz, .zip) or a source folder: $SOURCE" ;;
  esac
else
  die "no such --source: $SOURCE"
fi
for f in "$REPO_DIR/deploy/agent.example.yaml" "$REPO_DIR/deploy/systemd/streetwatch-agent.service"; do
  [[ -f "$f" ]] || die "missing $f: run this script from a checkout or release tarball of the repository"
done
command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON; pass --python PATH (Python >= 3.11)"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  die "$PYTHON is $("$PYTHON" -V 2>&1); streetwatch needs Python >= 3.11 (JetPack 5/6 ship 3.8/3.10: install \
python3.11 or use deploy/docker/Dockerfile.jetson)"
fi
[[ -z "$MIRROR" || -d "$MIRROR" ]] || die "--asset-mirror $MIRROR is not a folder"
[[ -n "$MIRROR" ]] && MIRROR=$(cd "$MIRROR" && pwd)
[[ -z "$WHEELHOUSE" || -d "$WHEELHOUSE" ]] || die "--wheelhouse $WHEELHOUSE is not a folder"
say "installing streetwatch from $SOURCE${PREFIX:+ under prefix $PREFIX}$([[ $DRY_RUN -eq 1 ]] && echo ' (dry run)')"

# -- system packages ------------------------------------------------------------------------------------------
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
"$PYTHON" -m ensurepip --version >/dev/null 2>&1 || need+=(python3-venv)  # Debian splits venv support off
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $APT -eq 1 && -z "$PREFIX" ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need[*]} with apt"
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  elif [[ " ${need[*]} " == *" python3-venv "* ]]; then
    die "$PYTHON cannot create venvs; install python3-venv"
  else
    say "WARNING: ffmpeg is missing: evidence clips will be skipped (and counted) until it is installed"
  fi
fi

# -- service user ---------------------------------------------------------------------------------------------
if [[ -z "$PREFIX" ]]; then
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    say "creating system user $SERVICE_USER"
    run useradd --system --user-group --home-dir /var/lib/streetwatch --no-create-home \
      --shell /usr/sbin/nologin --comment "streetwatch edge agent" "$SERVICE_USER"
  fi
  for group in video render; do  # USB cameras; Jetson GPU device nodes
    if getent group "$group" >/dev/null && ! id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
      run usermod -aG "$group" "$SERVICE_USER"
    fi
  done
else
  say "not creating user $SERVICE_USER and not chowning anything (--prefix)"
fi

# -- folders --------------------------------------------------------------------------------------------------
say "folders"
run install -d -m 0755 "$OPT" "$BIN_DIR"
run install -d -m 0750 "$ETC"
own "root:$SERVICE_USER" "$ETC"
run install -d -m 0750 "$STATE"
own "$SERVICE_USER:$SERVICE_USER" "$STATE"

# -- venv and package -----------------------------------------------------------------------------------------
want_site=$([[ $SYSTEM_SITE -eq 1 ]] && echo true || echo false)
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
   && grep -qx "include-system-site-packages = $want_site" "$VENV/pyvenv.cfg" 2>/dev/null; then
  say "reusing venv $VENV"
else
  say "creating venv $VENV"
  run rm -rf "$VENV"
  if [[ $SYSTEM_SITE -eq 1 ]]; then
    run "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    run "$PYTHON" -m venv "$VENV"
  fi
fi
pip_args=(install --disable-pip-version-check --no-input)
[[ $NO_DEPS -eq 1 ]] && pip_args+=(--no-deps)
[[ -n "$WHEELHOUSE" ]] && pip_args+=(--no-index --find-links "$WHEELHOUSE")
say "installing streetwatch[edge]"
run "$VENV/bin/python" -m pip "${pip_args[@]}" "${SOURCE}[edge]"
if [[ -f "$SOURCE" ]]; then  # the same version number again (a rebuilt wheel) is not reinstalled otherwise
  run "$VENV/bin/python" -m pip "${pip_args[@]}" --no-deps --force-reinstall "$SOURCE"
fi
run ln -sfn "$VENV/bin/streetwatch-agent" "$BIN_DIR/streetwatch-agent"

# -- config and secrets ---------------------------------------------------------------------------------------
if [[ -e "$ETC/agent.yaml" ]]; then
  say "keeping $ETC/agent.yaml"
else
  say "writing $ETC/agent.yaml from deploy/agent.example.yaml: edit cameras, central_url and mqtt.host"
  render "$REPO_DIR/deploy/agent.example.yaml" "$ETC/agent.yaml" 0640
fi
own "root:$SERVICE_USER" "$ETC/agent.yaml"
if [[ -e "$ETC/agent.env" ]]; then
  say "keeping $ETC/agent.env"
elif [[ $DRY_RUN -eq 1 ]]; then
  printf '    + write %q (mode 0600)\n' "$ETC/agent.env"
else
  say "writing $ETC/agent.env (secrets, mode 0600)"
  (
    umask 077
    cat > "$ETC/agent.env" <<'EOF'
# Secrets of the streetwatch agent, read by systemd (EnvironmentFile=); keep it mode 0600, owner root.
# An enrolled node does not need them: `streetwatch-agent enroll` keeps its credentials in
# /var/lib/streetwatch/credentials.json. Set them only for a node that is not enrolled.
#STREETWATCH_NODE_TOKEN=
#STREETWATCH_MQTT_PASSWORD=
EOF
  )
fi
run chmod 0600 "$ETC/agent.env"
own root:root "$ETC/agent.env"

# -- model ----------------------------------------------------------------------------------------------------
if [[ -n "$MIRROR" ]]; then
  say "model from $MIRROR"
  fetch=(--mirror "$MIRROR" --dest "$OPT/assets" --manifest "$REPO_DIR/models/manifest.yaml" --videos)
  [[ -n "$MODEL" ]] && fetch+=(--models "$MODEL")
  run "$VENV/bin/python" "$SCRIPT_DIR/fetch_assets.py" "${fetch[@]}"
  run chmod -R u=rwX,go=rX "$OPT/assets"  # copies are made 0600; the agent runs as another user
elif ! compgen -G "$OPT/assets/models/*.onnx" >/dev/null; then
  say "WARNING: no model under $OPT/assets/models; run again with --asset-mirror DIR"
fi

# -- systemd --------------------------------------------------------------------------------------------------
if [[ $SYSTEMD -eq 1 ]]; then
  say "systemd unit"
  run install -d -m 0755 "$UNIT_DIR"
  render "$REPO_DIR/deploy/systemd/streetwatch-agent.service" "$UNIT_DIR/streetwatch-agent.service" 0644
  if [[ -z "$PREFIX" && -d /run/systemd/system ]]; then
    run systemctl daemon-reload
    run systemctl enable streetwatch-agent.service
    if systemctl is-active --quiet streetwatch-agent.service; then
      run systemctl restart streetwatch-agent.service
    else
      say "enroll the node, then: systemctl start streetwatch-agent (docs/technician.md)"
    fi
  elif [[ -z "$PREFIX" ]]; then
    say "systemd is not running here: the unit is installed but not enabled"
  fi
fi

# -- check ----------------------------------------------------------------------------------------------------
if [[ $DRY_RUN -eq 0 ]]; then
  "$VENV/bin/streetwatch-agent" --version || die "the installed agent does not start"
fi
say "done"
