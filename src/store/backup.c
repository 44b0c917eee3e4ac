/*
 * Backup, restore and store information.
 *
 * Restore never works on the live store until the backup has been proven good: it is first copied to a
 * temporary file beside the store, opened as a moat store there (which migrates it if it is older),
 * checked (integrity, every private key decrypts with this master key), given a generation newer than
 * the live one, and only then copied over the live store in one transaction.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void unlink_db(const char *path)
{
    char side[PATH_MAX + 16];
    (void)unlink(path); /* any of these may not exist */
    snprintf(side, sizeof(side), "%s-wal", path);
    (void)unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    (void)unlink(side);
    snprintf(side, sizeof(side), "%s-journal", path);
    (void)unlink(side);
}

/*
 * Temporary files beside the store or a backup are named "<base>.<tag>-<pid>-XXXXXX", so that one left by
 * a killed process (a whole copy of the store) can be told from one in use and swept.
 */
/* A 0600 temporary file named after <base>; its path goes into <out>. Stale ones are swept first. */
static int make_temp(const char *base, const char *tag, char *out, size_t outsz, moat_err_t *err)
{
    int fd;
    moat_file_sweep_stale(base, tag);
    if ((size_t)snprintf(out, outsz, "%s.%s-%ld-XXXXXX", base, tag, (long)getpid()) >= outsz)
        return moat_err_set(err, MOAT_E_INVAL, "path too long: %s", base);
    if ((fd = mkstemp(out)) < 0)
        return moat_err_set(err, MOAT_E_IO, "cannot create a temporary file beside %s: %s", base,
                            strerror(errno));
    if (fchmod(fd, 0600) != 0) {
        close(fd);
        (void)unlink(out);
        return moat_err_set(err, MOAT_E_IO, "cannot set mode 0600 on %s: %s", out, strerror(errno));
    }
    close(fd);
    return 0;
}

static int fsync_path(const char *path, int dir, moat_err_t *err)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return moat_err_set(err, MOAT_E_IO, "cannot open %s: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return moat_err_set(err, MOAT_E_IO, "writing %s to disk failed: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

static void dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        (void)moat_strlcpy(out, ".", n);
    else if (slash == path)
        (void)moat_strlcpy(out, "/", n);
    else
        snprintf(out, n, "%.*s", (int)(slash - path), path);
}

int moat_store_backup(moat_store_t *st, const char *dest, int force, moat_err_t *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX], absdest[PATH_MAX];
    struct stat sb;
    int rc;

    if (st->in_tx)
        return moat_err_set(err, MOAT_E_STATE, "a backup cannot be taken inside a transaction");
    if (dest == NULL || dest[0] == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "no backup file given");
    if ((rc = moat_path_absolute(dest, absdest, sizeof(absdest), err)) != 0)
        return rc;
    if (strcmp(absdest, st->path) == 0)
        return moat_err_set(err, MOAT_E_INVAL, "the backup file must not be the store itself");
    if (lstat(absdest, &sb) == 0) {
        if (!force) {
            moat_err_set(err, MOAT_E_EXISTS, "%s already exists", absdest);
            return moat_err_hint(err, "choose another file name, or pass --force to overwrite it");
        }
        if (!S_ISREG(sb.st_mode))
            return moat_err_set(err, MOAT_E_INVAL, "%s exists and is not a regular file", absdest);
    } else if (errno != ENOENT) {
        return moat_err_set(err, MOAT_E_IO, "cannot access %s: %s", absdest, strerror(errno));
    }
    /* On record before the copy exists (the copy holds its own entry): a kill may leave an entry
     * without a backup, never a backup without an entry. */
    if ((rc = moat_store_audit_add(st, "store.backup", absdest, NULL, err)) != 0)
        return moat_err_prefix(err, "recording the backup to %s in the audit log failed", absdest);
    /* Written beside the destination and renamed: an interrupted backup never leaves a half file. */
    if ((rc = make_temp(absdest, "tmp", tmp, sizeof(tmp), err)) != 0)
        return rc;
    if ((rc = st->ops->backup_to(st, tmp, err)) == 0 && (rc = fsync_path(tmp, 0, err)) == 0) {
        if (chmod(tmp, 0600) != 0)
            rc = moat_err_set(err, MOAT_E_IO, "cannot set mode 0600 on %s: %s", tmp, strerror(errno));
        else if (rename(tmp, absdest) != 0)
            rc = moat_err_set(err, MOAT_E_IO, "cannot write %s: %s", absdest, strerror(errno));
    }
    if (rc != 0) {
        moat_err_t ignored = {0};
        unlink_db(tmp);
        moat_err_prefix(err, "backing up to %s", absdest);
        /* The entry above says a backup was begun, this one that it was not made; if even this fails,
         * the error being returned is the one to show. */
        if (moat_store_audit_add(st, "store.backup", absdest, "failed: nothing was written", &ignored) != 0)
            moat_err_clear(&ignored);
        return rc;
    }
    dir_of(absdest, dir, sizeof(dir));
    (void)fsync_path(dir, 1, err); /* the rename is done; a failed directory sync only weakens durability */
    moat_err_clear(err);
    return 0;
}

