#!/usr/bin/env bash
# Builds noops/base:latest offline: a busybox rootfs from Debian's busybox-static,
# imported with `docker import` (there is no image registry to pull from).
# Idempotent: does nothing when the image exists, unless FORCE=1.
set -euo pipefail
IMAGE=${NOOPS_BASE_IMAGE:-noops/base:latest}
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || BUSYBOX=/bin/busybox
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,tmp,www,data,proc,sys,dev,root,var/run}
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo '<html><body><h1>noops</h1><p>served by a noops instance</p></body></html>' > "$root/www/index.html"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | docker import \
  --change 'CMD ["/bin/sh"]' \
  --change 'ENV PATH=/bin:/sbin' \
  --change 'LABEL org.noops.base=1' - "$IMAGE" >/dev/null
echo "built $IMAGE"
