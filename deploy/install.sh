#!/usr/bin/env bash
# Install the locker on the cabinet's Raspberry Pi (Raspberry Pi OS / Debian), from a clone:
#   sudo deploy/install.sh              # install or upgrade, enable both services
#   sudo deploy/install.sh --no-enable  # the same, the services left as they are
#   sudo deploy/install.sh --no-kiosk   # a cabinet without a screen: lockerd alone, no Kivy
#   deploy/install.sh --root DIR        # everything under DIR instead of / (see below)
# Idempotent: an existing /etc/locker/locker.toml, database, key and PIN are never touched.
#
# The software is installed from the project's wheel (deploy/build-wheel.sh: the files git
# tracks), never by copying the clone, which holds caches, build output and untracked
# files such as a QR PNG with a live pickup code.
#
# --root DIR puts /opt/locker, /etc/locker and the units under DIR and leaves the machine
# alone: no system packages, users, file owners or systemd. Any user may run it. The venv
# in it is made for DIR/opt/locker and cannot be moved: it is for seeing what an
# installation holds (the tests use it), not for copying to a cabinet.
set -euo pipefail

usage() { sed -n '2,6s/^# \{0,1\}//p' "$0"; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
ENABLE=1
KIOSK=1
ROOT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--no-enable) ENABLE=0 ;;
	--no-kiosk) KIOSK=0 ;;
	--root)
		[ $# -ge 2 ] || { echo "install.sh: --root needs a folder" >&2; exit 2; }
		ROOT=$(mkdir -p "$2" && cd "$2" && pwd)
		shift
		;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
PREFIX=$ROOT/opt/locker
ETC=$ROOT/etc/locker
UNITS=$ROOT/etc/systemd/system
APT_PACKAGES=(python3 python3-venv libzbar0)
# The screen's own: Kivy's touch input and a font with Chinese glyphs.
[ "$KIOSK" = 0 ] || APT_PACKAGES+=(libmtdev1 fonts-wqy-microhei alsa-utils)
UNIT_FILES=(lockerd.service)
[ "$KIOSK" = 0 ] || UNIT_FILES+=(locker-kiosk.service)
# Installed, never enabled here: only a spare controller receives copies, in place of
# lockerd (the two units conflict); see docs/configuration.md, [standby].
IDLE_UNIT_FILES=(locker-standby.service)

if [ -z "$ROOT" ]; then
	[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo), or with --root DIR" >&2; exit 1; }
	echo "== system packages: ${APT_PACKAGES[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null

	echo "== users: locker (the daemon)$([ "$KIOSK" = 0 ] || echo ', kiosk (the screen)')"
	getent group gpio >/dev/null || groupadd --system gpio
	id -u locker >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/locker \
		--shell /usr/sbin/nologin locker
	if [ "$KIOSK" = 1 ]; then
		id -u kiosk >/dev/null 2>&1 || useradd --system --user-group \
			--home-dir /var/lib/locker-kiosk --shell /usr/sbin/nologin kiosk
	fi
else
	echo "== installing under $ROOT: system packages (${APT_PACKAGES[*]}), users and systemd left alone"
fi

echo "== software in $PREFIX"
install -d -m 0755 "$PREFIX"
if [ -d "$PREFIX/src" ]; then
	# Earlier installers copied the whole clone here, untracked files included.
	rm -rf "$PREFIX/src"
	echo "   removed $PREFIX/src (a copy of the clone left by an older installer)"
fi
# The system's Python (not a per-user one): the services run as other users. System
# site packages stay visible so that a camera library installed with apt
# (python3-picamera2, python3-opencv) is found; the pinned packages in the venv win.
[ -x "$PREFIX/.venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$PREFIX/.venv"
"$PREFIX/.venv/bin/pip" install -q --upgrade pip
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
WHEEL=$(PYTHON="$PREFIX/.venv/bin/python" "$SRC/deploy/build-wheel.sh" "$BUILD")
# Kivy (the kiosk extra) only where a screen is wanted; lockerd needs none of it.
if [ "$KIOSK" = 1 ]; then
	"$PREFIX/.venv/bin/pip" install -q "$WHEEL[kiosk]"
else
	"$PREFIX/.venv/bin/pip" install -q "$WHEEL"
fi
# The version does not change with every fix: without this, pip would keep the old code.
"$PREFIX/.venv/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"
echo "   installed $(basename "$WHEEL")"
cp "$SRC/README.md" "$PREFIX/README.md"

echo "== configuration in $ETC"
if [ -z "$ROOT" ]; then
	install -d -m 0750 -o root -g locker "$ETC"
else
	install -d -m 0750 "$ETC"
fi
if [ ! -e "$ETC/locker.toml" ]; then
	# The example, with the cabinet's paths: state under /var/lib/locker (systemd's
	# StateDirectory), the socket under /run/locker (RuntimeDirectory).
	sed -e 's|^data_dir = .*|data_dir = "/var/lib/locker"|' \
		-e 's|^socket = .*|socket = "/run/locker/api.sock"|' \
		"$SRC/config/example.toml" >"$ETC/locker.toml"
	[ -n "$ROOT" ] || chown root:locker "$ETC/locker.toml"
	chmod 0640 "$ETC/locker.toml"
	echo "   wrote $ETC/locker.toml: set [locker] id, [mqtt], [[boards]], [[compartments]]"
else
	echo "   kept $ETC/locker.toml"
fi
"$PREFIX/.venv/bin/lockerd" --help >/dev/null
"$PREFIX/.venv/bin/locker-standby" --help >/dev/null

# The kiosk reads only the socket's path and its language and size: they get a file of
# their own, readable by all, so that the kiosk's user never needs /etc/locker (mode
# 0750, root:locker; the kiosk's unit also makes it inaccessible).
KIOSK_ETC=$ROOT/etc/locker-kiosk
if [ "$KIOSK" = 0 ]; then
	echo "   no kiosk (--no-kiosk): no Kivy, no screen unit"
elif [ ! -e "$KIOSK_ETC/kiosk.toml" ]; then
	install -d -m 0755 "$KIOSK_ETC"
	{
		echo "# locker-kiosk's settings (lockerd's own are in /etc/locker, out of the kiosk's reach)."
		echo "[api]"
		echo 'socket = "/run/locker/api.sock"  # lockerd'"'"'s [api] socket'
		echo
		sed -n '/^\[kiosk\]/,/^$/p' "$SRC/config/example.toml"
	} >"$KIOSK_ETC/kiosk.toml"
	chmod 0644 "$KIOSK_ETC/kiosk.toml"
	echo "   wrote $KIOSK_ETC/kiosk.toml"
else
	echo "   kept $KIOSK_ETC/kiosk.toml"
fi

echo "== systemd units in $UNITS"
install -d -m 0755 "$UNITS"
for unit in "${UNIT_FILES[@]}" "${IDLE_UNIT_FILES[@]}"; do
	install -m 0644 "$SRC/systemd/$unit" "$UNITS/"
done
SYSTEMD=0
if [ -n "$ROOT" ]; then
	echo "   not enabled (--root)"
elif [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ "$ENABLE" = 1 ]; then
		systemctl enable "${UNIT_FILES[@]}"
	fi
	SYSTEMD=1
else
	# A container or chroot: the software and configuration are in place, only the
	# services are missing, so say it and carry on.
	echo "   systemd is not running on this machine: the units are NOT enabled and nothing"
	echo "   will start lockerd. On a machine booted with systemd, run:"
	echo "     systemctl daemon-reload && systemctl enable ${UNIT_FILES[*]}"
fi

if [ -n "$ROOT" ]; then
	echo "Installed under $ROOT."
	exit 0
fi
echo "Installed. Next:"
echo "  1. edit $ETC/locker.toml (locker id, broker, boards, compartments)"
if [ "$SYSTEMD" = 1 ]; then
	echo "  2. sudo systemctl start ${UNIT_FILES[*]}; journalctl -u lockerd -f"
else
	echo "  2. start lockerd once systemd runs it (see above)"
fi
echo "  3. sudo -u locker $PREFIX/.venv/bin/lockerctl --config $ETC/locker.toml set-pin"
echo "     (the technician PIN, kept hashed; lockerctl and the maintenance screen ask for it)"
echo "  On a spare controller instead: set [standby] in $ETC/locker.toml, then"
echo "     sudo systemctl disable --now ${UNIT_FILES[*]}; sudo systemctl enable --now ${IDLE_UNIT_FILES[*]}"
