#!/usr/bin/env bash
# Boot Debian's own kernel in a qemu guest (TCG: software emulation, no KVM)
# and run one test script in it. The host kernel refuses freplace (EXT)
# programs, which bpfman uses for every XDP attach, so the XDP paths that need
# them run here instead.
#
#   guest.sh [--timeout S] [--log FILE] [--mem MB] [--bin PATH]...
#            [--file SRC:DEST]... [--module NAME]... [--env NAME=VALUE]...
#            TEST_SCRIPT
#
# --bin PATH[:DEST] copy an executable to the same path (or DEST) in the
#                 guest, with the libraries `ldd` lists and the dynamic loader
#                 (not under /tmp or /run: the guest mounts tmpfs there)
# --file SRC:DEST copy a file (BPF object, config, ...) to DEST in the guest
# --module NAME   insert a module from the kernel package (with its depends);
#                 veth is always inserted
# --env NAME=VALUE exported to the test script
# --mem MB        guest memory (default 1024); the initramfs (uncompressed:
#                 decompressing it under emulation costs more than copying
#                 it) is held twice while it is unpacked
# TEST_SCRIPT     run as `sh /test/run.sh` by /init; exit 0 prints the PASS
#                 marker, anything else the FAIL marker
#
# Exits 0 only when the console shows `AFXDP-GUEST: PASS`; otherwise prints
# the console's last lines and exits 1. The kernel package is fetched with
# `apt-get download` and unpacked with `dpkg -x` (never installed) into
# $AFXDP_QEMU_CACHE/<package>-<version>, once per version.
set -euo pipefail

CACHE_ROOT=${AFXDP_QEMU_CACHE:-/var/cache/afxdp-rs/qemu}
MARKER="AFXDP-GUEST:"
timeout_s=120
log=""
bins=()
files=()
modules=(veth)
envs=()
mem_mb=1024
work=""
qemu_pid=""

die() { echo "guest.sh: $*" >&2; exit 1; }

cleanup() {
  # A qemu still running (interrupt, failure) must not outlive us.
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [[ -n $work ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

parse_args() {
  while (($#)); do
    case $1 in
      --timeout) timeout_s=$2; shift 2 ;;
      --log) log=$2; shift 2 ;;
      --bin) bins+=("$2"); shift 2 ;;
      --file) files+=("$2"); shift 2 ;;
      --module) modules+=("$2"); shift 2 ;;
      --env) [[ $2 == [A-Za-z_]*=* ]] || die "--env wants NAME=VALUE, not $2"; envs+=("$2"); shift 2 ;;
      --mem) mem_mb=$2; shift 2 ;;
      -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
      -*) die "unknown option $1" ;;
      *) break ;;
    esac
  done
  (($# == 1)) || die "one TEST_SCRIPT expected (see --help)"
  test_script=$1
  [[ -f $test_script ]] || die "no test script $test_script"
}

need_tools() {
  local t
  for t in qemu-system-x86_64 apt-get dpkg cpio modinfo; do
    command -v "$t" >/dev/null || die "$t missing (tests/install.sh installs it)"
  done
  [[ -x /bin/busybox ]] && /bin/busybox --list | grep -qx poweroff ||
    die "/bin/busybox (busybox-static) missing (tests/install.sh installs it)"
}

# The versioned kernel package linux-image-amd64 depends on (the metapackage
# itself holds no kernel).
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

# Fetch and unpack the kernel package once per version; print its directory.
# Unpacks into a temp dir and renames it, so an interrupted run leaves no
# half-unpacked cache behind.
kernel_dir() {
  local pkg version dir tmp
  # Leftovers of fetches interrupted long ago.
  find "$CACHE_ROOT" -maxdepth 1 -name '.fetch.*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
  pkg=$(kernel_package)
  if [[ -z $pkg ]]; then
    # No apt lists (offline): the newest kernel already cached will do.
    dir=$(ls -d "$CACHE_ROOT"/linux-image-*/.done 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir ]] || die "apt knows no linux-image-amd64 and none is cached (run apt-get update)"
    echo "${dir%/.done}"
    return
  fi
  version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
  dir="$CACHE_ROOT/$pkg-$version"
  if [[ ! -f $dir/.done ]]; then
    mkdir -p "$CACHE_ROOT"
    tmp=$(mktemp -d "$CACHE_ROOT/.fetch.XXXXXX")
    # apt-get download drops privileges to _apt, which cannot write a
    # root-only temp dir: fetch as root into it instead of failing.
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >/dev/null) ||
      { rm -rf "$tmp"; die "apt-get download $pkg=$version failed"; }
    dpkg -x "$tmp"/*.deb "$tmp/root" && rm -f "$tmp"/*.deb
    touch "$tmp/.done"
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  echo "$dir"
}

# Copy an executable (PATH or PATH:DEST) and everything `ldd` says it loads
# (libraries and the dynamic loader) into the initramfs, at the same paths.
add_binary() {
  local bin=${1%%:*} dest=${1#*:} root=$2 lib
  [[ -x $bin ]] || die "no executable $bin"
  install -D -m 0755 "$bin" "$root$dest"
  while read -r lib; do
    [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done < <(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true)
}

# Insert order for a module: its depends (from the .ko's modinfo, as the
# package ships no modules.dep) first, each once.
module_order() {
  local name=$1 mods=$2 ko dep
  ko=$(find "$mods/kernel" -name "$name.ko*" -print -quit)
  [[ -n $ko ]] || die "module $name not in the kernel package"
  for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do
    module_order "$dep" "$mods"
  done
  echo "$ko"
}

add_modules() {
  local mods=$1 root=$2 m ko
  mkdir -p "$root/modules"
  : >"$root/modules/order"
  for m in "${modules[@]}"; do
    while read -r ko; do
      grep -qx "/modules/${ko##*/}" "$root/modules/order" && continue
      cp "$ko" "$root/modules/"
      echo "/modules/${ko##*/}" >>"$root/modules/order"
    done < <(module_order "$m" "$mods")
  done
}