/* ---- diff ---- */

const char *moat_store_diff_change_name(moat_diff_change_t c)
{
    static const char *const names[] = {[MOAT_DIFF_ADDED] = "added",
                                        [MOAT_DIFF_REMOVED] = "removed",
                                        [MOAT_DIFF_CHANGED] = "changed",
                                        [MOAT_DIFF_KEPT] = "kept"};
    return (unsigned)c < MOAT_ARRAY_LEN(names) ? names[c] : "changed";
}

void moat_store_diff_dispose(moat_store_diff_t *d)
{
    if (d == NULL)
        return;
    moat_free(&d->items);
    d->n = 0;
}

int moat_store_diff_add(moat_store_diff_t *d, const char *kind, const char *name, const char *suffix,
                        moat_diff_change_t change, moat_err_t *err)
{
    moat_store_diff_item_t *p = moat_realloc(d->items, (d->n + 1) * sizeof(*p));
    if (p == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory comparing stores");
    d->items = p;
    p = &d->items[d->n++];
    p->kind = kind;
    snprintf(p->name, sizeof(p->name), "%s%s", name, suffix);
    p->change = change;
    return 0;
}

static int blob_eq(const moat_store_blob_t *a, const moat_store_blob_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static const moat_store_key_t *find_key(const moat_store_key_list_t *l, const moat_store_key_t *k)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, k->name) == 0 && l->items[i].state == k->state)
            return &l->items[i];
    return NULL;
}

static int diff_keys(moat_store_t *cur, moat_store_t *bak, moat_store_diff_t *d, moat_err_t *err)
{
    moat_store_key_list_t a = {0}, b = {0};
    int rc;
    if ((rc = moat_store_key_list(cur, &a, err)) != 0)
        return rc;
    if ((rc = moat_store_key_list(bak, &b, err)) != 0) {
        moat_store_key_list_dispose(&a);
        return rc;
    }
    d->keys = b.n;
    for (size_t i = 0; rc == 0 && i < b.n; i++) {
        const moat_store_key_t *k = &b.items[i], *o = find_key(&a, k);
        const char *sfx = k->state == MOAT_KEY_PENDING ? " (pending)" : "";
        if (o == NULL)
            rc = moat_store_diff_add(d, "key", k->name, sfx, MOAT_DIFF_ADDED, err);
        else if (!blob_eq(&o->pubkey, &k->pubkey) || o->exportable != k->exportable)
            rc = moat_store_diff_add(d, "key", k->name, sfx, MOAT_DIFF_CHANGED, err);
        if (rc == 0 && k->cert != NULL && (o == NULL || o->cert == NULL))
            rc = moat_store_diff_add(d, "cert", k->name, "", MOAT_DIFF_ADDED, err);
        else if (rc == 0 && k->cert != NULL && strcmp(k->cert->fingerprint, o->cert->fingerprint) != 0)
            rc = moat_store_diff_add(d, "cert", k->name, "", MOAT_DIFF_CHANGED, err);
        else if (rc == 0 && k->cert == NULL && o != NULL && o->cert != NULL)
            rc = moat_store_diff_add(d, "cert", k->name, "", MOAT_DIFF_REMOVED, err);
    }
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        const moat_store_key_t *k = &a.items[i];
        if (find_key(&b, k) != NULL)
            continue;
        rc = moat_store_diff_add(d, "key", k->name, k->state == MOAT_KEY_PENDING ? " (pending)" : "",
                                 MOAT_DIFF_REMOVED, err);
        if (rc == 0 && k->cert != NULL)
            rc = moat_store_diff_add(d, "cert", k->name, "", MOAT_DIFF_REMOVED, err);
    }
    moat_store_key_list_dispose(&a);
    moat_store_key_list_dispose(&b);
    return rc;
}

