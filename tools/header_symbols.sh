#!/bin/sh
#  header_symbols.sh CC HEADER... - the functions the public headers declare,
#  one name a line, sorted: libherald.so's export list (Makefile.am) and what
#  tests/test_exports.sh holds the built library to.
#
#  The header goes through the preprocessor first, so comments, macros and
#  #if'd-out text never count; only the lines of the header itself are kept
#  (the preprocessor's line markers say whose a line is), so a header that
#  includes another (herald_projection.h includes herald.h) gives its own.  What is left is declarations: a function's
#  name is an identifier herald_... followed by "(", once the parenthesised
#  names are gone: "typedef int (herald_handler_fn) (...)" declares a type and
#  "(*herald_x) (...)" a function pointer, neither of them a symbol.
set -e
cc="$1"; shift
[ $# -gt 0 ] || { echo "usage: $0 CC HEADER..." >&2; exit 64; }
for header in "$@"; do
    [ -r "$header" ] || { echo "$0: cannot read $header" >&2; exit 1; }
    dir=$(dirname "$header")
    #  -I the header's own directory: herald_projection.h includes herald.h.
    $cc -E -I "$dir" -x c "$header" \
        | awk -v want="$header" '
            /^# [0-9]+ "/ { f = $3; gsub (/"/, "", f); mine = (f == want); next }
            mine { print }'
done | tr '\n\t' '  ' \
     | sed -E 's/\( *\*? *herald_[A-Za-z0-9_]+ *\)//g' \
     | grep -oE '(^|[^A-Za-z0-9_])herald_[A-Za-z0-9_]+ *\(' \
     | sed -E 's/^[^h]*//; s/ *\($//' \
     | sort -u
