#!/bin/bash
#  =========================================================================
#  test_herald_cli_security - herald keygen and herald acl check (issue 14)
#
#  keygen: both files made, the secret at 0600 whatever the umask, the key
#  printed equal to what --show reads back from either file, an existing
#  file never overwritten (nor its partner created), usage errors 64.
#  acl check: keygen's output is valid ACL text; a valid file prints
#  normalised with the SHA-256 of its bytes as acl_version; a refused file
#  exits 1 with FILE:LINE on stderr and nothing on stdout; a group- or
#  world-writable file is refused; every admin grant is printed by name;
#  USER TOPIC verdicts; usage errors 64.
#
#  Offline: no broker.  The EXIT trap removes the temporary directory.
#  The last line is "N passed, M failed".
#  =========================================================================

set -u

. "$(dirname "$0")/shtest.sh"
shtest_init herald_cli_security

#  run NAME CMD...: run CMD, saving stdout, stderr and the exit status
run () {
    local name=$1
    shift
    timeout 20 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    echo $? >"$TMP/$name.rc"
}
rc_is () { check "$1 exits $2 (got $(cat "$TMP/$1.rc"))" [ "$(cat "$TMP/$1.rc")" = "$2" ]; }
says () { check "$1 says '$2'" grep -qF -- "$2" "$TMP/$1.err"; }
prints () { check "$1 prints '$2'" grep -qF -- "$2" "$TMP/$1.out"; }
quiet () { check "$1 prints nothing on stdout" [ ! -s "$TMP/$1.out" ]; }
mode_of () { stat -c %a "$1"; }

KEYS=$TMP/keys
mkdir "$KEYS"

#  ---------------------------------------------------------------------
#  keygen

run keygen "$HERALD" keygen alice --dir "$KEYS"
rc_is keygen 0
check "keygen made alice.key" [ -f "$KEYS/alice.key" ]
check "keygen made alice.key_secret" [ -f "$KEYS/alice.key_secret" ]
check "the secret file is mode 600 (got $(mode_of "$KEYS/alice.key_secret"))" \
    [ "$(mode_of "$KEYS/alice.key_secret")" = 600 ]
check "the public file is not writable by group or others" \
    [ $(( 0$(mode_of "$KEYS/alice.key") & 022 )) -eq 0 ]