static int diff_anchors(moat_store_t *cur, moat_store_t *bak, moat_store_diff_t *d, moat_err_t *err)
{
    moat_store_anchor_list_t a = {0}, b = {0};
    int rc;
    if ((rc = moat_store_anchor_list(cur, &a, err)) != 0)
        return rc;
    if ((rc = moat_store_anchor_list(bak, &b, err)) != 0) {
        moat_store_anchor_list_dispose(&a);
        return rc;
    }
    d->anchors = b.n;
    for (size_t i = 0; rc == 0 && i < b.n; i++) {
        size_t j;
        for (j = 0; j < a.n && strcmp(a.items[j].name, b.items[i].name) != 0; j++)
            ;
        if (j == a.n)
            rc = moat_store_diff_add(d, "anchor", b.items[i].name, "", MOAT_DIFF_ADDED, err);
        else if (strcmp(a.items[j].fingerprint, b.items[i].fingerprint) != 0)
            rc = moat_store_diff_add(d, "anchor", b.items[i].name, "", MOAT_DIFF_CHANGED, err);
    }
    for (size_t j = 0; rc == 0 && j < a.n; j++) {
        size_t i;
        for (i = 0; i < b.n && strcmp(a.items[j].name, b.items[i].name) != 0; i++)
            ;
        if (i == b.n)
            rc = moat_store_diff_add(d, "anchor", a.items[j].name, "", MOAT_DIFF_REMOVED, err);
    }
    moat_store_anchor_list_dispose(&a);
    moat_store_anchor_list_dispose(&b);
    return rc;
}

static int diff_ca(moat_store_t *cur, moat_store_t *bak, moat_store_diff_t *d, moat_err_t *err)
{
    int rc = 0;
    for (int r = MOAT_CA_ROOT; rc == 0 && r <= MOAT_CA_INTERMEDIATE; r++) {
        moat_store_ca_t a, b;
        moat_err_t ea = {0}, eb = {0};
        int ra = moat_store_ca_get(cur, (moat_ca_role_t)r, &a, &ea);
        int rb = moat_store_ca_get(bak, (moat_ca_role_t)r, &b, &eb);
        const char *name = moat_store_ca_role_name((moat_ca_role_t)r);
        if (ra != 0 && ra != MOAT_E_NOTFOUND) {
            *err = ea;
            rc = ra;
        } else if (rb != 0 && rb != MOAT_E_NOTFOUND) {
            *err = eb;
            rc = rb;
        } else if (ra != 0 && rb == 0) {
            rc = moat_store_diff_add(d, "ca", name, "", MOAT_DIFF_ADDED, err);
        } else if (ra == 0 && rb != 0) {
            rc = moat_store_diff_add(d, "ca", name, "", MOAT_DIFF_REMOVED, err);
        } else if (ra == 0 && rb == 0 && (!blob_eq(&a.der, &b.der) || strcmp(a.base_url, b.base_url) != 0)) {
            rc = moat_store_diff_add(d, "ca", name, "", MOAT_DIFF_CHANGED, err);
        }
        moat_store_ca_dispose(&a);
        moat_store_ca_dispose(&b);
    }
    return rc;
}

