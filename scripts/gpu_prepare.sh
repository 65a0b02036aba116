#!/usr/bin/env bash
# Run here (CPU machine, once): gather what scripts/gpu_train.sh needs into ignored folders of the
# checkout, since only the checkout travels to the GPU machine (../shared does not):
#   .whl/       PyAV for the GPU machine's Python 3.12 (it has no PyAV and no internet), the wheel's files as a .tar.xz
#   .gpu-data/  the training and held-back videos, and the wallpaper photo cache (make photos)
# Then: device run with carry [".whl", ".gpu-data"] and command "bash scripts/gpu_train.sh $OUT".
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEOS=${VIDEOS:-../shared/videos}
# The PyAV this checkout is tested with (make install); 18.1.0 when there is no venv yet.
AV_VERSION=$(.venv/bin/python -c 'import av; print(av.__version__)' 2>/dev/null || echo 18.1.0)
mkdir -p .whl .gpu-data/videos/train .gpu-data/videos/held-back .gpu-data/cache
# The wheel's files repacked as .whl/av-site.tar.xz (25 MiB against the wheel's 35: the carry holds
# 64 MiB with the tracked tree, and a returned model carried back for a continuation needs the room).
if [ ! -f .whl/av-site.tar.xz ] || [ "$(cat .whl/av-site.version 2>/dev/null)" != "$AV_VERSION" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$tmp" "av==$AV_VERSION"
  python3 -m zipfile -e "$tmp"/av-"$AV_VERSION"-*.whl "$tmp/site"
  find "$tmp/site" -name '*.so*' -exec chmod 755 {} +
  tar -cJf .whl/av-site.tar.xz.part -C "$tmp/site" . && mv .whl/av-site.tar.xz.part .whl/av-site.tar.xz
  echo "$AV_VERSION" > .whl/av-site.version
  rm -f .whl/av-*.whl
fi
# The bundled model's split (docs/MODEL_CARD.md): three videos to train on, three held back.
cp "$VIDEOS"/bigbuckbunny.mp4 "$VIDEOS"/box.mp4 "$VIDEOS"/tree.avi .gpu-data/videos/train/
cp "$VIDEOS"/bikes.mp4 "$VIDEOS"/carphone_pristine.mp4 "$VIDEOS"/cup.mp4 .gpu-data/videos/held-back/
CACHE=${CENTRIFUGE_CACHE:-$HOME/.cache/centrifuge}
if [ ! -f "$CACHE/photos/manifest.json" ]; then
  make photos >/dev/null || echo "make photos failed: the GPU run will use scikit-image's photographs only" >&2
fi
if [ -f "$CACHE/photos/manifest.json" ]; then
  rm -rf .gpu-data/cache/photos && cp -r "$CACHE/photos" .gpu-data/cache/photos
else
  echo "no photo cache at $CACHE/photos (make photos builds it): the GPU run will use scikit-image's photographs only" >&2
fi
du -sh .whl .gpu-data
# What travels: the tracked tree plus these two folders, 64 MiB in all (a returned model put under
# .gpu-data/models/ for a continuation counts too).
CARRY_KIB=$(( $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) / 1024 + $(du -sk .whl .gpu-data | awk '{s += $1} END {print s}') ))
echo "carry: $(( CARRY_KIB / 1024 )) MiB of 64 (tracked tree + .whl + .gpu-data)"
if [ "$CARRY_KIB" -gt $(( 64 * 1024 )) ]; then
  echo "over the 64 MiB that travel to the GPU machine: drop the photo cache or carry less" >&2
fi
