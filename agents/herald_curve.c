/*  =========================================================================
    herald_curve - a client's CURVE identity and the broker keys it trusts

    Keys are read from zcert files with zconfig (the format zcert_save
    writes: `curve` / `public-key` and `secret-key`), so that every
    failure can be named: a missing file, a public cert given where the
    secret one is needed, a key that is not Z85, a secret that does not go
    with its public key.  The secret file is refused when group or others
    may read or write it, as ssh does: a key anyone on the host can read
    identifies nobody.  Secrets are copied into this object only, and
    wiped when it is destroyed.
    =========================================================================
*/

#include <errno.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include "herald_curve.h"

struct _herald_curve_t {
    char public_key [41];
    char secret_key [41];
    char servers [HERALD_CURVE_SERVERS_MAX][41];
    size_t server_count;
    atomic_size_t current;                  //  read by API threads (read/replay pool)
};

//  A Z85 key of 32 bytes: 40 characters of the Z85 alphabet that decode.
static bool
s_z85_valid (const char *text)
{
    static const char alphabet [] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    ".-:+=^!/*?&<>()[]{}@%$#";
    if (!text || strlen (text) != 40 || strspn (text, alphabet) != 40)
        return false;
    uint8_t bytes [32];
    return zmq_z85_decode (bytes, text) != NULL;
}

//  The keys of a zcert file: public always, secret when secret is given.
static bool
s_load (const char *path, char *public_key, char *secret_key, const char *what, char *why,
        size_t size)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        snprintf (why, size, "%s %s: %s", what, path, strerror (errno));
        return false;
    }
    fclose (file);
    zconfig_t *root = zconfig_load (path);
    const char *public_text = root? zconfig_get (root, "curve/public-key", NULL): NULL;
    const char *secret_text = root? zconfig_get (root, "curve/secret-key", NULL): NULL;
    bool ok = false;
    if (!public_text)
        snprintf (why, size, "%s %s: not a zcert key file (no curve/public-key)", what, path);
    else
    if (!s_z85_valid (public_text))
        snprintf (why, size, "%s %s: public-key is not a Z85 CURVE key (40 characters)",
                  what, path);
    else
    if (secret_key && !secret_text)
        snprintf (why, size, "%s %s holds no secret key: give the NAME.key_secret file "
                  "(herald keygen makes both)", what, path);
    else
    if (secret_key && !s_z85_valid (secret_text))
        snprintf (why, size, "%s %s: secret-key is not a Z85 CURVE key (40 characters)",
                  what, path);
    else {
        snprintf (public_key, 41, "%s", public_text);
        if (secret_key)
            snprintf (secret_key, 41, "%s", secret_text);
        ok = true;
    }
    zconfig_destroy (&root);
    return ok;
}

herald_curve_t *
herald_curve_new (const char *key_file, const char *server_key, char *why, size_t size)
{
    if (!key_file || !*key_file || !server_key || !*server_key) {
        snprintf (why, size, "%s", !key_file || !*key_file
                  ? "server_key is given without key_file: CURVE needs this client's secret "
                    "key file too"
                  : "key_file is given without server_key: give the broker's public key "
                    "(Z85, or @FILE), learned out of band");
        return NULL;
    }
    herald_curve_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (why, size, "out of memory");
        return NULL;
    }
    struct stat status;
    if (stat (key_file, &status) != 0) {
        snprintf (why, size, "key file %s: %s", key_file, strerror (errno));
        herald_curve_destroy (&self);
        return NULL;
    }
    if (!s_load (key_file, self->public_key, self->secret_key, "key file", why, size)) {
        herald_curve_destroy (&self);
        return NULL;
    }
    //  (After the load: a public cert given by mistake is named as such,
    //  not as a file to chmod)
    if (status.st_mode & 077) {
        snprintf (why, size, "key file %s is readable or writable by group or others (mode "
                  "%04o): a secret key must be private (chmod 600 %s)", key_file,
                  (unsigned) (status.st_mode & 07777), key_file);
        herald_curve_destroy (&self);
        return NULL;
    }
    //  The secret must be the one of the public key beside it, or the
    //  broker would judge us by a key we cannot prove
    char derived [41];
    if (zmq_curve_public (derived, self->secret_key) != 0 || strcmp (derived, self->public_key)) {
        snprintf (why, size, "key file %s: its secret key does not belong to its public key",
                  key_file);
        herald_curve_destroy (&self);
        return NULL;
    }
    const char *at = server_key;
    while (at) {
        const char *end = strchr (at, ',');
        size_t len = end? (size_t) (end - at): strlen (at);
        while (len && (*at == ' ' || *at == '\t')) {
            at++;
            len--;
        }
        while (len && (at [len - 1] == ' ' || at [len - 1] == '\t'))
            len--;
        char item [4096];
        if (len == 0 || len >= sizeof item) {
            snprintf (why, size, "server_key '%s': %s", server_key, len? "an item is too long"
                      : "an empty item (give KEY or @FILE, comma-separated)");
            herald_curve_destroy (&self);
            return NULL;
        }
        if (self->server_count == HERALD_CURVE_SERVERS_MAX) {
            snprintf (why, size, "server_key: at most %d broker keys", HERALD_CURVE_SERVERS_MAX);
            herald_curve_destroy (&self);
            return NULL;
        }
        memcpy (item, at, len);
        item [len] = 0;
        char *key = self->servers [self->server_count];
        //  A Z85 key may itself begin with '@': an item is a file when
        //  that file exists, or when it is not a key
        struct stat item_status;
        if (item [0] == '@' && (!s_z85_valid (item) || stat (item + 1, &item_status) == 0)) {
            if (!s_load (item + 1, key, NULL, "server_key file", why, size)) {
                herald_curve_destroy (&self);
                return NULL;
            }
        }
        else
        if (s_z85_valid (item))
            snprintf (key, 41, "%s", item);
        else {
            snprintf (why, size, "server_key '%.60s' is neither a Z85 public key (40 "
                      "characters) nor @FILE (a zcert public cert)", item);
            herald_curve_destroy (&self);
            return NULL;
        }
        self->server_count++;
        at = end? end + 1: NULL;
    }
    return self;
}

void
herald_curve_destroy (herald_curve_t **self_p)
{
    if (!*self_p)
        return;
    volatile char *secret = (*self_p)->secret_key;
    for (size_t index = 0; index < sizeof (*self_p)->secret_key; index++)
        secret [index] = 0;
    free (*self_p);
    *self_p = NULL;
}

void
herald_curve_apply (herald_curve_t *self, zsock_t *sock)
{
    zsock_set_curve_publickey (sock, self->public_key);
    zsock_set_curve_secretkey (sock, self->secret_key);
    herald_curve_apply_server (self, sock);
}

void
herald_curve_apply_server (herald_curve_t *self, zsock_t *sock)
{
    zsock_set_curve_serverkey (sock, herald_curve_server (self));
}

size_t
herald_curve_server_count (herald_curve_t *self)
{
    return self->server_count;
}

size_t
herald_curve_server_index (herald_curve_t *self)
{
    return atomic_load (&self->current);
}

void
herald_curve_next (herald_curve_t *self)
{
    atomic_store (&self->current, (atomic_load (&self->current) + 1) % self->server_count);
}

const char *
herald_curve_server (herald_curve_t *self)
{
    return self->servers [atomic_load (&self->current) % self->server_count];
}

const char *
herald_curve_public (herald_curve_t *self)
{
    return self->public_key;
}