# busybox and its applets as links in /bin (see write_test for added binaries
# sharing an applet's name).
add_busybox() {
  local root=$1 applet
  install -D -m 0755 /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
  done
  mkdir -p "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
}

write_init() {
  cat >"$1/init" <<EOF
#!/bin/busybox sh
# The guest's PID 1: mounts, modules, the test, the marker, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ok=1
for ko in \$(cat /modules/order); do
  insmod "\$ko" || { echo "insmod \$ko failed"; ok=0; }
done
echo "$MARKER BEGIN"
if [ \$ok = 1 ] && sh /test/run.sh; then
  echo "$MARKER PASS"
else
  echo "$MARKER FAIL"
fi
poweroff -f
EOF
  chmod 0755 "$1/init"
}

# The test script, preceded by a function per added binary that busybox also
# has as an applet: Debian's busybox sh runs its applets before anything on
# PATH (iproute2's ip, which knows XDP and netns, would lose to busybox's).
write_test() {
  local b name e
  {
    for e in "${envs[@]}"; do
      printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
    done
    for b in "${bins[@]}"; do
      b=${b#*:}
      name=${b##*/}
      /bin/busybox --list | grep -qx "$name" && echo "$name() { $b \"\$@\"; }"
    done
    cat "$test_script"
  } >"$1"
  chmod 0755 "$1"
}

build_initramfs() {
  local kdir=$1 out=$2 root=$work/root b f
  mkdir -p "$root"/{proc,sys,dev,run,tmp,test,etc}
  add_busybox "$root"
  for b in "${bins[@]}"; do add_binary "$b" "$root"; done
  for f in "${files[@]}"; do install -D -m "$(stat -c %a "${f%%:*}")" "${f%%:*}" "$root${f#*:}"; done
  write_test "$root/test/run.sh"
  add_modules "$(echo "$kdir"/root/lib/modules/*)" "$root"
  write_init "$root"
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$out"
}

# Boot and wait for qemu to exit (poweroff, panic with -no-reboot, timeout).
run_qemu() {
  local kernel=$1 initrd=$2 start bios=()
  # qboot (qemu's minimal firmware) boots a -kernel about 1 s sooner than
  # SeaBIOS under TCG; SeaBIOS when it is absent.
  [[ -f /usr/share/qemu/qboot.rom ]] && bios=(-bios /usr/share/qemu/qboot.rom)
  start=$(date +%s%N)
  # -nic none: the guest's network is its own veths only, never the host's.
  timeout -k 5 "$timeout_s" qemu-system-x86_64 -machine q35 -accel tcg -cpu max "${bios[@]}" \
    -m "$mem_mb" -smp 2 -nographic -no-reboot -nic none \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet" </dev/null >"$log" 2>&1 &
  qemu_pid=$!
  wait "$qemu_pid" && qemu_rc=0 || qemu_rc=$?
  qemu_pid=""
  boot_ms=$(( ($(date +%s%N) - start) / 1000000 ))
}

main() {
  parse_args "$@"
  need_tools
  work=$(mktemp -d /tmp/afxdp-qemu.XXXXXX)
  [[ -n $log ]] || log=$work/console.log
  local kdir
  kdir=$(kernel_dir)
  build_initramfs "$kdir" "$work/initrd.cpio"
  run_qemu "$(echo "$kdir"/root/boot/vmlinuz-*)" "$work/initrd.cpio"
  echo "qemu start to exit: $((boot_ms / 1000)).$(printf %03d $((boot_ms % 1000))) s (qemu exit $qemu_rc)"
  if tr -d '\r' <"$log" | grep -qx "$MARKER PASS"; then
    # What the test printed, between the markers.
    tr -d '\r' <"$log" | sed -n "/^$MARKER BEGIN\$/,/^$MARKER PASS\$/p"
    echo "guest: PASS"
    return 0
  fi
  if ((qemu_rc == 124)); then
    echo "guest: TIMEOUT after ${timeout_s} s; console's last lines:"
  else
    echo "guest: FAIL; console's last lines:"
  fi
  tr -d '\r' <"$log" | tail -n 40
  return 1
}

main "$@"
