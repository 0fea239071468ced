#!/usr/bin/env bash
# Build the project's wheel into OUTDIR and print its path:
#   deploy/build-wheel.sh OUTDIR          (PYTHON=... picks the Python whose pip builds it)
# It is built from the files git tracks, copied aside, never from the working tree as it
# lies: a clone holds caches, build/ (whose stale files setuptools would package), var/
# and untracked files such as a QR PNG carrying a live pickup code.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: deploy/build-wheel.sh OUTDIR}
PYTHON=${PYTHON:-python3}
# What a wheel is made of: the project file, the README (its long description), the packages.
PARTS='^(pyproject\.toml|README\.md|(locker|drivers|mqtt|simulator|kiosk_ui)/.*)$'

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
# root installing from a technician's clone: git refuses a repository owned by another
# user unless told it is safe.
GIT=(git -c safe.directory="$SRC" -C "$SRC")
if command -v git >/dev/null && "${GIT[@]}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Tracked files with their content in the working tree, so a local fix is built too;
	# a tracked file deleted in the working tree is left out.
	"${GIT[@]}" ls-files -z | grep -zE "$PARTS" | while IFS= read -r -d '' f; do
		if [ -e "$SRC/$f" ]; then (cd "$SRC" && cp --parents -- "$f" "$STAGE/"); fi
	done
else
	echo "build-wheel.sh: $SRC is not a git clone: building from every file in its packages" >&2
	(cd "$SRC" && find pyproject.toml README.md locker drivers mqtt simulator kiosk_ui \
		-name __pycache__ -prune -o -type f ! -name '*.py[co]' -print0 |
		xargs -0 cp --parents -t "$STAGE/")
fi

"$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$STAGE/dist" "$STAGE" >&2
mkdir -p "$OUT"
for wheel in "$STAGE"/dist/*.whl; do
	mv "$wheel" "$OUT/"
	echo "$OUT/$(basename "$wheel")"
done