/*
 * ---- what a restore keeps from the live store ----
 *
 * moat's CA answers for every certificate it issued, so a restore never goes back on it: certificates
 * issued since the backup stay on record, a revocation is never undone, and a CRL number never goes back
 * (relying parties keep the highest number they saw). These are carried from the live store into the
 * backup before it replaces the store; the diff lists each as "kept".
 */
static const moat_store_issued_t *find_issued(const moat_store_issued_list_t *l, const char *serial)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].serial, serial) == 0)
            return &l->items[i];
    return NULL;
}

static int issued_lists(moat_store_t *cur, moat_store_t *bak, moat_store_issued_list_t *a,
                        moat_store_issued_list_t *b, moat_err_t *err)
{
    int rc = moat_store_issued_list(cur, 0, 0, a, err);
    if (rc == 0 && (rc = moat_store_issued_list(bak, 0, 0, b, err)) != 0)
        moat_store_issued_list_dispose(a);
    return rc;
}

/* Both CA rows of <r>: *have says which exist (1 live, 2 backup). */
static int ca_pair(moat_store_t *cur, moat_store_t *bak, moat_ca_role_t r, moat_store_ca_t *a,
                   moat_store_ca_t *b, int *have, moat_err_t *err)
{
    int rc;
    *have = 0;
    memset(a, 0, sizeof(*a));
    memset(b, 0, sizeof(*b));
    if ((rc = moat_store_ca_get(cur, r, a, err)) == 0)
        *have |= 1;
    else if (rc != MOAT_E_NOTFOUND)
        return rc;
    if ((rc = moat_store_ca_get(bak, r, b, err)) == 0)
        *have |= 2;
    else if (rc != MOAT_E_NOTFOUND) {
        moat_store_ca_dispose(a);
        return rc;
    }
    moat_err_clear(err);
    return 0;
}

/* A restore that takes away (or replaces) a CA that issued certificates would leave them unrevocable. */
static int refuse_lost_ca(moat_store_t *cur, moat_store_t *bak, const moat_store_issued_list_t *a,
                          const char *src, moat_err_t *err)
{
    int rc = 0;
    for (int r = MOAT_CA_ROOT; rc == 0 && r <= MOAT_CA_INTERMEDIATE; r++) {
        moat_store_ca_t ca, cb;
        size_t n = 0;
        int have;
        for (size_t i = 0; i < a->n; i++)
            n += a->items[i].issuer == (moat_ca_role_t)r;
        if (n == 0 || (rc = ca_pair(cur, bak, (moat_ca_role_t)r, &ca, &cb, &have, err)) != 0)
            continue;
        if (have == 1 || (have == 3 && !blob_eq(&ca.der, &cb.der))) {
            moat_err_set(err, MOAT_E_STATE,
                         "restoring %s would %s moat's %s CA, which has issued %zu certificate%s: they could "
                         "never be revoked again; the store was not changed",
                         src, have == 1 ? "remove" : "replace", moat_store_ca_role_name((moat_ca_role_t)r), n,
                         n == 1 ? "" : "s");
            rc = moat_err_hint(err, "restore the backup into another store (--store NEW.db) and move what "
                                    "you need from there");
        }
        moat_store_ca_dispose(&ca);
        moat_store_ca_dispose(&cb);
    }
    return rc;
}

