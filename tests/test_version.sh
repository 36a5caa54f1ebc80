#!/bin/bash
#  =========================================================================
#  test_version - the version is configure.ac's, everywhere (issue 17)
#
#  AC_INIT in configure.ac is the one place the version is written down;
#  what cannot be made from it by configure is checked against it here:
#  include/herald.h's HERALD_VERSION_MAJOR/MINOR/PATCH (what herald_version
#  and heraldd --version say), the Python package (pyproject.toml, its
#  build backend, herald.__version__), debian/changelog's upstream
#  version, CHANGELOG.md's newest heading.  What configure makes from it
#  (herald.pc, the man pages) is checked too.  To release: change AC_INIT,
#  then every line this test names.  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init version
SRC=${HERALD_SRCDIR:-$HERE/..}

VERSION=$(sed -n 's/^AC_INIT(\[herald\], \[\([0-9.]*\)\].*/\1/p' "$SRC/configure.ac")
check "configure.ac's AC_INIT has a version ($VERSION)" test -n "$VERSION"
check "the build was configured with it" grep -qx "PACKAGE_VERSION = $VERSION" "$BUILD/Makefile"

same () {
    local what=$1 got=$2
    if [ "$got" = "$VERSION" ]; then ok "$what: $got"
    else not_ok "$what: '$got', configure.ac says '$VERSION'"; fi
}
header () { sed -n "s/^#define HERALD_VERSION_$1 \([0-9]*\)$/\1/p" "$SRC/include/herald.h"; }
same "include/herald.h HERALD_VERSION_*" "$(header MAJOR).$(header MINOR).$(header PATCH)"
same "heraldd --version" "$("$HERALDD" --version | awk '{print $2}')"
same "bindings/python/pyproject.toml" \
    "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/bindings/python/pyproject.toml")"
same "bindings/python/_build/herald_build.py" \
    "$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$SRC/bindings/python/_build/herald_build.py")"
same "herald.__version__" \
    "$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$SRC/bindings/python/herald/__init__.py")"
same "debian/changelog (upstream part)" \
    "$(sed -n '1s/^herald (\([^-)]*\)-[^)]*).*/\1/p' "$SRC/debian/changelog")"
same "CHANGELOG.md's newest version" "$(sed -n 's/^## \([0-9][0-9.]*\) .*/\1/p' "$SRC/CHANGELOG.md" | head -1)"
same "herald.pc" "$(sed -n 's/^Version: //p' "$BUILD/herald.pc")"
check "heraldd.8 carries it" grep -q "herald $VERSION" "$BUILD/man/heraldd.8"
check "herald.1 carries it" grep -q "herald $VERSION" "$BUILD/man/herald.1"

shtest_done
