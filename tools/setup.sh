# Sourced by ./run.sh and ./test.sh: install the Debian packages Herald
# needs (as root, or through sudo), then configure and build in the
# directory $herald_build (the source tree unless set) with the configure
# flags in $herald_configure_flags.  With $herald_copy set, $herald_build
# is a copy of the sources, refreshed first and built in place (./test.sh
# --sanitize: two in-place builds cannot share one tree).
#
# Each step runs only when needed and says so in one line before it
# starts ("herald: configuring ...").  Its output goes to setup.log in the
# build directory; a step that fails prints the end of that log and the
# path of the whole.  A second run with nothing changed prints nothing.

herald_packages=(build-essential autoconf automake libtool pkg-config
                 libmsgpack-dev librocksdb-dev libzmq3-dev libczmq-dev libcriterion-dev
                 libsodium-dev                   # the ACL file's digest (acl_version)
                 libmicrohttpd-dev               # heraldd --metrics (docs/metrics.md)
                 curl                            # docs/metrics.md's walk-through
                 libzstd-dev                     # herald archive's segment files (zstd)
                 libsystemd-dev                  # heraldd's sd_notify (Type=notify)
                 systemd man-db                  # systemd-analyze verify, man -l (tests/test_heraldd_unit.sh)
                 debhelper fakeroot dpkg-dev     # dpkg-buildpackage (debian/, docs/operations.md)
                 clang libclang-rt-14-dev
                 python3 python3-pytest python3-zmq python3-msgpack
                 python3-pip python3-venv    # pip install ./bindings/python, offline, in a venv (docs/python.md)
                 python3-setuptools python3-wheel
                 libnats-dev libhiredis-dev      # bench/compare's clients (docs/benchmarks.md)
                 gnuplot-nox                     # bench/compare's charts (tests/test_bench_charts.sh)
                 libsqlite3-dev libpq-dev        # libherald_projection's databases (docs/projections.md)
                 postgresql python3-psycopg2)    # its PostgreSQL tests start a server of their own

# The cluster's consensus: libraft 0.22.1 from bookworm-backports (the
# maintained line; Debian 12's own 0.15.0 has known safety bugs), with
# libuv.  configure requires raft >= 0.18.
herald_backports_packages=(libraft-dev libuv1-dev)

herald_say () { echo "herald: $*" >&2; }

# herald_log_run LOG COMMAND...: run COMMAND with its output appended to
# LOG; when it fails, show the end of LOG and return its status.
herald_log_run () {
    local log=$1 status=0
    shift
    echo "+ $*" >>"$log"
    "$@" >>"$log" 2>&1 </dev/null || status=$?
    [ "$status" -eq 0 ] || herald_failed "$log" "$status" "$*"
    return "$status"
}

herald_failed () {
    local log=$1 status=$2 what=$3
    herald_say "failed (exit $status): $what"
    echo "---- the end of $log ----" >&2
    tail -n 40 "$log" >&2
    echo "---- (the whole output is in $log) ----" >&2
}

