# Shared set-up steps for scripts/*.sh (sourced, not run).
VENV="${RUNYARD_VENV:-.venv}"

log() { printf '==> %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  # Installs Debian packages only when a command is missing.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_postgres() {
  # The PostgreSQL tests use the server on 127.0.0.1:5432 (trust auth, database `test`).
  if command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; then return 0; fi
  if ! command -v pg_ctlcluster >/dev/null; then apt_install postgresql; fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && return 0; sleep 1; done
  log "warning: PostgreSQL is not reachable on 127.0.0.1:5432; its tests will be skipped"
}

ensure_slurm() {
  # The Slurm tests start their own throwaway cluster (munged, slurmctld, two slurmd) from
  # Debian's slurm-wlm; only the packages are installed here, nothing is started.
  if command -v sbatch >/dev/null && command -v slurmctld >/dev/null \
      && command -v slurmd >/dev/null && command -v munged >/dev/null; then return 0; fi
  log "installing Debian packages: slurm-wlm munge"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null || log "warning: slurm-wlm could not be installed; the Slurm tests will be skipped"
}

ensure_venv() {
  # $1: the extras to install, e.g. "test" or "server,demo".
  local py="${PYTHON:-python3}"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$py" -m venv "$VENV"
  fi
  # The system pip can be old; its resolver gives up on the s3fs/aiobotocore/moto pins.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24.2"
  case ",$1," in
    *,test,*|*,integrations-test,*)
      # The framework integrations' tests need torch: install the CPU build first, pinned,
      # so that resolving transformers/lightning never pulls another (CUDA) torch.
      if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
        log "installing torch==2.13.0 (CPU) into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
      fi
      ;;
  esac
  log "installing runyard[$1] into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$1]"
}

ensure_chromium() {
  # The web UI tests drive Debian's headless shell of Chromium through Playwright (its own
  # download is not used): the same engine as the browser, without the browser's window
  # machinery, at a fraction of the browser's CPU.
  [ -x /usr/lib/chromium/chromium-headless-shell ] || apt_install chromium-headless-shell
}