static int diff_issued(moat_store_t *cur, moat_store_t *bak, const char *src, moat_store_diff_t *d,
                       moat_err_t *err)
{
    moat_store_issued_list_t a, b;
    int rc = issued_lists(cur, bak, &a, &b, err);
    if (rc != 0)
        return rc;
    rc = refuse_lost_ca(cur, bak, &a, src, err);
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        const moat_store_issued_t *x = &a.items[i], *o = find_issued(&b, x->serial);
        char sfx[MOAT_STORE_NAME_MAX + 4] = "";
        if (x->name[0] != '\0')
            snprintf(sfx, sizeof(sfx), " (%s)", x->name);
        if (o == NULL)
            rc = moat_store_diff_add(d, "issued", x->serial, sfx, MOAT_DIFF_KEPT, err);
        if (rc == 0 && x->revoked != 0 && (o == NULL || o->revoked == 0))
            rc = moat_store_diff_add(d, "revoked", x->serial, sfx, MOAT_DIFF_KEPT, err);
    }
    for (int r = MOAT_CA_ROOT; rc == 0 && r <= MOAT_CA_INTERMEDIATE; r++) {
        moat_store_ca_t ca, cb;
        int have;
        if ((rc = ca_pair(cur, bak, (moat_ca_role_t)r, &ca, &cb, &have, err)) != 0)
            break;
        if (have == 3 && ca.crl_number > cb.crl_number) {
            char sfx[48];
            snprintf(sfx, sizeof(sfx), " (number %lld)", (long long)ca.crl_number);
            rc = moat_store_diff_add(d, "crl", moat_store_ca_role_name((moat_ca_role_t)r), sfx,
                                     MOAT_DIFF_KEPT, err);
        }
        moat_store_ca_dispose(&ca);
        moat_store_ca_dispose(&cb);
    }
    moat_store_issued_list_dispose(&a);
    moat_store_issued_list_dispose(&b);
    return rc;
}

/* Copies setting <name> of <cur> into <bak> (removed there when <cur> has none). */
static int copy_setting(moat_store_t *cur, moat_store_t *bak, const char *name, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    char *value = NULL;
    int rc = moat__store_query(cur, &s, err, "SELECT value FROM settings WHERE name = ?", "t", name);
    if (rc != 0)
        return rc;
    if ((rc = cur->ops->step(s, err)) == 1)
        rc = (value = moat__store_copy_text(s, cur->ops, 0, err)) == NULL ? err->code : 0;
    cur->ops->finalize(s);
    if (rc != 0)
        return rc;
    if (value == NULL)
        return moat__store_run(bak, err, "DELETE FROM settings WHERE name = ?", "t", name);
    rc = moat__store_run(bak, err, "INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", "tt", name,
                         value);
    moat_free(&value);
    return rc;
}

/* Inside <bak>'s transaction: what diff_issued() listed as kept goes into <bak>. */
static int carry_forward(moat_store_t *cur, moat_store_t *bak, moat_err_t *err)
{
    moat_store_issued_list_t a, b;
    int rc = issued_lists(cur, bak, &a, &b, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        const moat_store_issued_t *x = &a.items[i], *o = find_issued(&b, x->serial);
        if (o == NULL)
            rc = moat__store_run(
                bak, err,
                "INSERT INTO issued (serial, name, subject, profile, issuer, der, issued_at, "
                "not_after, revoked, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "tttttbiiid", x->serial, x->name, x->subject, x->profile, moat_store_ca_role_name(x->issuer),
                (const void *)x->der.data, x->der.len, x->issued, x->not_after, x->revoked, x->reason);
        else if (x->revoked != 0 && o->revoked == 0)
            rc = moat__store_run(bak, err, "UPDATE issued SET revoked = ?, reason = ? WHERE serial = ?",
                                 "idt", x->revoked, x->reason, x->serial);
    }
    for (int r = MOAT_CA_ROOT; rc == 0 && r <= MOAT_CA_INTERMEDIATE; r++) {
        moat_store_ca_t ca, cb;
        int have;
        char name[64];
        if ((rc = ca_pair(cur, bak, (moat_ca_role_t)r, &ca, &cb, &have, err)) != 0)
            break;
        /* The live CRL is the newest one signed, and it lists every revocation kept above. */
        snprintf(name, sizeof(name), "ca.crl.%s", moat_store_ca_role_name((moat_ca_role_t)r));
        if (have == 3 && ca.crl_number > cb.crl_number &&
            (rc = moat__store_run(bak, err, "UPDATE ca SET crl_number = ? WHERE role = ?", "it",
                                  ca.crl_number, moat_store_ca_role_name((moat_ca_role_t)r))) == 0)
            rc = copy_setting(cur, bak, name, err);
        moat_store_ca_dispose(&ca);
        moat_store_ca_dispose(&cb);
    }
    moat_store_issued_list_dispose(&a);
    moat_store_issued_list_dispose(&b);
    return rc;
}

