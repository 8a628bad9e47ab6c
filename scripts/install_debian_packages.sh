#!/usr/bin/env bash
# The Debian packages the live-video tests use: GStreamer's RTSP server (a real RTSP server on 127.0.0.1),
# FFmpeg (an RTSP listener for the push test), headless Chromium (the live-view page), curl (the README's
# Triton block). Needs root and Debian's package registry; without them it says so and the tests that need a
# missing package are skipped with that reason.
set -uo pipefail
PKGS="curl ffmpeg chromium gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"
missing=$(for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: cannot install Debian packages ($missing): not root or no apt-get; the live-video tests that need them will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
  echo "note: apt-get could not install: $missing; the live-video tests that need them will be skipped" >&2
fi
exit 0
