#!/bin/bash
#  =========================================================================
#  test_pkgconfig - a program builds against the installed library with
#  nothing but `pkg-config --cflags --libs herald` (issue 17)
#
#  Installs the library, its header and herald.pc into a temporary DESTDIR
#  (make's install-libLTLIBRARIES, install-includeHEADERS and
#  install-pkgconfigDATA: the parts `make install` puts there for a
#  program to link; heraldd and the docs are not needed), then, with
#  PKG_CONFIG_LIBDIR set to that tree alone (so no other package's .pc
#  file is found, as on a machine without the dependencies' -dev
#  packages), compiles, links and runs a small program against it.  Checks
#  that the flags name only our -I and -L/-lherald, that herald.h pulls in
#  no dependency's header, that the program runs from the installed
#  library (ldd) and gets the package version, and that --static adds the
#  dependencies' libraries.
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init pkgconfig
CC=${CC:-cc}
ROOT=$TMP/root

#  Only libherald is installed (lib_LTLIBRARIES given): installing
#  libherald_projection makes libtool relink it in the build tree's .libs,
#  and a test running beside this one that starts a program linked to it
#  then fails to load it (exit 127)
if ! make -s -C "$BUILD" install-libLTLIBRARIES install-includeHEADERS \
        install-pkgconfigDATA lib_LTLIBRARIES=libherald.la DESTDIR="$ROOT" \
        > "$TMP/install.log" 2>&1; then
    cat "$TMP/install.log"
    not_ok "make install-... DESTDIR=$ROOT"
    shtest_done
fi
pcdir=$(dirname "$(find "$ROOT" -name herald.pc | head -1)")
check "herald.pc is installed (in $pcdir)" [ -f "$pcdir/herald.pc" ]

#  pkg-config sees only the installed tree; SYSROOT maps its paths into it
pc () {
    PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$ROOT pkg-config "$@"
}
check "pkg-config --exists herald with no other package's .pc file" pc --exists herald
cflags=$(pc --cflags herald) || cflags=ERROR
libs=$(pc --libs herald) || libs=ERROR
static=$(pc --static --libs herald) || static=ERROR
echo "# --cflags: $cflags"
echo "# --libs: $libs"
echo "# --static --libs: $static"
check "--cflags is one -I, into the installed tree" \
    bash -c '[[ "$1" =~ ^-I[^\ ]+\ *$ && "$1" == -I"$2"* ]]' _ "$cflags" "$ROOT"
check "--libs is -L (the installed tree) and -lherald only" \
    bash -c '[[ "$1" =~ ^-L[^\ ]+\ +-lherald\ *$ && "$1" == -L"$2"* ]]' _ "$libs" "$ROOT"
check "--static --libs adds msgpack, czmq, libzmq" \
    bash -c '[[ "$1" == *-lherald*-lmsgpackc*-lczmq*-lzmq* ]]' _ "$static"
check "--modversion is the package's version" \
    [ "$(pc --modversion herald)" = "$(sed -n 's/^AC_INIT(\[herald\], \[\([^]]*\)\].*/\1/p' \
                                     "${HERALD_SRCDIR:-$HERE/..}/configure.ac")" ]

cat > "$TMP/hello.c" <<'C'
#include <herald.h>
#include <stdio.h>
#include <string.h>

static int s_lines;
static void
s_log (herald_log_level_t level, const char *message, void *arg)
{
    (void) level; (void) message; (void) arg;
    s_lines++;
}

int
main (void)
{
    herald_agent_options_t options;
    if (herald_agent_options_size () != sizeof options)
        return 2;
    herald_agent_options_init (&options);
    //  The init/size pairs of the structs that may grow
    herald_outgoing_t event;
    herald_range_t range;
    memset (&event, 0xA5, sizeof event);
    memset (&range, 0xA5, sizeof range);
    herald_outgoing_init (&event);
    herald_range_init (&range);
    if (herald_outgoing_size () != sizeof event || herald_range_size () != sizeof range
        || event.topic || event.data_len || event.has_expect || event.id
        || range.from || range.until_ts || range.prefixes)
        return 5;
    if (herald_set_log (s_log, NULL) != HERALD_OK || herald_set_log (NULL, NULL) != HERALD_OK)
        return 3;
    //  Refused arguments: a clear error, no agent
    if (herald_agent_new (NULL, &options) != NULL)
        return 4;
    printf ("%s %s %s\n", herald_version (), herald_strerror (HERALD_ERR_TIMEOUT),
            herald_agent_last_errcode () == HERALD_ERR_INVALID? "invalid": "?");
    return 0;
}
C
check "the program compiles and links with only pkg-config's flags" \
    $CC -std=c11 -Wall -Werror -o "$TMP/hello" "$TMP/hello.c" $cflags $libs
#  The headers the program's compile reads: none of a dependency
$CC -std=c11 -M "$TMP/hello.c" $cflags > "$TMP/deps" 2>&1
check "herald.h includes no header of czmq, libzmq or msgpack" \
    bash -c '! grep -Eq "czmq|zmq\.h|msgpack" "$1" && grep -q "$2.*herald\.h" "$1"' \
    _ "$TMP/deps" "$ROOT"
libdir=$(dirname "$(find "$ROOT" -name 'libherald.so' | head -1)")
#  A sanitized build's libherald needs ASan loaded first (as
#  tests/python_binding/run.sh does for Python); the program is plain cc
asan=$(ldd "$libdir/libherald.so" 2>/dev/null | awk '/libasan/ { print $3; exit }')
out=$(LD_LIBRARY_PATH=$libdir LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0 "$TMP/hello" 2>&1)
echo "# ran: $out"
check "it runs and prints the version, an error's text, the refusal" \
    bash -c '[[ "$1" == [0-9]*.[0-9]*.[0-9]*" timed out invalid" ]]' _ "$out"
check "it runs on the installed libherald.so" \
    bash -c 'LD_LIBRARY_PATH=$1 ldd "$2" | grep -q "libherald.so.* => $1/libherald.so"' \
    _ "$libdir" "$TMP/hello"

shtest_done