/* Replaces the temporary path in an error message by the name the user gave. */
static void rename_in_msg(moat_err_t *err, const char *tmp, const char *src)
{
    char out[sizeof(err->msg)];
    const char *p = strstr(err->msg, tmp);
    if (p == NULL)
        return;
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - err->msg), err->msg, src, p + strlen(tmp));
    memcpy(err->msg, out, sizeof(out));
}

/* Every private key in <bak> must decrypt with its (= our) master key. */
static int check_keys_decrypt(moat_store_t *bak, const char *src, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int64_t *ids = NULL;
    size_t n = 0;
    int rc;

    if ((rc = moat__store_query(bak, &s, err, "SELECT id FROM keys ORDER BY id", "")) != 0)
        return rc;
    while ((rc = bak->ops->step(s, err)) == 1) {
        int64_t *p = moat_realloc(ids, (n + 1) * sizeof(*p));
        if (p == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory checking the backup");
            break;
        }
        ids = p;
        ids[n++] = bak->ops->column_int(s, 0);
    }
    bak->ops->finalize(s);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t *der = NULL;
        size_t len = 0;
        if ((rc = moat_store_key_private(bak, ids[i], &der, &len, err)) == MOAT_E_PKI) {
            rc = moat_err_set(err, MOAT_E_PERM,
                              "the private keys in backup %s do not decrypt with master key %s", src,
                              bak->mk_path);
            moat_err_hint(err, "restore needs the master key that was in use when the backup was made");
        }
        moat_free_secret(&der, len);
    }
    moat_free(&ids);
    return rc;
}

/* Copies <src> beside the store, opens and checks it, and fills <diff>. On success *out is open on tmp. */
static int restore_prepare(moat_store_t *st, const char *src, moat_store_diff_t *diff, moat_store_t **out,
                           char *tmp, size_t tmpsz, moat_err_t *err)
{
    moat_store_t *bak = NULL;
    struct stat sb;
    char integrity[256];
    int64_t n = 0;
    int rc;

    *out = NULL;
    memset(diff, 0, sizeof(*diff));
    if (st->in_tx)
        return moat_err_set(err, MOAT_E_STATE, "a restore cannot run inside a transaction");
    if (!st->have_mk) {
        moat_err_set(err, MOAT_E_PERM, "restoring needs the master key %s, and it is not available",
                     st->mk_path);
        return moat_err_hint(err, "pass --master-key FILE or set MOAT_MASTER_KEY_FILE");
    }
    if (src == NULL || stat(src, &sb) != 0)
        return moat_err_set(err, MOAT_E_NOTFOUND, "cannot read backup %s: %s", src ? src : "",
                            src ? strerror(errno) : "no file given");
    if (!S_ISREG(sb.st_mode))
        return moat_err_set(err, MOAT_E_INVAL, "backup %s is not a regular file", src);
    /* A backup is as private as the store: one that others could read or change is not trusted. */
    if ((rc = moat__store_check_mode("backup", src, 0, err)) != 0)
        return rc;
    if ((rc = make_temp(st->path, "restore", tmp, tmpsz, err)) != 0)
        return rc;
    if ((rc = st->ops->copy_file(src, tmp, err)) != 0) {
        if (rc == MOAT_E_INVAL) {
            moat_err_set(err, MOAT_E_INVAL, "%s is not a moat store backup (not an SQLite database)", src);
            moat_err_hint(err, "give a file written by 'moat store backup'");
        } else
            moat_err_prefix(err, "backup %s", src);
        goto fail;
    }
    rc = moat_store_open(tmp, st->mk_path, MOAT__STORE_NO_PERM_CHECK, &bak, err);
    if (rc != 0) {
        rename_in_msg(err, tmp, src);
        if (rc == MOAT_E_INVAL) /* the hint would point at the store, but the file at fault is the backup */
            moat_err_hint(err, "give a file written by 'moat store backup'");
        if (rc == MOAT_E_PERM) {
            moat_err_set(err, MOAT_E_PERM, "the private keys in backup %s do not decrypt with master key %s",
                         src, st->mk_path);
            moat_err_hint(err, "restore needs the master key that was in use when the backup was made");
        }
        goto fail;
    }
    if ((rc = bak->ops->integrity(bak, integrity, sizeof(integrity), err)) != 0)
        goto fail;
    if (strcmp(integrity, "ok") != 0) {
        rc = moat_err_set(err, MOAT_E_STORE, "backup %s is damaged: %s", src, integrity);
        goto fail;
    }
    if ((rc = check_keys_decrypt(bak, src, err)) != 0)
        goto fail;
    diff->backup_schema = bak->schema_found;
    if ((rc = moat_store_generation(bak, &diff->backup_generation, err)) != 0 ||
        (rc = moat__store_int(bak, &n, err, "SELECT count(*) FROM certs", "")) != 0)
        goto fail;
    diff->certs = (size_t)n;
    if ((rc = diff_keys(st, bak, diff, err)) != 0 || (rc = diff_anchors(st, bak, diff, err)) != 0 ||
        (rc = diff_ca(st, bak, diff, err)) != 0 || (rc = diff_issued(st, bak, src, diff, err)) != 0)
        goto fail;
    *out = bak;
    return 0;
fail:
    moat_store_diff_dispose(diff);
    moat_store_close(bak);
    unlink_db(tmp);
    return rc;
}

