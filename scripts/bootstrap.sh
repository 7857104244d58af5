# Sourced by scripts/demo and scripts/test: installs what a fresh machine lacks.
# - a virtualenv in .venv with kpi-stream installed (editable) and its extras
# - Java 17+ and Maven are expected on the machine (the broker jars come from Maven
#   Central the first time `kpi kafka up` runs)
# - Debian's prometheus and prometheus-alertmanager (promtool, amtool and the servers
#   of the rule, alert and page tests) and chromium (the status page's test)

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

say() { printf '\033[1m[kpi-stream]\033[0m %s\n' "$*" >&2; }

ensure_python() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing kpi-stream[$extras] into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ".[$extras]"
    touch "$stamp"
  fi
  export PATH="$PWD/$VENV/bin:$PATH"
}

ensure_java() {
  command -v java >/dev/null || { say "Java 17+ is needed for the local Kafka broker (apt-get install openjdk-17-jre-headless)"; exit 1; }
  command -v mvn >/dev/null || { say "Maven is needed once to fetch the Kafka jars (apt-get install maven)"; exit 1; }
}

ensure_system_packages() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
  # Headless Chromium opens the status page in its test (and takes the README's picture).
  command -v chromium >/dev/null || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "need root to install ${missing[*]}"; return 1; }
    sudo="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start their services; the tests start their own servers on loopback.
  for service in prometheus prometheus-alertmanager prometheus-node-exporter; do
    $sudo service "$service" stop >/dev/null 2>&1 || true
  done
}