# herald_sources_copy TOP DEST: make DEST a copy of the source files of
# the git checkout TOP (tracked, and new files git does not ignore), with
# their times kept so that make rebuilds only what changed; files gone
# from TOP go from DEST.  Returns 2 when TOP is not a git checkout.
herald_sources_copy () {
    local top=$1 dest=$2 list skip=()
    git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 2
    mkdir -p "$dest"
    case $dest in "$top"/*) skip=(":!${dest#"$top"/}") ;; esac
    list=$(cd "$top" && git ls-files --cached --others --exclude-standard \
               -- . ${skip[@]+"${skip[@]}"} | sort -u | while IFS= read -r file; do
               [ -f "$file" ] && printf '%s\n' "$file"; done)
    if [ -f "$dest/.herald-sources" ]; then
        comm -23 "$dest/.herald-sources" <(printf '%s\n' "$list") \
            | (cd "$dest" && xargs -r -d '\n' rm -f --)
    fi
    (cd "$top" && printf '%s\n' "$list" | tar -cf - --verbatim-files-from -T -) \
        | tar -xf - -C "$dest" || return 1
    printf '%s\n' "$list" >"$dest/.herald-sources"
}

# herald_backports_mirror: the Debian mirror apt already uses (from its
# deb822 or one-line sources), for the bookworm-backports suite.
herald_backports_mirror () {
    local file uri=""
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$file")
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ]; then
        for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$file" ] || continue
            uri=$(awk '$1 == "deb" && $0 !~ /security/ {
                           for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$file")
            [ -n "$uri" ] && break
        done
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# herald_backports_sources [SUDO]: the bookworm-backports suite in apt's
# sources (a file of its own), unless apt has it already.  Returns 0 when
# it added it.
herald_backports_sources () {
    grep -rqsE '^(Suites:.*|deb .*)bookworm-backports' /etc/apt/sources.list \
        /etc/apt/sources.list.d/ && return 1
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$(herald_backports_mirror)" \
        | ${1:+"$1"} tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
}

# herald_make DIR LOG FIRST: make in DIR, its output in LOG.  Nothing is
# shown unless make compiles something; then one line, and on a terminal
# a count that goes up.  FIRST set: no build yet, say how long it takes.
herald_make () {
    local dir=$1 log=$2 first=$3 jobs status errexit="" start=$SECONDS steps
    jobs=$(nproc 2>/dev/null || echo 2)
    echo "+ make -C $dir -j$jobs" >>"$log"
    # make's status, not the filter's, and without set -e ending the script
    case $- in *e*) errexit=1; set +e ;; esac
    make -s --no-print-directory -C "$dir" -j"$jobs" 2>&1 </dev/null \
        | herald_make_progress "$log" "$first" "$jobs"
    status=${PIPESTATUS[0]}
    [ -z "$errexit" ] || set -e
    if [ "$status" -ne 0 ]; then
        herald_failed "$log" "$status" "make -C $dir"
        return "$status"
    fi
    # the steps of this make, after its "+ make" line
    steps=$(awk '/^\+ make /{n=0; next} /^  [A-Z]/{n++} END{print n+0}' "$log")
    [ "$steps" -eq 0 ] || herald_say "built: $steps $( [ "$steps" -eq 1 ] && echo step ||
                                          echo steps) in $((SECONDS - start)) s"
}

# Reads make's output: every line to LOG; a step line ("  CC  file.o")
# counts.  The first prints the header; on a terminal a count follows it.
herald_make_progress () {
    local log=$1 first=$2 jobs=$3 line steps=0 start=$SECONDS said=$SECONDS tty="" regen=""
    [ -t 2 ] && tty=1
    while IFS= read -r line; do
        printf '%s\n' "$line" >>"$log"
        case "$line" in
            "  "[A-Z]*) ;;
            # automake's own rules: Makefile.am or configure.ac changed
            " cd "*|"running CONFIG_SHELL="*)
                if [ -z "$regen" ]; then
                    regen=1
                    herald_say "Makefile.am or configure.ac changed: regenerating the Makefile"
                fi
                continue ;;
            *) continue ;;
        esac
        steps=$((steps + 1))
        if [ "$steps" -eq 1 ]; then
            if [ -n "$first" ]; then
                herald_say "building (about 100 compile and link steps the first time)"
            else
                herald_say "building what changed"
            fi
        fi
        if [ -n "$tty" ]; then
            printf '\r\033[K        %d steps, %d s: %s' "$steps" $((SECONDS - start)) \
                "${line##* }" >&2
        elif [ $((SECONDS - said)) -ge 30 ]; then
            herald_say "  ... $steps steps, $((SECONDS - start)) s"
            said=$SECONDS
        fi
    done
    if [ "$steps" -gt 0 ] && [ -n "$tty" ]; then
        printf '\r\033[K' >&2
    fi
}

herald_setup () {
    local top src build log missing=() package sudo="" first="" start status=0
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    build=${herald_build:-$top}
    src=$top
    # build-asan/ from before it held a copy: configured against this tree
    if [ -n "${herald_copy:-}" ] && [ -f "$build/config.status" ] \
    && [ ! -f "$build/configure.ac" ] \
    && git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        herald_say "$build was configured by an older ./test.sh; starting it afresh"
        rm -rf "$build"
    fi
    mkdir -p "$build"
    log=$build/setup.log
    : >"$log"

    for package in "${herald_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    local backports=() version
    for package in "${herald_backports_packages[@]}"; do
        version=$(dpkg-query -W -f='${Status} ${Version}' "$package" 2>/dev/null)
        case $version in
            "install ok installed "*) ;;
            *) backports+=("$package"); continue ;;
        esac
        # libraft: 0.18 or later (bookworm's own is 0.15.0)
        if [ "$package" = libraft-dev ] \
        && dpkg --compare-versions "${version##* }" lt 0.18; then
            backports+=("$package")
        fi
    done
    if [ ${#missing[@]} -gt 0 ] || [ ${#backports[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            if ! command -v sudo >/dev/null; then
                herald_say "missing Debian packages; as root, run:"
                [ ${#missing[@]} -eq 0 ] || echo "    apt-get install ${missing[*]}" >&2
                [ ${#backports[@]} -eq 0 ] || echo "    (with bookworm-backports in apt's" \
                    "sources) apt-get install -t bookworm-backports ${backports[*]}" >&2
                return 1
            fi
            sudo="sudo"
        fi
        local all=("${missing[@]}" "${backports[@]}")
        herald_say "installing ${#all[@]} Debian package$([ ${#all[@]} -eq 1 ] || echo s)" \
                   "(a few minutes on a fresh machine): ${all[*]}"
        start=$SECONDS
        if [ ${#backports[@]} -gt 0 ]; then
            herald_backports_sources "$sudo" && herald_say "added the bookworm-backports suite to apt's sources" \
                             "(/etc/apt/sources.list.d/bookworm-backports.sources)"
        fi
        herald_log_run "$log" $sudo apt-get update -q || return
        if [ ${#missing[@]} -gt 0 ]; then
            herald_log_run "$log" $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends "${missing[@]}" || return
        fi
        if [ ${#backports[@]} -gt 0 ]; then
            herald_log_run "$log" $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends -t bookworm-backports "${backports[@]}" || return
        fi
        herald_say "installed in $((SECONDS - start)) s"
    fi

    if [ -n "${herald_copy:-}" ]; then
        herald_sources_copy "$top" "$build" || status=$?
        if [ "$status" -ne 0 ]; then
            [ "$status" -ne 2 ] && { herald_say "cannot copy the sources into $build"; return 1; }
            # Not a git checkout (a release tarball): build out of the
            # tree, which configure allows only if the tree is not
            # configured in place.
            if [ -f "$top/config.status" ]; then
                herald_say "this tree is built in place and is not a git checkout, so" \
                           "$build cannot get a copy of it;"
                herald_say "run 'make distclean' here first"
                return 2
            fi
        else
            src=$build
        fi
    fi

    if [ ! -x "$src/configure" ]; then
        herald_say "generating ./configure (autoreconf)"
        herald_log_run "$log" "$src/autogen.sh" || return
    fi
    if [ ! -f "$build/Makefile" ]; then
        herald_say "configuring${herald_configure_flags[*]:+ with ${herald_configure_flags[*]}}"
        herald_log_run "$log" env -C "$build" "$src/configure" -q \
            ${herald_configure_flags[@]+"${herald_configure_flags[@]}"} || return
    fi
    [ -x "$build/broker/heraldd" ] || first=1
    herald_make "$build" "$log" "$first"
}