prints keygen "[user alice]"
KEY=$(sed -n 's/^key *= *//p' "$TMP/keygen.out")
check "keygen prints a 40-character key (got '$KEY')" [ ${#KEY} -eq 40 ]
run show_public "$HERALD" keygen --show "$KEYS/alice.key"
rc_is show_public 0
check "--show of the public file gives the printed key" [ "$(cat "$TMP/show_public.out")" = "$KEY" ]
run show_secret "$HERALD" keygen --show "$KEYS/alice.key_secret"
check "--show of the secret file gives the same key" [ "$(cat "$TMP/show_secret.out")" = "$KEY" ]
check "the secret file holds a secret key" grep -q 'secret-key = ' "$KEYS/alice.key_secret"
check "the public file holds no secret key" bash -c "! grep -q 'secret-key' '$KEYS/alice.key'"

#  the secret is 0600 even under a permissive umask
run keygen_umask bash -c "umask 000; exec '$HERALD' keygen bob --dir '$KEYS'"
rc_is keygen_umask 0
check "under umask 000 the secret file is still 600 (got $(mode_of "$KEYS/bob.key_secret"))" \
    [ "$(mode_of "$KEYS/bob.key_secret")" = 600 ]

#  never overwrite: not both, not either, and make no partner
before=$(md5sum "$KEYS"/alice.key*)
run again "$HERALD" keygen alice --dir "$KEYS"
rc_is again 1
says again "not overwritten"
quiet again
check "a refused keygen leaves both files as they were" [ "$(md5sum "$KEYS"/alice.key*)" = "$before" ]
rm "$KEYS/bob.key_secret"
before=$(md5sum "$KEYS/bob.key")
run public_only "$HERALD" keygen bob --dir "$KEYS"
rc_is public_only 1
says public_only "bob.key: File exists (not overwritten"
check "the existing public file is untouched" [ "$(md5sum "$KEYS/bob.key")" = "$before" ]
check "no secret file is left behind" [ ! -e "$KEYS/bob.key_secret" ]
mv "$KEYS/bob.key" "$KEYS/bob.key_secret"
run secret_only "$HERALD" keygen bob --dir "$KEYS"
rc_is secret_only 1
says secret_only "bob.key_secret: File exists (not overwritten"
check "no public file is left behind" [ ! -e "$KEYS/bob.key" ]

#  usage and failures
run no_name "$HERALD" keygen
rc_is no_name 64
says no_name "keygen: give a NAME"
run bad_name "$HERALD" keygen "a/b" --dir "$KEYS"
rc_is bad_name 64
says bad_name "name 'a/b' is not valid"
check "a bad name makes no file" [ ! -e "$KEYS/a" ]
run two_names "$HERALD" keygen a b
rc_is two_names 64
run both "$HERALD" keygen a --show "$KEYS/alice.key"
rc_is both 64
run no_dir "$HERALD" keygen carol --dir "$TMP/nowhere"
rc_is no_dir 1
says no_dir "is not a directory"
run dir_value "$HERALD" keygen carol --dir
rc_is dir_value 64
run show_missing "$HERALD" keygen --show "$TMP/nowhere.key"
rc_is show_missing 1
echo "not a cert" >"$TMP/junk"
run show_junk "$HERALD" keygen --show "$TMP/junk"
rc_is show_junk 1
says show_junk "is not a key file"
run keygen_help "$HERALD" help keygen
rc_is keygen_help 0
prints keygen_help "usage: herald keygen NAME [--dir DIR]"

#  ---------------------------------------------------------------------
#  acl check

ACL=$TMP/acl
{
    cat "$TMP/keygen.out"
    echo "scope   = orders-view"
    echo "publish = orders.eu. orders.    # the first is covered"
    "$HERALD" keygen ops --dir "$KEYS"
    echo "read = *"
    echo "admin = status acl"
    echo "[scope orders-view]"
    echo "read = orders. \"with space.\""
    echo "fanout = tcp://127.0.0.1:5591"
} >"$ACL"
chmod 644 "$ACL"
OPS_KEY=$(sed -n 's/^key *= *//p' "$ACL" | tail -1)
run check_ok "$HERALD" acl check "$ACL"
rc_is check_ok 0
check "acl check says nothing on stderr" [ ! -s "$TMP/check_ok.err" ]
version=$(sha256sum "$ACL" | cut -c1-12)
prints check_ok "# acl_version $version: 1 scope, 2 users, 0 peers"
prints check_ok "publish = orders."
check "the covered prefix is dropped" bash -c "! grep -q 'orders.eu.' '$TMP/check_ok.out'"
prints check_ok 'read    = orders. "with space."'
prints check_ok "key     = $OPS_KEY"
#  what it prints is itself a valid ACL, and prints the same
cp "$TMP/check_ok.out" "$TMP/printed"
chmod 600 "$TMP/printed"
run check_printed "$HERALD" acl check "$TMP/printed"
rc_is check_printed 0
check "the printed table prints the same" \
    [ "$(tail -n +2 "$TMP/check_printed.out")" = "$(tail -n +2 "$TMP/check_ok.out")" ]

#  every admin grant is printed by name, groups too (it printed "admin   ="
#  empty for a user whose only grant was groups)
printf '[user g]\nkey = %s\nadmin = groups\n[user h]\nkey = %s\nadmin = status groups\n' \
    "$KEY" "$OPS_KEY" >"$TMP/grants"
chmod 600 "$TMP/grants"
run grants "$HERALD" acl check "$TMP/grants"
rc_is grants 0
check "admin = groups is printed as such" grep -qx 'admin   = groups' "$TMP/grants.out"
check "admin = status groups is printed as such" \
    grep -qx 'admin   = status groups' "$TMP/grants.out"

run verdict "$HERALD" acl check "$ACL" alice orders.eu.1
rc_is verdict 0
prints verdict "user alice, topic orders.eu.1: publish allowed, read allowed (scope orders-view: tcp://127.0.0.1:5591)"
run verdict_no "$HERALD" acl check "$ACL" ops orders.1
prints verdict_no "user ops, topic orders.1: publish refused, read allowed (read = *: the main fanout)"
run verdict_nobody "$HERALD" acl check "$ACL" mallory orders.1
rc_is verdict_nobody 1
says verdict_nobody "has no user 'mallory'"
run verdict_topic "$HERALD" acl check "$ACL" alice '$hb'
rc_is verdict_topic 64

#  refused files: FILE:LINE on stderr, nothing on stdout
printf '[user a]\nkey = %s\n[user b]\nkey = %s\n' "$KEY" "$KEY" >"$TMP/dup"
chmod 600 "$TMP/dup"
run dup "$HERALD" acl check "$TMP/dup"
rc_is dup 1
quiet dup
check "a duplicate key names its line" \
    [ "$(cat "$TMP/dup.err")" = "herald: $TMP/dup:4: key: already the key of user 'a' (line 2)" ]
printf '[scope s]\nread = a.\n' >"$TMP/nofanout"
chmod 600 "$TMP/nofanout"
run nofanout "$HERALD" acl check "$TMP/nofanout"
rc_is nofanout 1
says nofanout "$TMP/nofanout:1: scope 's' has no endpoint"
chmod 664 "$ACL"
run writable "$HERALD" acl check "$ACL"
rc_is writable 1
quiet writable
says writable "$ACL: writable by group or others"
chmod 646 "$ACL"
run world "$HERALD" acl check "$ACL"
rc_is world 1
chmod 600 "$ACL"
run missing "$HERALD" acl check "$TMP/none"
rc_is missing 1
says missing "$TMP/none: No such file or directory"

#  an expired key is kept, and said
printf '[user old]\nkey = %s until 2001-01-01\n' "$KEY" >"$TMP/expired"
chmod 600 "$TMP/expired"
run expired "$HERALD" acl check "$TMP/expired"
rc_is expired 0
says expired "1 key has expired"
prints expired "until 2001-01-01   # expired: refused"

#  usage
run acl_none "$HERALD" acl
rc_is acl_none 64
run acl_frob "$HERALD" acl frob "$ACL"
rc_is acl_frob 64
says acl_frob "unknown subcommand 'frob'"
run acl_nofile "$HERALD" acl check
rc_is acl_nofile 64
run acl_three "$HERALD" acl check "$ACL" alice
rc_is acl_three 64
run acl_option "$HERALD" acl check "$ACL" --frob
rc_is acl_option 64
run acl_help "$HERALD" acl check --help
rc_is acl_help 0
prints acl_help "usage: herald acl check FILE [USER TOPIC]"
run usage "$HERALD" --help
prints usage "keygen NAME"
prints usage "acl check FILE"

shtest_done