int moat_store_restore_check(moat_store_t *st, const char *src, moat_store_diff_t *diff, moat_err_t *err)
{
    return moat_store_restore_with(st, src, 1, NULL, diff, err);
}

/* A dry run with a hook: on the temporary copy, what the restore would do before it commits, rolled back. */
static int dry_run_hook(moat_store_t *st, moat_store_t *bak, const moat_store_restore_hook_t *hook,
                        moat_store_diff_t *diff, moat_err_t *err)
{
    int rc = moat_store_begin(bak, err);
    if (rc != 0)
        return rc;
    if ((rc = carry_forward(st, bak, err)) == 0)
        rc = hook->before_commit(bak, diff, hook->arg, err);
    moat_store_rollback(bak);
    return rc;
}

/*
 * The audit log is append-only, also across a restore: the live store's log replaces the backup's, so
 * that what happened since the backup (exports, say) stays on record.
 */
static int keep_audit(moat_store_t *st, moat_store_t *bak, moat_err_t *err)
{
    moat_store_audit_list_t l;
    int rc = moat_store_audit_list(st, 0, &l, err);
    if (rc != 0)
        return rc;
    rc = moat__store_run(bak, err, "DELETE FROM audit", "");
    /* Oldest first, with their ids, so that the order of the log is the order of events. */
    for (size_t i = l.n; rc == 0 && i > 0; i--) {
        const moat_store_audit_t *a = &l.items[i - 1];
        rc = moat__store_run(
            bak, err, "INSERT INTO audit (id, at, actor, action, object, detail) VALUES (?, ?, ?, ?, ?, ?)",
            "iitttt", a->id, a->time, a->actor, a->action, a->object, a->detail);
    }
    moat_store_audit_list_dispose(&l);
    return rc;
}

int moat_store_restore(moat_store_t *st, const char *src, moat_store_diff_t *diff, moat_err_t *err)
{
    return moat_store_restore_with(st, src, 0, NULL, diff, err);
}

