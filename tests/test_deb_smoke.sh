#!/bin/bash
#  =========================================================================
#  test_deb_smoke - the Debian packages, installed, work (issue 17)
#
#      tests/test_deb_smoke.sh DIR     # DIR holds the .debs dpkg-buildpackage made
#
#  Unpacks heraldd, libherald1, libherald-dev and python3-herald (dpkg -x)
#  into a scratch root, then, in a private mount namespace (unshare -m),
#  lays that root over /usr, /etc and /lib (read-only overlays) and an
#  empty tmpfs over /var/lib: the programs, the library, the Python
#  package, the unit and the config are where the packages put them, as
#  after `apt install`, and nothing outside the namespace changes.  There:
#
#  - systemd-analyze verify passes on the packaged unit (its ExecStart and
#    man pages are the packaged ones);
#  - /usr/sbin/heraldd, with no --config and no --data-dir, reads
#    /etc/herald/heraldd.conf and keeps its events in /var/lib/herald
#    (the api and fanout ports, free ones, given on the command line);
#  - /usr/bin/herald publishes and replays; /usr/bin/python3's `import herald`
#    (from /usr/lib/python3/dist-packages) loads the packaged libherald and
#    publishes; the replay shows both events; SIGTERM, exit 0;
#  - pkg-config finds herald.pc and a program built against the packaged
#    header and library runs.
#
#  Needs root (unshare, mount).  Not run by make check (the packages take
#  minutes to build): docs/operations.md, "Packaging", gives the commands.
#  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
DEBS=${1:-}
if [ -z "$DEBS" ] || ! ls "$DEBS"/heraldd_*.deb >/dev/null 2>&1; then
    echo "usage: $0 DIR (the directory of heraldd_*.deb, libherald1_*.deb, ...)" >&2
    exit 64
fi
DEBS=$(cd "$DEBS" && pwd)
shtest_init deb_smoke
ROOT=$TMP/root

for package in heraldd libherald1 libherald-dev python3-herald; do
    deb=$(ls -t "$DEBS/${package}"_*.deb 2>/dev/null | head -1)
    if [ -n "$deb" ] && dpkg -x "$deb" "$ROOT"; then ok "dpkg -x $(basename "$deb")"
    else not_ok "$package: no .deb in $DEBS, or dpkg -x failed"; fi
done
for file in usr/sbin/heraldd usr/bin/herald etc/herald/heraldd.conf \
            lib/systemd/system/heraldd.service usr/share/man/man8/heraldd.8.gz \
            usr/share/man/man1/herald.1.gz usr/share/bash-completion/completions/herald \
            usr/include/herald.h usr/lib/python3/dist-packages/herald/__init__.py; do
    check "installs /$file" test -e "$ROOT/$file"
done
check "installs libherald.so.1 and the pkg-config file" \
    bash -c "ls $ROOT/usr/lib/*/libherald.so.1 $ROOT/usr/lib/*/pkgconfig/herald.pc >/dev/null"
check "/etc/herald/heraldd.conf is a conffile" \
    bash -c "dpkg-deb -e \$(ls -t $DEBS/heraldd_*.deb | head -1) $TMP/control &&
             grep -qx /etc/herald/heraldd.conf $TMP/control/conffiles"

#  The rest runs inside the namespace: one script, its checks printed as
#  "ok - ..." / "not ok - ..." and counted here.
API_PORT=$(free_port)
FANOUT_PORT=$(free_port)
while [ "$FANOUT_PORT" = "$API_PORT" ]; do FANOUT_PORT=$(free_port); done
cat >"$TMP/inside.sh" <<'INSIDE'
set -u
ROOT=$1 API=tcp://127.0.0.1:$2 FANOUT=tcp://127.0.0.1:$3 TMP=$4
unset HERALD_LIB HERALD_BUILDDIR HERALD_SRCDIR LD_LIBRARY_PATH PYTHONPATH     # the packages alone
say () { if eval "$2"; then echo "ok - $1"; else echo "not ok - $1"; fi; }
#  merged /usr (Debian 12: /lib -> usr/lib): the package's /lib goes under /usr
if [ -L /lib ]; then
    cp -a "$ROOT/lib/." "$ROOT/usr/lib/" || exit 3
