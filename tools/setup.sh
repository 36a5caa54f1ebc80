# Sourced by ./run.sh and ./test.sh: install the Debian packages Herald
# needs (as root, or through sudo), then configure and build in the
# directory $herald_build (the source tree unless set) with the configure
# flags in $herald_configure_flags.  Each step runs only when needed, so a
# second run with nothing changed costs a few seconds.

herald_packages=(build-essential autoconf automake libtool pkg-config
                 libmsgpack-dev librocksdb-dev libzmq3-dev libczmq-dev libcriterion-dev
                 clang libclang-rt-14-dev
                 python3 python3-pytest python3-zmq python3-msgpack
                 python3-pip python3-setuptools python3-wheel    # pip install ./bindings/python, offline
                 libnats-dev libhiredis-dev)     # bench/compare's clients (docs/benchmarks.md)

herald_setup () {
    local top missing=() package sudo=""
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    for package in "${herald_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "herald: installing ${missing[*]}" >&2
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    [ -x "$top/configure" ] || "$top/autogen.sh" >&2
    mkdir -p "${herald_build:=$top}"
    if [ ! -f "$herald_build/Makefile" ]; then
        (cd "$herald_build" && "$top/configure" -q ${herald_configure_flags[@]+"${herald_configure_flags[@]}"}) >&2
    fi
    make -C "$herald_build" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
}