int moat_store_restore_with(moat_store_t *st, const char *src, int dry_run,
                            const moat_store_restore_hook_t *hook, moat_store_diff_t *diff, moat_err_t *err)
{
    moat_store_t *bak = NULL;
    moat_store_diff_t local;
    moat_store_server_status_t ss;
    char tmp[PATH_MAX], detail[64];
    int64_t gen_cur = 0, gen_bak = 0;
    int rc;

    if (diff == NULL)
        diff = &local;
    st->unchecked = 1; /* a restore is the remedy for rows changed without the master key: it reads them */
    if ((rc = restore_prepare(st, src, diff, &bak, tmp, sizeof(tmp), err)) != 0) {
        st->unchecked = 0;
        return rc;
    }
    if (dry_run) {
        if (hook != NULL)
            rc = dry_run_hook(st, bak, hook, diff, err);
        goto done;
    }
    /* The restored store continues the live generation (so a running server reloads) and keeps the
     * live server status (it describes the server that runs now, not the one at backup time). */
    if ((rc = moat_store_generation(st, &gen_cur, err)) != 0 ||
        (rc = moat_store_generation(bak, &gen_bak, err)) != 0 ||
        (rc = moat_store_server_status_get(st, &ss, err)) != 0)
        goto done;
    snprintf(detail, sizeof(detail), "%zu changes", diff->n);
    if ((rc = moat_store_begin(bak, err)) != 0)
        goto done;
    rc = moat__store_run(bak, err, "UPDATE generation SET value = ? WHERE id = 1", "i",
                         (gen_cur > gen_bak ? gen_cur : gen_bak) + 1);
    if (rc == 0)
        rc = moat_store_server_status_set(bak, &ss, err);
    if (rc == 0)
        rc = carry_forward(st, bak, err);
    if (rc == 0 && hook != NULL)
        rc = hook->before_commit(bak, diff, hook->arg, err);
    if (rc == 0)
        rc = keep_audit(st, bak, err);
    if (rc == 0)
        rc = moat_store_audit_add(bak, "store.restore", src, detail, err);
    if (rc == 0)
        rc = moat_store_commit(bak, err);
    else
        moat_store_rollback(bak);
    moat_store_close(bak); /* the last connection checkpoints its log into the file */
    bak = NULL;
    if (rc != 0)
        goto done;
    if ((rc = st->ops->replace_from(st, tmp, err)) != 0)
        moat_err_prefix(err, "restoring %s", src);
    else
        st->schema = MOAT_STORE_SCHEMA_VERSION;
    st->sets.valid = 0; /* a page copy into this connection: its data version need not move */
done:
    st->unchecked = 0;
    moat_store_close(bak);
    unlink_db(tmp);
    if (rc != 0 || diff == &local)
        moat_store_diff_dispose(diff);
    return rc;
}

int moat_store_info(moat_store_t *st, moat_store_info_t *out, moat_err_t *err)
{
    struct stat sb;
    char wal[PATH_MAX + 8];
    int64_t n = 0;
    int rc;
    static const struct {
        const char *sql;
        size_t off;
    } counts[] = {
        {"SELECT count(*) FROM keys WHERE state = 'active'", offsetof(moat_store_info_t, keys)},
        {"SELECT count(*) FROM keys WHERE state = 'pending'", offsetof(moat_store_info_t, pending_keys)},
        {"SELECT count(*) FROM certs", offsetof(moat_store_info_t, certs)},
        {"SELECT count(*) FROM anchors", offsetof(moat_store_info_t, anchors)},
        {"SELECT count(*) FROM issued", offsetof(moat_store_info_t, issued)},
        {"SELECT count(*) FROM audit", offsetof(moat_store_info_t, audit_entries)},
    };

    memset(out, 0, sizeof(*out));
    out->schema_version = st->schema;
    if ((rc = moat_store_generation(st, &out->generation, err)) != 0)
        return rc;
    for (size_t i = 0; i < MOAT_ARRAY_LEN(counts); i++) {
        if ((rc = moat__store_int(st, &n, err, counts[i].sql, "")) != 0)
            return rc;
        *(size_t *)((char *)out + counts[i].off) = (size_t)n;
    }
    if ((rc = moat__store_int(st, &n, err, "SELECT count(*) FROM ca WHERE role = 'root'", "")) != 0)
        return rc;
    out->has_ca_root = n > 0;
    if ((rc = moat__store_int(st, &n, err, "SELECT count(*) FROM ca WHERE role = 'intermediate'", "")) != 0)
        return rc;
    out->has_ca_intermediate = n > 0;
    if (stat(st->path, &sb) == 0)
        out->file_bytes = (int64_t)sb.st_size;
    snprintf(wal, sizeof(wal), "%s-wal", st->path);
    if (stat(wal, &sb) == 0)
        out->wal_bytes = (int64_t)sb.st_size;
    return 0;
}