else
    mount -t overlay overlay -o "lowerdir=$ROOT/lib:/lib" /lib || exit 3
fi
mount -t overlay overlay -o "lowerdir=$ROOT/usr:/usr" /usr || exit 3
mount -t overlay overlay -o "lowerdir=$ROOT/etc:/etc" /etc || exit 3
mount -t tmpfs tmpfs /var/lib || exit 3
say "as installed: /usr/sbin/heraldd runs the packaged library" \
    "ldd /usr/sbin/heraldd | grep -Eq 'libherald.so.1 => (/usr)?/lib/'"
MANPATH=/usr/share/man systemd-analyze verify /lib/systemd/system/heraldd.service \
    >"$TMP/verify.out" 2>&1
say "systemd-analyze verify the packaged unit$(head -c 300 "$TMP/verify.out" | tr '\n' ' ')" \
    "[ ! -s $TMP/verify.out ]"
/usr/sbin/heraldd --api "$API" --fanout "$FANOUT" >"$TMP/heraldd.log" 2>&1 &
pid=$!
up=
for _ in $(seq 1 200); do
    kill -0 $pid 2>/dev/null || break
    if herald --endpoint "$API" --timeout 200 status >/dev/null 2>&1; then up=1; break; fi
    sleep 0.05
done
say "heraldd starts on the packaged config (no --config, no --data-dir)" "[ -n '$up' ]"
say "... it read /etc/herald/heraldd.conf and serves from /var/lib/herald" \
    "[ -f /var/lib/herald/CURRENT ] && grep -q 'serving api $API' $TMP/heraldd.log"
say "the packaged herald publishes" \
    "herald --endpoint $API pub smoke.cli 'from the CLI' >/dev/null"
/usr/bin/python3 - "$API" "$TMP/agent" >"$TMP/py.out" 2>&1 <<'PY'
import sys, herald
loaded = {line.split()[-1] for line in open("/proc/self/maps") if "libherald" in line}
assert all(path.startswith("/usr/lib/") for path in loaded) and loaded, loaded
with herald.Agent("smoke", state_dir=sys.argv[2], api=sys.argv[1]) as agent:
    agent.publish("smoke.py", b"from Python")
print("python", herald.__version__, herald.library_version, sorted(loaded)[0])
PY
say "python3-herald publishes through the packaged libherald ($(tail -1 $TMP/py.out))" \
    "grep -q '^python ' $TMP/py.out"
herald --endpoint "$API" replay >"$TMP/replay.out" 2>&1
say "the packaged herald replays both events" \
    "[ \$(grep -c '\"topic\":\"smoke\.' $TMP/replay.out) -eq 2 ]"
kill -TERM $pid
wait $pid
say "SIGTERM: exit 0" "[ $? -eq 0 ]"
printf '#include <herald.h>\n#include <stdio.h>\nint main (void) { printf ("%%s\\n", herald_version ()); return 0; }\n' \
    >"$TMP/v.c"
say "pkg-config herald: a program built against the packaged header and library runs" \
    "cc \$(pkg-config --cflags herald) $TMP/v.c -o $TMP/v \$(pkg-config --libs herald) &&
     [ \"\$($TMP/v)\" = \"\$(pkg-config --modversion herald)\" ]"
INSIDE
unshare -m bash "$TMP/inside.sh" "$ROOT" "$API_PORT" "$FANOUT_PORT" "$TMP" >"$TMP/inside.out" 2>&1
rc=$?
[ $rc -eq 3 ] && not_ok "the namespace's mounts failed (needs root, overlayfs)"
cat "$TMP/inside.out"
passed=$((passed + $(grep -c '^ok - ' "$TMP/inside.out")))
failed=$((failed + $(grep -c '^not ok - ' "$TMP/inside.out")))
grep -q '^not ok' "$TMP/inside.out" && sed 's/^/#   /' "$TMP/heraldd.log" "$TMP/py.out" 2>/dev/null
shtest_done
