#!/usr/bin/env bash
# Install the locker on the cabinet's Raspberry Pi (Raspberry Pi OS / Debian), from a clone:
#   sudo deploy/install.sh            # install or upgrade, enable both services
#   sudo deploy/install.sh --no-enable
# Idempotent: an existing /etc/locker/locker.toml, database, key and PIN are never touched.
set -euo pipefail

PREFIX=/opt/locker
ETC=/etc/locker
SRC=$(cd "$(dirname "$0")/.." && pwd)
ENABLE=1
[ "${1:-}" = "--no-enable" ] && ENABLE=0
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }

echo "== system packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	python3 python3-venv libzbar0 libmtdev1 fonts-wqy-microhei rsync >/dev/null

echo "== users: locker (the daemon), kiosk (the screen)"
getent group gpio >/dev/null || groupadd --system gpio
id -u locker >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/locker \
	--shell /usr/sbin/nologin locker
id -u kiosk >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/locker-kiosk \
	--shell /usr/sbin/nologin kiosk

echo "== software in $PREFIX"
install -d -m 0755 "$PREFIX"
rsync -a --delete --exclude .git --exclude .venv --exclude var --exclude '__pycache__' \
	"$SRC"/ "$PREFIX"/src/
# The system's Python (not a per-user one): the services run as other users. System
# site packages stay visible so that a camera library installed with apt
# (python3-picamera2, python3-opencv) is found; the pinned packages in the venv win.
[ -x "$PREFIX/.venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$PREFIX/.venv"
"$PREFIX/.venv/bin/pip" install -q --upgrade pip
"$PREFIX/.venv/bin/pip" install -q "$PREFIX/src[kiosk]"
cp "$SRC/README.md" "$PREFIX/README.md"

echo "== configuration in $ETC"
install -d -m 0750 -o root -g locker "$ETC"
if [ ! -e "$ETC/locker.toml" ]; then
	# The example, with the cabinet's paths: state under /var/lib/locker (systemd's
	# StateDirectory), the socket under /run/locker (RuntimeDirectory).
	sed -e 's|^data_dir = .*|data_dir = "/var/lib/locker"|' \
		-e 's|^socket = .*|socket = "/run/locker/api.sock"|' \
		"$SRC/config/example.toml" >"$ETC/locker.toml"
	chown root:locker "$ETC/locker.toml"
	chmod 0640 "$ETC/locker.toml"
	echo "   wrote $ETC/locker.toml: set [locker] id, [mqtt], [[boards]], [[compartments]]"
else
	echo "   kept $ETC/locker.toml"
fi
"$PREFIX/.venv/bin/lockerd" --help >/dev/null

echo "== systemd units"
install -m 0644 "$SRC/systemd/lockerd.service" "$SRC/systemd/locker-kiosk.service" \
	/etc/systemd/system/
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ "$ENABLE" = 1 ]; then
		systemctl enable lockerd.service locker-kiosk.service
	fi
fi

cat <<NEXT
Installed. Next:
  1. edit $ETC/locker.toml (locker id, broker, boards, compartments)
  2. sudo systemctl start lockerd locker-kiosk; journalctl -u lockerd -f
  3. sudo -u locker $PREFIX/.venv/bin/lockerctl --config $ETC/locker.toml set-pin
     (the technician PIN, kept hashed; lockerctl and the maintenance screen ask for it)
NEXT
