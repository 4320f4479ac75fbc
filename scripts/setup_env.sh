#!/usr/bin/env bash
# Set up everything dexmpc_ros needs on a fresh Debian/Ubuntu machine, idempotently:
#   1. Debian packages for offscreen MuJoCo rendering (EGL, OSMesa) when missing;
#   2. a virtualenv (default .venv) with the pinned Python dependencies
#      (requirements.lock: ROS 2 Jazzy wheels, MuJoCo, rosbags, torch 2.13.0 CPU, ...);
#   3. dexmpc_ros itself, installed editable into that virtualenv.
# Re-running is cheap: each step checks before it acts.
set -euo pipefail

VENV="${1:-.venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"

say() { printf '[setup] %s\n' "$*"; }

# 1. Offscreen rendering libraries (and libusb for pyrealsense2).
need_apt=()
ldconfig -p | grep -q 'libEGL.so.1 ' || need_apt+=(libegl1)
ldconfig -p | grep -q 'libOSMesa.so' || need_apt+=(libosmesa6)
ldconfig -p | grep -q 'libGL.so.1 ' || need_apt+=(libgl1)
# pyrealsense2 (the RealSense driver) links libusb.
ldconfig -p | grep -q 'libusb-1.0.so.0 ' || need_apt+=(libusb-1.0-0)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing Debian packages: ${need_apt[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        say "WARNING: missing ${need_apt[*]} (offscreen camera images disabled);" \
            "install them with: sudo apt-get install ${need_apt[*]}"
    fi
fi

# 2. Virtualenv with pinned dependencies.
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.dexmpc-lock-$(sha256sum requirements.lock | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    say "installing pinned dependencies (requirements.lock)"
    "$VENV/bin/python" -m pip install -q --upgrade 'pip>=24'
    "$VENV/bin/python" -m pip install -q -r requirements.lock
    # the lock pins every package: a missing or conflicting dependency is a broken lock
    if ! broken="$("$VENV/bin/python" -m pip check 2>&1)"; then
        say "ERROR: requirements.lock is inconsistent (pip check):"
        printf '%s\n' "$broken" >&2
        exit 1
    fi
    rm -f "$VENV"/.dexmpc-lock-*
    touch "$stamp"
fi

# 3. The package itself (editable: config/ and urdf/ are read from this checkout).
# Checked from / : in this checkout `import dexmpc_ros` would succeed from the working
# directory even when nothing is installed (and the dexmpc command would be missing).
VENV_PY="$(realpath "$VENV")/bin/python"
if ! (cd / && "$VENV_PY" -c 'import dexmpc_ros, sys; sys.exit(0 if dexmpc_ros.__file__.startswith(sys.argv[1]) else 1)' "$HERE" 2>/dev/null) \
        || [ ! -x "$VENV/bin/dexmpc" ]; then
    say "installing dexmpc_ros (editable)"
    "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
fi
"$VENV/bin/python" -c 'import rclpy, mujoco, rosbags, torch' \
    || { say "ERROR: the virtualenv is incomplete; delete $VENV and re-run"; exit 1; }
say "ready: $VENV"
