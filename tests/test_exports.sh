#!/bin/bash
#  =========================================================================
#  test_exports - libherald.so exports its public API and nothing else
#  (issue 17, "The library as a contract"; docs/compatibility.md)
#
#  The list is derived from the installed headers by the same script the
#  build uses (tools/header_symbols.sh), so a function added to a header is
#  expected without an edit here.  Fails when the built library exports a
#  symbol no public header declares (an internal leaking into the ABI) or
#  lacks one a header declares (a declaration without a definition).  Each
#  library of the build and its header(s):
#      .libs/libherald.so             include/herald.h
#      .libs/libherald_projection.so  include/herald_projection.h (when built)
#  Then the soname and file name follow Makefile.am's -version-info
#  (current:revision:age gives libherald.so.<current-age>).
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init exports
SRC=${HERALD_SRCDIR:-$HERE/..}
CC=${CC:-cc}

#  exports LIB: the names of the functions and data LIB defines and exports
#  (nm -D's defined symbols, whatever their kind, but not the versioned
#  markers of a version script, which have no address: type A)
exports () {
    nm -D --defined-only "$1" | awk '$2 != "A" { sub (/@.*/, "", $3); print $3 }' | sort -u
}

#  check_lib LIB HEADER...: the exports of LIB equal what the headers declare
check_lib () {
    local lib=$1
    shift
    local name=$(basename "$lib")
    if ! "$SRC/tools/header_symbols.sh" "$CC" "$@" > "$TMP/declared"; then
        not_ok "$name: the headers' functions listed"
        return
    fi
    exports "$lib" > "$TMP/exported"
    local extra missing
    extra=$(comm -13 "$TMP/declared" "$TMP/exported")
    missing=$(comm -23 "$TMP/declared" "$TMP/exported")
    check "$name: the headers declare $(wc -l < "$TMP/declared") functions (not none)" \
        [ "$(wc -l < "$TMP/declared")" -gt 0 ]
    if [ -z "$extra" ]; then
        ok "$name exports nothing its headers do not declare"
    else
        not_ok "$name exports $(echo "$extra" | wc -l) symbols no header declares:"
        echo "$extra" | sed 's/^/    /'
    fi
    if [ -z "$missing" ]; then
        ok "$name defines every function its headers declare"
    else
        not_ok "$name lacks $(echo "$missing" | wc -l) declared functions:"
        echo "$missing" | sed 's/^/    /'
    fi
}

#  The script finds what it must: a header of this test's own, with a
#  typedef'd function type, a function-pointer field, a pointer-returning
#  function, a macro and a comment that look like declarations.
mkdir -p "$TMP/inc"
cat > "$TMP/inc/herald_fake.h" <<'H'
#include <stddef.h>
#define herald_macro(x) (x)
typedef int (herald_fake_fn) (int);
typedef struct { void (*herald_field) (void); int (*cb) (int); } herald_fake_t;
//  herald_in_comment (void);
const char *
    herald_fake_name (int herald_arg);
herald_fake_t *herald_fake_new (herald_fake_fn *fn, void (*herald_param) (void));
#if 0
int herald_disabled (void);
#endif
H
check "header_symbols.sh lists exactly a header's functions" \
    [ "$("$SRC/tools/header_symbols.sh" "$CC" "$TMP/inc/herald_fake.h" | tr '\n' ' ')" \
      = "herald_fake_name herald_fake_new " ]

check_lib "$BUILD/.libs/libherald.so" "$SRC/include/herald.h"
if [ -e "$BUILD/.libs/libherald_projection.so" ]; then
    check_lib "$BUILD/.libs/libherald_projection.so" "$SRC/include/herald_projection.h"
fi

#  The soname and the file name from -version-info C:R:A: .so.(C-A).A.R
info=$(sed -n 's/^LIBHERALD_VERSION_INFO = *\([0-9]*:[0-9]*:[0-9]*\) *$/\1/p' "$SRC/Makefile.am")
IFS=: read -r current revision age <<< "$info"
soname=$(objdump -p "$BUILD/.libs/libherald.so" | awk '$1 == "SONAME" { print $2 }')
check "the soname is libherald.so.$((current - age)) (-version-info $info): $soname" \
    [ "$soname" = "libherald.so.$((current - age))" ]
check "the library file is libherald.so.$((current - age)).$age.$revision" \
    [ -e "$BUILD/.libs/libherald.so.$((current - age)).$age.$revision" ]

shtest_done
