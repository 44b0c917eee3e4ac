/* Unit tests for the store's public API on real SQLite files and real keys. */
#include "harness.h"
#include "pki/pki.h"
#include "store_testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/wait.h>

static char dir[256], db[300], mk[300];

static moat_store_t *open_new(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    int rc = moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err);
    CHECK_EQ(rc, 0);
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err.msg);
    return st;
}

static void fresh(void)
{
    if (dir[0])
        tu_rmrf(dir);
    tu_tmpdir(dir, sizeof(dir));
    snprintf(db, sizeof(db), "%s/sub/moat.db", dir);
    snprintf(mk, sizeof(mk), "%s/sub/moat.db.key", dir);
}

static void test_open_create(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    char sub[300];

    fresh();
    /* Without CREATE a missing store is an error that says how to make one. */
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.msg, db);
    CHECK(st == NULL);
    CHECK_EQ(moat_store_open(NULL, mk, 0, &st, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_open(db, NULL, MOAT_STORE_CREATE, &st, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_open("postgres://db/moat", mk, 0, &st, &err), MOAT_E_INVAL);

    st = open_new();
    CHECK(st != NULL);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    CHECK_EQ(tu_mode(sub), 0700);
    CHECK_EQ(tu_mode(db), 0600);
    CHECK_EQ(tu_mode(mk), 0600);
    CHECK_STR(moat_store_path(st), db);
    CHECK_STR(moat_store_master_key_path(st), mk);
    CHECK_STR(moat_store_backend(st), "sqlite");
    CHECK_EQ(moat_store_schema_version(st), MOAT_STORE_SCHEMA_VERSION);
    moat_store_close(st);
    moat_store_close(NULL);

    /* Reopening finds the same store and the same master key. */
    st = NULL;
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    moat_store_close(st);
    /* "sqlite:" prefix. */
    {
        char url[320];
        snprintf(url, sizeof(url), "sqlite:%s", db);
        st = NULL;
        CHECK_EQ(moat_store_open(url, mk, 0, &st, &err), 0);
        moat_store_close(st);
    }
}

static void test_blob(void)
{
    moat_store_blob_t b = {0};
    moat_store_blob_dispose(&b); /* empty */
    b.data = moat_malloc(8);
    b.len = 8;
    moat_store_blob_dispose(&b);
    CHECK(b.data == NULL);
    CHECK_EQ(b.len, 0);
    moat_store_blob_dispose(NULL);
}

static void test_keys(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    tu_key_t k1, k2;
    moat_store_key_t got, rec;
    moat_store_key_list_t list;
    uint8_t *priv = NULL;
    size_t plen = 0;
    int64_t id1, id2, gen0 = 0, gen1 = 0;

    fresh();
    st = open_new();
    tu_key_new(&k1);
    tu_key_new(&k2);
    CHECK_EQ(moat_store_generation(st, &gen0, &err), 0);
    id1 = tu_add_key(st, "www", &k1, MOAT_KEY_PENDING, &err);
    CHECK(id1 > 0);
    CHECK_EQ(moat_store_generation(st, &gen1, &err), 0);
    CHECK_EQ(gen1, gen0 + 1);

    /* A second pending key under the same name is refused; an active one is the only other slot. */
    CHECK_EQ(tu_add_key(st, "www", &k2, MOAT_KEY_PENDING, &err), 0);
    CHECK_EQ(err.code, MOAT_E_EXISTS);
    CHECK_CONTAINS(err.msg, "www");

    /* Bad input. */
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.name, sizeof(rec.name), "bad name");
    snprintf(rec.algorithm, sizeof(rec.algorithm), "ec-p256");
    rec.pubkey.data = k2.pub;
    rec.pubkey.len = (size_t)k2.pub_len;
    CHECK_EQ(moat_store_key_add(st, &rec, k2.priv, (size_t)k2.priv_len, &err), MOAT_E_INVAL);
    snprintf(rec.name, sizeof(rec.name), "ok");
    snprintf(rec.algorithm, sizeof(rec.algorithm), "dsa-512");
    CHECK_EQ(moat_store_key_add(st, &rec, k2.priv, (size_t)k2.priv_len, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "dsa-512");
    snprintf(rec.algorithm, sizeof(rec.algorithm), "ec-p256");
    CHECK_EQ(moat_store_key_add(st, &rec, NULL, 0, &err), MOAT_E_INVAL);
    rec.state = MOAT_KEY_RETIRED;
    CHECK_EQ(moat_store_key_add(st, &rec, k2.priv, (size_t)k2.priv_len, &err), MOAT_E_INVAL);
    rec.state = MOAT_KEY_PENDING;
    rec.pubkey.len = 0;
    CHECK_EQ(moat_store_key_add(st, &rec, k2.priv, (size_t)k2.priv_len, &err), MOAT_E_INVAL);
    rec.pubkey.len = (size_t)k2.pub_len;
    rec.exportable = 1;
    CHECK_EQ(moat_store_key_add(st, &rec, k2.priv, (size_t)k2.priv_len, &err), 0);
    id2 = rec.id;

    /* Get by name, by id, by public key. */
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    CHECK_EQ(got.id, id1);
    CHECK_EQ(got.state, MOAT_KEY_PENDING);
    CHECK_STR(got.algorithm, "ec-p256");
    CHECK_EQ(got.exportable, 0);
    CHECK_EQ(got.pubkey.len, (size_t)k1.pub_len);
    CHECK(got.cert == NULL);
    CHECK(got.created > 0);
    moat_store_key_dispose(&got);
    moat_store_key_dispose(&got); /* twice is safe */
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_WANT_ACTIVE, &got, &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.msg, "no active key");
    CHECK_EQ(moat_store_key_get(st, "nope", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_get(st, "", MOAT_KEY_CURRENT, &got, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_key_get_by_id(st, id2, &got, &err), 0);
    CHECK_STR(got.name, "ok");
    CHECK_EQ(got.exportable, 1);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_key_get_by_id(st, 9999, &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_find_pubkey(st, k2.pub, (size_t)k2.pub_len, &got, &err), 0);
    CHECK_EQ(got.id, id2);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_key_find_pubkey(st, (const uint8_t *)"x", 1, &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_find_pubkey(st, NULL, 0, &got, &err), MOAT_E_INVAL);

    /* The private key comes back as it went in. */
    CHECK_EQ(moat_store_key_private(st, id1, &priv, &plen, &err), 0);
    CHECK_EQ(plen, (size_t)k1.priv_len);
    CHECK(priv != NULL && memcmp(priv, k1.priv, plen) == 0);
    moat_free_secret(&priv, plen);
    CHECK_EQ(moat_store_key_private(st, 4242, &priv, &plen, &err), MOAT_E_NOTFOUND);

    /* List: by name. */
    CHECK_EQ(moat_store_key_list(st, &list, &err), 0);
    CHECK_EQ(list.n, 2);
    if (list.n == 2) {
        CHECK_STR(list.items[0].name, "ok");
        CHECK_STR(list.items[1].name, "www");
    }
    moat_store_key_list_dispose(&list);

    /* Updates. */
    CHECK_EQ(moat_store_key_set_exportable(st, id1, 1, &err), 0);
    CHECK_EQ(moat_store_key_set_exportable(st, 777, 1, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_set_csr(st, id1, (const uint8_t *)"csr-bytes", 9, &err), 0);
    CHECK_EQ(moat_store_key_get_by_id(st, id1, &got, &err), 0);
    CHECK_EQ(got.exportable, 1);
    CHECK_EQ(got.csr.len, 9);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_key_set_csr(st, id1, NULL, 0, &err), 0);
    CHECK_EQ(moat_store_key_set_csr(st, 777, NULL, 0, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_replace(st, id1, "ec-p256", k2.pub, (size_t)k2.pub_len, k2.priv,
                                    (size_t)k2.priv_len, &err),
             0);
    CHECK_EQ(moat_store_key_private(st, id1, &priv, &plen, &err), 0);
    CHECK(plen == (size_t)k2.priv_len && memcmp(priv, k2.priv, plen) == 0);
    moat_free_secret(&priv, plen);
    CHECK_EQ(moat_store_key_replace(st, id1, "nope", k2.pub, 1, k2.priv, 1, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_key_replace(st, 777, "ec-p256", k2.pub, 1, k2.priv, 1, &err), MOAT_E_NOTFOUND);

    /* Delete. */
    CHECK_EQ(moat_store_key_delete(st, "ok", &err), 0);
    CHECK_EQ(moat_store_key_delete(st, "ok", &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_delete(st, "b a d", &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_key_delete_id(st, id1, &err), 0);
    CHECK_EQ(moat_store_key_delete_id(st, id1, &err), MOAT_E_NOTFOUND);
    CHECK_STR(moat_store_key_state_name(MOAT_KEY_ACTIVE), "active");
    CHECK_STR(moat_store_key_state_name((moat_key_state_t)9), "unknown");
    moat_store_close(st);
    tu_key_free(&k1);
    tu_key_free(&k2);
}

/* The raw files never contain a private key in the clear. */
static void test_encrypted_at_rest(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    tu_key_t k;
    char path[400];
    const char *sfx[] = {"", "-wal", "-shm"};
    int any = 0;

    fresh();
    st = open_new();
    tu_key_new(&k);
    CHECK(tu_add_key(st, "secret", &k, MOAT_KEY_PENDING, &err) > 0);
    /* The public key is stored as is: proves the grep would find plain bytes. */
    CHECK_EQ(tu_file_contains(db, k.pub, (size_t)k.pub_len) == 1 ||
                 (snprintf(path, sizeof(path), "%s-wal", db),
                  tu_file_contains(path, k.pub, (size_t)k.pub_len) == 1),
             1);
    for (size_t i = 0; i < 3; i++) {
        int r;
        snprintf(path, sizeof(path), "%s%s", db, sfx[i]);
        r = tu_file_contains(path, k.priv, (size_t)k.priv_len);
        if (r >= 0)
            any = 1;
        CHECK(r != 1);
        /* Nor its last 32 bytes (the scalar sits near the end of a P-256 PKCS#8). */
        CHECK(tu_file_contains(path, k.priv + k.priv_len - 100, 32) != 1);
    }
    CHECK(any);
    /* Its write-ahead log and index are as private as the store. */
    snprintf(path, sizeof(path), "%s-wal", db);
    CHECK_EQ(tu_mode(path), 0600);
    snprintf(path, sizeof(path), "%s-shm", db);
    CHECK_EQ(tu_mode(path), 0600);
    moat_store_close(st);
    /* After close (checkpoint) the main file still has no plaintext. */
    CHECK_EQ(tu_file_contains(db, k.priv, (size_t)k.priv_len), 0);
    tu_key_free(&k);
}

static void test_certs_renewal_rollback(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    tu_key_t k1, k2;
    unsigned char *c1, *c2, *c3;
    int l1, l2, l3;
    int64_t id1, id2, cid1 = 0, cid2 = 0;
    moat_store_key_t got;
    moat_store_cert_t cert;
    moat_store_cert_list_t list;
    moat_store_blob_t chain[2];

    fresh();
    st = open_new();
    tu_key_new(&k1);
    tu_key_new(&k2);
    c1 = tu_cert(&k1, "www.example.com", "DNS:www.example.com,DNS:*.app.example.com,IP:192.0.2.7", 1, -3600,
                 86400 * 30, &l1);
    c2 = tu_cert(&k2, "www.example.com", "DNS:www.example.com", 2, -3600, 86400 * 90, &l2);
    c3 = tu_cert(&k2, "other", "DNS:other.example.com", 3, -3600, 86400, &l3);
    id1 = tu_add_key(st, "www", &k1, MOAT_KEY_PENDING, &err);

    /* Bad input. */
    CHECK_EQ(moat_store_cert_install(st, id1, (const uint8_t *)"junk", 4, NULL, 0, NULL, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_cert_install(st, 999, c1, (size_t)l1, NULL, 0, NULL, &err), MOAT_E_NOTFOUND);
    chain[0].data = NULL;
    chain[0].len = 0;
    CHECK_EQ(moat_store_cert_install(st, id1, c1, (size_t)l1, chain, 1, NULL, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_cert_current(st, "www", &cert, &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.hint, "cert install");

    /* Install with a chain: the key becomes active. */
    chain[0].data = c3;
    chain[0].len = (size_t)l3;
    chain[1].data = c2;
    chain[1].len = (size_t)l2;
    CHECK_EQ(moat_store_cert_install(st, id1, c1, (size_t)l1, chain, 2, &cid1, &err), 0);
    CHECK(cid1 > 0);
    CHECK_EQ(moat_store_cert_install(st, id1, c1, (size_t)l1, NULL, 0, NULL, &err), MOAT_E_EXISTS);
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    CHECK_EQ(got.state, MOAT_KEY_ACTIVE);
    CHECK(got.cert != NULL);
    if (got.cert != NULL) {
        CHECK_EQ(got.cert->id, cid1);
        CHECK_EQ(got.cert->chain_n, 2);
        if (got.cert->chain_n == 2) {
            CHECK(got.cert->chain[0].len == (size_t)l3 &&
                  memcmp(got.cert->chain[0].data, c3, (size_t)l3) == 0);
            CHECK(got.cert->chain[1].len == (size_t)l2);
        }
        CHECK_STR(got.cert->subject, "CN=www.example.com");
        CHECK_STR(got.cert->issuer, "CN=www.example.com");
        CHECK_STR(got.cert->sans, "DNS:www.example.com,DNS:*.app.example.com,IP:192.0.2.7");
        CHECK_STR(got.cert->serial, "01");
        CHECK_EQ(strlen(got.cert->fingerprint), 64);
        CHECK(got.cert->not_after > got.cert->not_before);
        CHECK_EQ(got.cert->current, 1);
        CHECK_STR(got.cert->key_name, "www");
    }
    moat_store_key_dispose(&got);

    /* Host lookup: exact, wildcard of one label, IP, case-insensitive; nothing for other names. */
    CHECK_EQ(moat_store_cert_find_host(st, "WWW.example.com", (int64_t)time(NULL), &list, &err), 0);
    CHECK_EQ(list.n, 1);
    moat_store_cert_list_dispose(&list);
    CHECK_EQ(moat_store_cert_find_host(st, "x.app.example.com", (int64_t)time(NULL), &list, &err), 0);
    CHECK_EQ(list.n, 1);
    moat_store_cert_list_dispose(&list);
    CHECK_EQ(moat_store_cert_find_host(st, "a.b.app.example.com", (int64_t)time(NULL), &list, &err), 0);
    CHECK_EQ(list.n, 0);
    moat_store_cert_list_dispose(&list);
    CHECK_EQ(moat_store_cert_find_host(st, "192.0.2.7", (int64_t)time(NULL), &list, &err), 0);
    CHECK_EQ(list.n, 1);
    moat_store_cert_list_dispose(&list);
    /* Not valid yet / any more. */
    CHECK_EQ(moat_store_cert_find_host(st, "www.example.com", (int64_t)time(NULL) + 86400 * 60, &list, &err),
             0);
    CHECK_EQ(list.n, 0);
    moat_store_cert_list_dispose(&list);
    CHECK_EQ(moat_store_cert_find_host(st, "", 0, &list, &err), MOAT_E_INVAL);

    /* Renewal: a pending key beside the active one; the active keeps serving until install. */
    id2 = tu_add_key(st, "www", &k2, MOAT_KEY_PENDING, &err);
    CHECK(id2 > 0);
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    CHECK_EQ(got.id, id1);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_WANT_PENDING, &got, &err), 0);
    CHECK_EQ(got.id, id2);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_cert_install(st, id2, c2, (size_t)l2, NULL, 0, &cid2, &err), 0);
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    CHECK_EQ(got.id, id2);
    CHECK_EQ(got.state, MOAT_KEY_ACTIVE);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_key_get_by_id(st, id1, &got, &err), 0);
    CHECK_EQ(got.state, MOAT_KEY_RETIRED);
    moat_store_key_dispose(&got);
    /* A retired key takes no certificate. */
    CHECK_EQ(moat_store_cert_install(st, id1, c3, (size_t)l3, NULL, 0, NULL, &err), MOAT_E_STATE);

    /* History, newest first. */
    CHECK_EQ(moat_store_cert_list(st, "www", &list, &err), 0);
    CHECK_EQ(list.n, 2);
    if (list.n == 2) {
        CHECK_EQ(list.items[0].id, cid2);
        CHECK_EQ(list.items[0].current, 1);
        CHECK_EQ(list.items[1].current, 0);
    }
    moat_store_cert_list_dispose(&list);
    CHECK_EQ(moat_store_cert_list(st, "b@d name", &list, &err), MOAT_E_INVAL);

    /* Rollback: the previous certificate and its key are current again; the newer one stays in history. */
    CHECK_EQ(moat_store_cert_rollback(st, "www", &cert, &err), 0);
    CHECK_EQ(cert.id, cid1);
    CHECK_EQ(cert.current, 1);
    moat_store_cert_dispose(&cert);
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    CHECK_EQ(got.id, id1);
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_cert_rollback(st, "www", NULL, &err), MOAT_E_STATE);
    CHECK_CONTAINS(err.msg, "no earlier certificate");
    CHECK_EQ(moat_store_cert_rollback(st, "nothing", NULL, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_cert_get(st, cid2, &cert, &err), 0);
    CHECK_EQ(cert.current, 0);
    moat_store_cert_dispose(&cert);
    CHECK_EQ(moat_store_cert_get(st, 12345, &cert, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_cert_current(st, "www", &cert, &err), 0);
    CHECK_EQ(cert.id, cid1);
    moat_store_cert_dispose(&cert);

    /* Deleting the name removes keys and certificates. */
    CHECK_EQ(moat_store_key_delete(st, "www", &err), 0);
    CHECK_EQ(moat_store_cert_list(st, "www", &list, &err), 0);
    CHECK_EQ(list.n, 0);
    moat_store_cert_list_dispose(&list);

    moat_store_close(st);
    OPENSSL_free(c1);
    OPENSSL_free(c2);
    OPENSSL_free(c3);
    tu_key_free(&k1);
    tu_key_free(&k2);
}

static void test_anchors_ca_issued(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    tu_key_t k;
    unsigned char *c1, *c2;
    int l1, l2;
    int64_t kid, n = 0;
    moat_store_anchor_t a;
    moat_store_anchor_list_t al;
    moat_store_ca_t ca;
    moat_store_issued_t is;
    moat_store_issued_list_t il;

    fresh();
    st = open_new();
    tu_key_new(&k);
    c1 = tu_cert(&k, "Corp Root", NULL, 0x1234ABCD, -60, 86400, &l1);
    c2 = tu_cert(&k, "client one", "email:a@example.com", 77, -60, 3600, &l2);

    CHECK_EQ(moat_store_anchor_add(st, "corp-root", c1, (size_t)l1, &err), 0);
    CHECK_EQ(moat_store_anchor_add(st, "corp-root", c2, (size_t)l2, &err), MOAT_E_EXISTS);
    CHECK_EQ(moat_store_anchor_add(st, "again", c1, (size_t)l1, &err), MOAT_E_EXISTS);
    CHECK_EQ(moat_store_anchor_add(st, "junk", (const uint8_t *)"xx", 2, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "junk");
    CHECK_EQ(moat_store_anchor_add(st, "bad name", c1, (size_t)l1, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_anchor_get(st, "corp-root", &a, &err), 0);
    CHECK_STR(a.subject, "CN=Corp Root");
    CHECK_EQ(a.der.len, (size_t)l1);
    CHECK_EQ(strlen(a.fingerprint), 64);
    moat_store_anchor_dispose(&a);
    CHECK_EQ(moat_store_anchor_get(st, "none", &a, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_anchor_list(st, &al, &err), 0);
    CHECK_EQ(al.n, 1);
    moat_store_anchor_list_dispose(&al);
    CHECK_EQ(moat_store_anchor_remove(st, "corp-root", &err), 0);
    CHECK_EQ(moat_store_anchor_remove(st, "corp-root", &err), MOAT_E_NOTFOUND);

    /* CA state. */
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.hint, "ca init");
    CHECK_EQ(moat_store_ca_set_url(st, "http://x", &err), MOAT_E_NOTFOUND);
    kid = tu_add_key(st, "moat-ca", &k, MOAT_KEY_ACTIVE, &err);
    memset(&ca, 0, sizeof(ca));
    ca.role = MOAT_CA_ROOT;
    ca.key_id = kid;
    ca.der.data = c1;
    ca.der.len = (size_t)l1;
    CHECK_EQ(moat_store_ca_set(st, &ca, &err), 0);
    ca.key_id = 999;
    CHECK_EQ(moat_store_ca_set(st, &ca, &err), MOAT_E_NOTFOUND);
    ca.key_id = kid;
    ca.role = (moat_ca_role_t)7;
    CHECK_EQ(moat_store_ca_set(st, &ca, &err), MOAT_E_INVAL);
    ca.role = MOAT_CA_ROOT;
    ca.der.len = 3;
    CHECK_EQ(moat_store_ca_set(st, &ca, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_ca_set_url(st, "https://ca.example.com", &err), 0);
    CHECK_EQ(moat_store_ca_next_crl_number(st, MOAT_CA_ROOT, &n, &err), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(moat_store_ca_next_crl_number(st, MOAT_CA_ROOT, &n, &err), 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(moat_store_ca_next_crl_number(st, MOAT_CA_INTERMEDIATE, &n, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), 0);
    CHECK_EQ(ca.key_id, kid);
    CHECK_STR(ca.base_url, "https://ca.example.com");
    CHECK_EQ(ca.crl_number, 2);
    CHECK_EQ(ca.der.len, (size_t)l1);
    moat_store_ca_dispose(&ca);
    CHECK_STR(moat_store_ca_role_name(MOAT_CA_INTERMEDIATE), "intermediate");
    /* The CA key taken offline: key_id 0 is stored as none. */
    memset(&ca, 0, sizeof(ca));
    ca.role = MOAT_CA_ROOT;
    ca.der.data = c1;
    ca.der.len = (size_t)l1;
    CHECK_EQ(moat_store_ca_set(st, &ca, &err), 0);
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), 0);
    CHECK_EQ(ca.key_id, 0);
    moat_store_ca_dispose(&ca);

    /* Issued certificates. */
    memset(&is, 0, sizeof(is));
    snprintf(is.profile, sizeof(is.profile), "client");
    snprintf(is.name, sizeof(is.name), "alice");
    is.der.data = c2;
    is.der.len = (size_t)l2;
    CHECK_EQ(moat_store_issued_add(st, &is, &err), 0);
    CHECK_EQ(moat_store_issued_add(st, &is, &err), MOAT_E_EXISTS);
    snprintf(is.serial, sizeof(is.serial), "99");
    CHECK_EQ(moat_store_issued_add(st, &is, &err), MOAT_E_INVAL);
    is.serial[0] = '\0';
    snprintf(is.profile, sizeof(is.profile), "weird");
    CHECK_EQ(moat_store_issued_add(st, &is, &err), MOAT_E_INVAL);
    snprintf(is.profile, sizeof(is.profile), "server");
    is.der.data = c1;
    is.der.len = (size_t)l1;
    snprintf(is.serial, sizeof(is.serial), "12:34:ab:cd");
    is.name[0] = '\0';
    CHECK_EQ(moat_store_issued_add(st, &is, &err), 0);

    CHECK_EQ(moat_store_issued_get(st, "alice", &is, &err), 0);
    CHECK_STR(is.serial, "4D");
    CHECK_STR(is.profile, "client");
    CHECK_STR(is.subject, "CN=client one");
    CHECK_EQ(is.revoked, 0);
    moat_store_issued_dispose(&is);
    CHECK_EQ(moat_store_issued_get(st, "0x1234abcd", &is, &err), 0);
    CHECK_STR(is.serial, "1234ABCD");
    moat_store_issued_dispose(&is);
    CHECK_EQ(moat_store_issued_get(st, "nobody", &is, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_issued_get(st, "", &is, &err), MOAT_E_INVAL);

    CHECK_EQ(moat_store_issued_revoke(st, "4d", 0, 1, &err), 0);
    CHECK_EQ(moat_store_issued_revoke(st, "4D", 0, 1, &err), MOAT_E_STATE);
    CHECK_EQ(moat_store_issued_revoke(st, "FFFF", 0, 1, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_issued_revoke(st, "zz", 0, 1, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_issued_revoke(st, "1234ABCD", 0, 7, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_issued_list(st, 0, 0, &il, &err), 0);
    CHECK_EQ(il.n, 2);
    moat_store_issued_list_dispose(&il);
    CHECK_EQ(moat_store_issued_list(st, MOAT_ISSUED_REVOKED_ONLY, 0, &il, &err), 0);
    CHECK_EQ(il.n, 1);
    if (il.n == 1) {
        CHECK_STR(il.items[0].serial, "4D");
        CHECK(il.items[0].revoked > 0);
        CHECK_EQ(il.items[0].reason, 1);
    }
    moat_store_issued_list_dispose(&il);
    /* Expiring within two hours: only the client certificate (valid one hour). */
    CHECK_EQ(moat_store_issued_list(st, 0, (int64_t)time(NULL) + 7200, &il, &err), 0);
    CHECK_EQ(il.n, 1);
    moat_store_issued_list_dispose(&il);

    moat_store_close(st);
    OPENSSL_free(c1);
    OPENSSL_free(c2);
    tu_key_free(&k);
}

static void test_meta(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    moat_store_audit_list_t al;
    moat_store_server_status_t ss;
    char val[16];
    int64_t g0 = 0, g1 = 0;

    fresh();
    st = open_new();
    CHECK_EQ(moat_store_audit_add(st, "key.new", "www", "ec-p256", &err), 0);
    CHECK_EQ(moat_store_audit_add(st, "key.export", "www", NULL, &err), 0);
    CHECK_EQ(moat_store_audit_add(st, "", "www", NULL, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_audit_list(st, 0, &al, &err), 0);
    CHECK_EQ(al.n, 2);
    if (al.n == 2) {
        CHECK_STR(al.items[0].action, "key.export");
        CHECK_STR(al.items[1].detail, "ec-p256");
        CHECK(al.items[0].actor[0] != '\0');
        CHECK(al.items[0].time > 0);
    }
    moat_store_audit_list_dispose(&al);
    CHECK_EQ(moat_store_audit_list(st, 1, &al, &err), 0);
    CHECK_EQ(al.n, 1);
    moat_store_audit_list_dispose(&al);

    CHECK_EQ(moat_store_setting_get(st, "acme", val, sizeof(val), &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_setting_set(st, "acme", "one", &err), 0);
    CHECK_EQ(moat_store_setting_set(st, "acme", "two", &err), 0);
    CHECK_EQ(moat_store_setting_get(st, "acme", val, sizeof(val), &err), 0);
    CHECK_STR(val, "two");
    CHECK_EQ(moat_store_setting_set(st, "long", "0123456789abcdefXYZ", &err), 0);
    CHECK_EQ(moat_store_setting_get(st, "long", val, sizeof(val), &err), MOAT_E_LIMIT);
    CHECK_EQ(moat_store_setting_set(st, "", "x", &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_setting_set(st, "k", NULL, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_setting_delete(st, "acme", &err), 0);
    CHECK_EQ(moat_store_setting_delete(st, "acme", &err), MOAT_E_NOTFOUND);

    /* Generation: bumped once per transaction, however many changes it holds. */
    CHECK_EQ(moat_store_generation(st, &g0, &err), 0);
    CHECK_EQ(moat_store_begin(st, &err), 0);
    CHECK_EQ(moat_store_in_transaction(st), 1);
    CHECK_EQ(moat_store_begin(st, &err), MOAT_E_STATE);
    CHECK_EQ(moat_store_generation_bump(st, &err), 0);
    CHECK_EQ(moat_store_generation_bump(st, &err), 0);
    CHECK_EQ(moat_store_commit(st, &err), 0);
    CHECK_EQ(moat_store_commit(st, &err), MOAT_E_STATE);
    CHECK_EQ(moat_store_generation(st, &g1, &err), 0);
    CHECK_EQ(g1, g0 + 1);
    CHECK_EQ(moat_store_generation_bump(st, &err), 0);
    CHECK_EQ(moat_store_generation(st, &g1, &err), 0);
    CHECK_EQ(g1, g0 + 2);

    /* Server status. */
    CHECK_EQ(moat_store_server_status_get(st, &ss, &err), 0);
    CHECK_EQ(ss.applied_generation, -1);
    CHECK_EQ(ss.pid, 0);
    ss.applied_generation = g1;
    ss.refused_generation = g1 - 1;
    snprintf(ss.refusal, sizeof(ss.refusal), "site www: key \"www\" has no certificate");
    ss.pid = 4321;
    ss.updated = 0;
    CHECK_EQ(moat_store_server_status_set(st, &ss, &err), 0);
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ(moat_store_server_status_get(st, &ss, &err), 0);
    CHECK_EQ(ss.applied_generation, g1);
    CHECK_EQ(ss.refused_generation, g1 - 1);
    CHECK_EQ(ss.pid, 4321);
    CHECK(ss.updated > 0);
    CHECK_CONTAINS(ss.refusal, "no certificate");
    CHECK_EQ(moat_store_generation(st, &g0, &err), 0);
    CHECK_EQ(g0, g1); /* status does not bump */
    moat_store_close(st);
}

static void test_transactions(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    tu_key_t k;
    moat_store_key_t got;
    int64_t g0 = 0, g1 = 0;

    fresh();
    st = open_new();
    tu_key_new(&k);
    CHECK_EQ(moat_store_generation(st, &g0, &err), 0);
    CHECK_EQ(moat_store_begin(st, &err), 0);
    CHECK(tu_add_key(st, "gone", &k, MOAT_KEY_PENDING, &err) > 0);
    CHECK_EQ(moat_store_audit_add(st, "key.new", "gone", NULL, &err), 0);
    moat_store_rollback(st);
    moat_store_rollback(st); /* no-op outside a transaction */
    CHECK_EQ(moat_store_in_transaction(st), 0);
    CHECK_EQ(moat_store_key_get(st, "gone", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_generation(st, &g1, &err), 0);
    CHECK_EQ(g1, g0);

    /* A second connection waits for the writer and then sees its commit, never half of it. */
    {
        moat_store_t *other = NULL;
        CHECK_EQ(moat_store_open(db, mk, 0, &other, &err), 0);
        CHECK_EQ(moat_store_begin(st, &err), 0);
        CHECK(tu_add_key(st, "kept", &k, MOAT_KEY_PENDING, &err) > 0);
        CHECK_EQ(moat_store_key_get(other, "kept", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
        CHECK_EQ(moat_store_commit(st, &err), 0);
        CHECK_EQ(moat_store_key_get(other, "kept", MOAT_KEY_CURRENT, &got, &err), 0);
        moat_store_key_dispose(&got);
        /* Closing with an open transaction rolls it back. */
        CHECK_EQ(moat_store_begin(other, &err), 0);
        CHECK_EQ(moat_store_key_delete(other, "kept", &err), 0);
        moat_store_close(other);
        CHECK_EQ(moat_store_key_get(st, "kept", MOAT_KEY_CURRENT, &got, &err), 0);
        moat_store_key_dispose(&got);
    }
    moat_store_close(st);
    tu_key_free(&k);
}

static void test_permissions_and_master_key(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    tu_key_t k;
    char other_mk[300];

    fresh();
    st = open_new();
    tu_key_new(&k);
    CHECK(tu_add_key(st, "www", &k, MOAT_KEY_PENDING, &err) > 0);
    moat_store_close(st);

    /* A world-readable store is refused, with the fix in the hint. */
    chmod(db, 0644);
    st = NULL;
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "other users can read it");
    CHECK_CONTAINS(err.hint, "chmod 600");
    CHECK_CONTAINS(err.hint, db);
    chmod(db, 0620);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "change it");
    chmod(db, 0600);

    /* A master key readable by the group is refused. */
    chmod(mk, 0640);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.hint, "chmod 600");
    CHECK_CONTAINS(err.msg, mk);
    chmod(mk, 0600);

    /* A missing master key for a store with keys: a clear error, and no new key is made. */
    snprintf(other_mk, sizeof(other_mk), "%s/other.key", dir);
    CHECK_EQ(moat_store_open(db, other_mk, 0, &st, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, other_mk);
    CHECK_CONTAINS(err.msg, "cannot be decrypted");
    CHECK_EQ(access(other_mk, F_OK), -1);
    /* Without the master key the store can still be listed. */
    CHECK_EQ(moat_store_open(db, NULL, MOAT_STORE_NO_MASTER_KEY, &st, &err), 0);
    if (st != NULL) {
        moat_store_key_t got;
        uint8_t *der = NULL;
        size_t len = 0;
        CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
        CHECK_EQ(moat_store_key_private(st, got.id, &der, &len, &err), MOAT_E_PERM);
        moat_store_key_dispose(&got);
        moat_store_close(st);
        st = NULL;
    }

    /* A wrong master key (right size, other bytes) is named as not belonging to the store. */
    {
        unsigned char junk[32];
        int fd = open(other_mk, O_WRONLY | O_CREAT | O_EXCL, 0600);
        RAND_bytes(junk, sizeof(junk));
        CHECK(fd >= 0 && write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
        close(fd);
        CHECK_EQ(moat_store_open(db, other_mk, 0, &st, &err), MOAT_E_PERM);
        CHECK_CONTAINS(err.msg, "does not belong");
        /* Short master key file. */
        fd = open(other_mk, O_WRONLY | O_TRUNC);
        CHECK(write(fd, junk, 5) == 5);
        close(fd);
        CHECK_EQ(moat_store_open(db, other_mk, 0, &st, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "32 bytes");
    }
    tu_key_free(&k);
}

static void write_file(const char *path, const void *data, size_t len, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len);
    close(fd);
}

static void test_not_a_store(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    unsigned char junk[8192], after[8192];
    sqlite3 *other;
    char path[300], fkey[300];
    FILE *f;

    fresh();
    snprintf(path, sizeof(path), "%s/random.db", dir);
    snprintf(fkey, sizeof(fkey), "%s/random.key", dir);
    RAND_bytes(junk, sizeof(junk));
    write_file(path, junk, sizeof(junk), 0600);
    CHECK_EQ(moat_store_open(path, fkey, MOAT_STORE_CREATE, &st, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "not a moat store");
    f = fopen(path, "rb");
    CHECK(f != NULL && fread(after, 1, sizeof(after), f) == sizeof(after));
    fclose(f);
    CHECK(memcmp(junk, after, sizeof(junk)) == 0);
    CHECK_EQ(access(fkey, F_OK), -1);

    /* Another application's SQLite database. */
    snprintf(path, sizeof(path), "%s/other.db", dir);
    CHECK_EQ(sqlite3_open(path, &other), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(other, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", NULL, NULL, NULL),
             SQLITE_OK);
    sqlite3_close(other);
    chmod(path, 0600);
    {
        struct stat before, later;
        stat(path, &before);
        CHECK_EQ(moat_store_open(path, fkey, MOAT_STORE_CREATE, &st, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "another application");
        CHECK_CONTAINS(err.msg, "was not changed");
        stat(path, &later);
        CHECK_EQ(later.st_size, before.st_size);
        CHECK_EQ(later.st_mtime, before.st_mtime);
    }
    /* An empty file is not a store unless creation was asked for. */
    snprintf(path, sizeof(path), "%s/empty.db", dir);
    write_file(path, "", 0, 0600);
    CHECK_EQ(moat_store_open(path, fkey, 0, &st, &err), MOAT_E_INVAL);
    /* A folder. */
    CHECK_EQ(moat_store_open(dir, fkey, 0, &st, &err), MOAT_E_INVAL);
}

static void test_newer_version(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    sqlite3 *raw;

    fresh();
    st = open_new();
    moat_store_close(st);
    CHECK_EQ(sqlite3_open(db, &raw), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    st = NULL;
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), MOAT_E_VERSION);
    CHECK_CONTAINS(err.msg, "version 99");
    {
        char upto[32];
        snprintf(upto, sizeof upto, "up to %d", MOAT_STORE_SCHEMA_VERSION);
        CHECK_CONTAINS(err.msg, upto);
    }
    CHECK_CONTAINS(err.hint, "upgrade moat");
    CHECK(st == NULL);
    CHECK_EQ(sqlite3_open(db, &raw), SQLITE_OK);
    {
        sqlite3_stmt *s;
        sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &s, NULL);
        CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
        CHECK_EQ(sqlite3_column_int(s, 0), 99);
        sqlite3_finalize(s);
    }
    sqlite3_close(raw);
}

/* Builds a store from the fixture's SQL text of schema <version>; copies its master key (the fixtures
 * share v1.masterkey). */
static void make_fixture(int version, const char *path, const char *key_path)
{
    const char *data = getenv("MOAT_TEST_DATA");
    char fx[PATH_MAX], *sql;
    FILE *f;
    long n;
    sqlite3 *raw;
    unsigned char key[32];

    snprintf(fx, sizeof(fx), "%s/store/schema_v%d.sql", data ? data : "tests/data", version);
    f = fopen(fx, "rb");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    sql = calloc(1, (size_t)n + 1);
    CHECK(fread(sql, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    write_file(path, "", 0, 0600);
    CHECK_EQ(sqlite3_open(path, &raw), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    free(sql);
    snprintf(fx, sizeof(fx), "%s/store/v1.masterkey", data ? data : "tests/data");
    f = fopen(fx, "rb");
    CHECK(f != NULL && fread(key, 1, 32, f) == 32);
    if (f)
        fclose(f);
    write_file(key_path, key, 32, 0600);
}

static void make_v1(const char *path, const char *key_path)
{
    make_fixture(1, path, key_path);
}

/* The private key decrypts and matches the stored public key. */
static int key_consistent(moat_store_t *st, const moat_store_key_t *k)
{
    uint8_t *der = NULL;
    size_t len = 0;
    moat_err_t err = {0};
    const unsigned char *p;
    EVP_PKEY *pk;
    unsigned char *pub = NULL;
    int publen, ok;
    if (moat_store_key_private(st, k->id, &der, &len, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    p = der;
    pk = d2i_AutoPrivateKey(NULL, &p, (long)len);
    moat_free_secret(&der, len);
    if (pk == NULL)
        return 0;
    publen = i2d_PUBKEY(pk, &pub);
    ok = publen == (int)k->pubkey.len && memcmp(pub, k->pubkey.data, k->pubkey.len) == 0;
    OPENSSL_free(pub);
    EVP_PKEY_free(pk);
    return ok;
}

static void test_migration_from_v1(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_key_list_t list;
    moat_store_cert_list_t cl;
    moat_store_server_status_t ss;
    sqlite3 *raw;

    fresh();
    snprintf(db, sizeof(db), "%s/v1.db", dir);
    snprintf(mk, sizeof(mk), "%s/v1.db.key", dir);
    make_v1(db, mk);

    /* Read-only opening does not upgrade. */
    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_READONLY, &st, &err), MOAT_E_VERSION);
    CHECK_CONTAINS(err.msg, "needs an upgrade");

    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL) {
        fprintf(stderr, "v1 open: %s\n", err.msg);
        return;
    }
    CHECK_EQ(moat_store_schema_version(st), MOAT_STORE_SCHEMA_VERSION);
    CHECK_EQ(moat_store_key_list(st, &list, &err), 0);
    CHECK_EQ(list.n, 3);
    for (size_t i = 0; i < list.n; i++) {
        CHECK(key_consistent(st, &list.items[i]));
        if (strcmp(list.items[i].name, "mail") == 0)
            CHECK_EQ(list.items[i].state, MOAT_KEY_PENDING);
        else
            CHECK(list.items[i].cert != NULL);
    }
    moat_store_key_list_dispose(&list);
    /* The v2 table was filled from the v1 SAN text. */
    CHECK_EQ(moat_store_cert_find_host(st, "x.api.v1.example", (int64_t)time(NULL), &cl, &err), 0);
    CHECK_EQ(cl.n, 1);
    if (cl.n == 1)
        CHECK_STR(cl.items[0].key_name, "api");
    moat_store_cert_list_dispose(&cl);
    CHECK_EQ(moat_store_server_status_get(st, &ss, &err), 0);
    CHECK_EQ(ss.refused_generation, 0);
    moat_store_close(st);

    CHECK_EQ(sqlite3_open(db, &raw), SQLITE_OK);
    {
        sqlite3_stmt *s;
        sqlite3_prepare_v2(raw, "SELECT value FROM meta WHERE name = 'schema_version'", -1, &s, NULL);
        CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
        CHECK_EQ(strtol((const char *)sqlite3_column_text(s, 0), NULL, 10), MOAT_STORE_SCHEMA_VERSION);
        sqlite3_finalize(s);
    }
    sqlite3_close(raw);

    /* A failing migration leaves version 1 untouched: make cert_names exist already so v2 fails. */
    fresh();
    snprintf(db, sizeof(db), "%s/v1.db", dir);
    snprintf(mk, sizeof(mk), "%s/v1.db.key", dir);
    make_v1(db, mk);
    CHECK_EQ(sqlite3_open(db, &raw), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(raw, "CREATE TABLE cert_names (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    st = NULL;
    CHECK(moat_store_open(db, mk, 0, &st, &err) != 0);
    CHECK_CONTAINS(err.msg, "upgrading the store from schema 1 to 2");
    CHECK_EQ(sqlite3_open(db, &raw), SQLITE_OK);
    {
        sqlite3_stmt *s;
        sqlite3_prepare_v2(raw,
                           "SELECT (SELECT count(*) FROM keys), (SELECT value FROM meta WHERE name = "
                           "'schema_version')",
                           -1, &s, NULL);
        CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
        CHECK_EQ(sqlite3_column_int(s, 0), 3);
        CHECK_STR((const char *)sqlite3_column_text(s, 1), "1");
        sqlite3_finalize(s);
    }
    sqlite3_close(raw);
}

/* A version-2 store gains the CRL cache and keeps everything else; the cache round-trips. */
static void test_migration_from_v2(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_key_list_t list;
    moat_store_crl_list_t cl;
    moat_store_crl_t c;
    int64_t g0 = 0, g1 = 0;
    static const uint8_t issuer[] = {0x30, 0x03, 0x02, 0x01, 0x01}, crl[] = {0x30, 0x00};

    fresh();
    snprintf(db, sizeof(db), "%s/v2.db", dir);
    snprintf(mk, sizeof(mk), "%s/v2.db.key", dir);
    make_fixture(2, db, mk);
    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_READONLY, &st, &err), MOAT_E_VERSION);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL) {
        fprintf(stderr, "v2 open: %s\n", err.msg);
        return;
    }
    CHECK_EQ(moat_store_schema_version(st), MOAT_STORE_SCHEMA_VERSION);
    CHECK_EQ(moat_store_key_list(st, &list, &err), 0);
    CHECK_EQ(list.n, 3);
    for (size_t i = 0; i < list.n; i++)
        CHECK(key_consistent(st, &list.items[i]));
    moat_store_key_list_dispose(&list);
    CHECK_EQ(moat_store_crl_list(st, &cl, &err), 0);
    CHECK_EQ(cl.n, 0);

    /* Saving a CRL is a cache write: it does not bump the generation (no reload for a refresh). */
    CHECK_EQ(moat_store_generation(st, &g0, &err), 0);
    memset(&c, 0, sizeof(c));
    snprintf(c.url, sizeof(c.url), "http://crl.example/ca.crl");
    memset(c.issuer_fp, 'a', MOAT_STORE_FPR_LEN);
    c.issuer_der.data = (uint8_t *)issuer;
    c.issuer_der.len = sizeof(issuer);
    snprintf(c.issuer_subject, sizeof(c.issuer_subject), "CN=Corp");
    c.attempted_at = 5;
    snprintf(c.error, sizeof(c.error), "connection refused");
    CHECK_EQ(moat_store_crl_save(st, &c, &err), 0);
    c.der.data = (uint8_t *)crl;
    c.der.len = sizeof(crl);
    c.this_update = 10;
    c.next_update = 20;
    c.revoked = 2;
    c.fetched_at = c.attempted_at = 11;
    c.error[0] = '\0';
    CHECK_EQ(moat_store_crl_save(st, &c, &err), 0);
    CHECK_EQ(moat_store_generation(st, &g1, &err), 0);
    CHECK_EQ(g1, g0);
    CHECK_EQ(moat_store_crl_list(st, &cl, &err), 0);
    CHECK_EQ(cl.n, 1);
    if (cl.n == 1) {
        CHECK_STR(cl.items[0].url, "http://crl.example/ca.crl");
        CHECK_EQ(cl.items[0].issuer_der.len, sizeof(issuer));
        CHECK_EQ(cl.items[0].der.len, sizeof(crl));
        CHECK_EQ(cl.items[0].next_update, 20);
        CHECK_EQ(cl.items[0].revoked, 2);
        CHECK_EQ(cl.items[0].fetched_at, 11);
        CHECK_STR(cl.items[0].error, "");
        CHECK_STR(cl.items[0].issuer_subject, "CN=Corp");
    }
    moat_store_crl_list_dispose(&cl);
    c.url[0] = '\0';
    CHECK_EQ(moat_store_crl_save(st, &c, &err), MOAT_E_INVAL);
    moat_store_close(st);
}

static void test_watch(void)
{
    moat_store_t *st;
    moat_store_watch_t *w = NULL;
    moat_err_t err = {0};
    int changed = -1;

    fresh();
    st = open_new();
    CHECK_EQ(moat_store_watch_open(db, &w, &err), 0);
    CHECK_EQ(moat_store_watch_changed(w, &changed, &err), 0);
    CHECK_EQ(changed, 0);
    CHECK_EQ(moat_store_setting_set(st, "x", "1", &err), 0);
    CHECK_EQ(moat_store_watch_changed(w, &changed, &err), 0);
    CHECK_EQ(changed, 1);
    CHECK_EQ(moat_store_watch_changed(w, &changed, &err), 0);
    CHECK_EQ(changed, 0);
    moat_store_watch_close(w);
    moat_store_watch_close(NULL);
    CHECK_EQ(moat_store_watch_open("/nonexistent/dir/moat.db", &w, &err), MOAT_E_IO);
    moat_store_close(st);
}

static void test_backup_restore(void)
{
    moat_store_t *st, *bst = NULL;
    moat_err_t err = {0};
    tu_key_t k1, k2;
    unsigned char *c1;
    int l1;
    int64_t id1, g_before = 0, g_after = 0;
    char bak[300], bak2[300], junk[300];
    moat_store_diff_t diff;
    moat_store_key_t got;
    moat_store_info_t info;

    fresh();
    st = open_new();
    tu_key_new(&k1);
    tu_key_new(&k2);
    id1 = tu_add_key(st, "www", &k1, MOAT_KEY_PENDING, &err);
    c1 = tu_cert(&k1, "www", "DNS:www.example.com", 5, -60, 86400, &l1);
    CHECK_EQ(moat_store_cert_install(st, id1, c1, (size_t)l1, NULL, 0, NULL, &err), 0);
    CHECK_EQ(moat_store_anchor_add(st, "corp", c1, (size_t)l1, &err), 0);

    snprintf(bak, sizeof(bak), "%s/backup.db", dir);
    CHECK_EQ(moat_store_backup(st, bak, 0, &err), 0);
    CHECK_EQ(tu_mode(bak), 0600);
    CHECK_EQ(tu_file_contains(bak, k1.priv, (size_t)k1.priv_len), 0);
    CHECK_EQ(moat_store_backup(st, bak, 0, &err), MOAT_E_EXISTS);
    CHECK_CONTAINS(err.hint, "--force");
    CHECK_EQ(moat_store_backup(st, bak, 1, &err), 0);
    CHECK_EQ(moat_store_backup(st, db, 1, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_backup(st, "", 0, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_store_backup(st, "/nonexistent/dir/b.db", 0, &err), MOAT_E_IO);
    CHECK_EQ(moat_store_begin(st, &err), 0);
    CHECK_EQ(moat_store_backup(st, bak, 1, &err), MOAT_E_STATE);
    moat_store_rollback(st);
    /* The backup is a complete moat store on its own. */
    CHECK_EQ(moat_store_open(bak, mk, MOAT_STORE_READONLY, &bst, &err), 0);
    if (bst != NULL) {
        CHECK_EQ(moat_store_key_get(bst, "www", MOAT_KEY_CURRENT, &got, &err), 0);
        CHECK(key_consistent(bst, &got));
        moat_store_key_dispose(&got);
        moat_store_close(bst);
    }

    /* Change the live store: a new key, a removed anchor. */
    CHECK(tu_add_key(st, "api", &k2, MOAT_KEY_PENDING, &err) > 0);
    CHECK_EQ(moat_store_anchor_remove(st, "corp", &err), 0);
    CHECK_EQ(moat_store_generation(st, &g_before, &err), 0);

    CHECK_EQ(moat_store_restore_check(st, bak, &diff, &err), 0);
    CHECK_EQ(diff.n, 2);
    for (size_t i = 0; i < diff.n; i++) {
        if (strcmp(diff.items[i].kind, "key") == 0) {
            CHECK_STR(diff.items[i].name, "api (pending)");
            CHECK_EQ(diff.items[i].change, MOAT_DIFF_REMOVED);
        } else {
            CHECK_STR(diff.items[i].kind, "anchor");
            CHECK_STR(diff.items[i].name, "corp");
            CHECK_EQ(diff.items[i].change, MOAT_DIFF_ADDED);
        }
    }
    CHECK_EQ(diff.keys, 1);
    CHECK_EQ(diff.certs, 1);
    CHECK_EQ(diff.anchors, 1);
    CHECK_EQ(diff.backup_schema, MOAT_STORE_SCHEMA_VERSION);
    moat_store_diff_dispose(&diff);
    moat_store_diff_dispose(&diff); /* twice is safe */
    CHECK_STR(moat_store_diff_change_name(MOAT_DIFF_ADDED), "added");
    CHECK_STR(moat_store_diff_change_name(MOAT_DIFF_REMOVED), "removed");
    CHECK_STR(moat_store_diff_change_name(MOAT_DIFF_CHANGED), "changed");
    /* A dry run changed nothing. */
    CHECK_EQ(moat_store_key_get(st, "api", MOAT_KEY_CURRENT, &got, &err), 0);
    moat_store_key_dispose(&got);

    CHECK_EQ(moat_store_audit_add(st, "key.export", "www", "after the backup", &err), 0);
    CHECK_EQ(moat_store_restore(st, bak, &diff, &err), 0);
    CHECK_EQ(diff.n, 2);
    moat_store_diff_dispose(&diff);
    /* The audit log is not rolled back: the export after the backup is still on record. */
    {
        moat_store_audit_list_t al;
        CHECK_EQ(moat_store_audit_list(st, 2, &al, &err), 0);
        CHECK_EQ(al.n, 2);
        if (al.n == 2) {
            CHECK_STR(al.items[0].action, "store.restore");
            CHECK_STR(al.items[1].action, "key.export");
            CHECK_STR(al.items[1].detail, "after the backup");
        }
        moat_store_audit_list_dispose(&al);
    }
    CHECK_EQ(moat_store_key_get(st, "api", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    CHECK(key_consistent(st, &got));
    moat_store_key_dispose(&got);
    CHECK_EQ(moat_store_generation(st, &g_after, &err), 0);
    CHECK(g_after > g_before);
    CHECK_EQ(moat_store_info(st, &info, &err), 0);
    CHECK_EQ(info.keys, 1);
    CHECK_EQ(info.anchors, 1);
    CHECK_EQ(info.certs, 1);
    CHECK_EQ(info.schema_version, MOAT_STORE_SCHEMA_VERSION);
    CHECK_EQ(info.generation, g_after);
    CHECK(info.file_bytes > 0);
    CHECK(info.audit_entries >= 1);
    /* No temporary files are left beside the store. */
    {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "ls '%s/sub' | grep -q restore", dir);
        CHECK(system(cmd) != 0);
    }
    /* Another process sees the restored content. */
    {
        moat_store_t *other = NULL;
        CHECK_EQ(moat_store_open(db, mk, 0, &other, &err), 0);
        CHECK_EQ(moat_store_key_get(other, "api", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
        moat_store_close(other);
    }

    /* Bad backups: not a store, missing, a v1 store (migrated on restore), wrong master key. */
    snprintf(junk, sizeof(junk), "%s/junk.db", dir);
    write_file(junk, "this is not a database, not at all, not even close......", 56, 0600);
    CHECK_EQ(moat_store_restore_check(st, junk, &diff, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "not a moat store");
    CHECK_EQ(moat_store_restore(st, "/nonexistent.db", &diff, &err), MOAT_E_NOTFOUND);
    snprintf(bak2, sizeof(bak2), "%s/v1.db", dir);
    {
        char v1key[300];
        snprintf(v1key, sizeof(v1key), "%s/v1.key", dir);
        make_v1(bak2, v1key);
    }
    CHECK_EQ(moat_store_restore_check(st, bak2, &diff, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "do not decrypt");
    CHECK_CONTAINS(err.hint, "master key");
    CHECK_EQ(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    moat_store_key_dispose(&got);

    moat_store_close(st);
    OPENSSL_free(c1);
    tu_key_free(&k1);
    tu_key_free(&k2);
}

/* Restore of a v1 backup made under this store's master key: migrated on the way in. */
static void test_restore_v1(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_diff_t diff;
    moat_store_key_list_t list;
    char v1[300];

    fresh();
    snprintf(v1, sizeof(v1), "%s/v1.db", dir);
    snprintf(db, sizeof(db), "%s/live.db", dir);
    snprintf(mk, sizeof(mk), "%s/live.key", dir);
    make_v1(v1, mk); /* the live store will use the fixture's master key */
    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_restore(st, v1, &diff, &err), 0);
    CHECK_EQ(diff.backup_schema, 1);
    CHECK_EQ(diff.n, 5); /* three keys and two certificates added */
    moat_store_diff_dispose(&diff);
    CHECK_EQ(moat_store_key_list(st, &list, &err), 0);
    CHECK_EQ(list.n, 3);
    for (size_t i = 0; i < list.n; i++)
        CHECK(key_consistent(st, &list.items[i]));
    moat_store_key_list_dispose(&list);
    CHECK_EQ(moat_store_schema_version(st), MOAT_STORE_SCHEMA_VERSION);
    moat_store_close(st);
}

/* A server keeps its connection and its watch open across a restore and sees the restored content. */
static void test_restore_under_open_readers(void)
{
    moat_store_t *st, *server = NULL;
    moat_store_watch_t *w = NULL;
    moat_err_t err = {0};
    tu_key_t k;
    moat_store_key_t got;
    char bak[300];
    int changed = 0;
    int64_t g_server = 0, g_live = 0;

    fresh();
    st = open_new();
    tu_key_new(&k);
    CHECK(tu_add_key(st, "www", &k, MOAT_KEY_PENDING, &err) > 0);
    snprintf(bak, sizeof(bak), "%s/b.db", dir);
    CHECK_EQ(moat_store_backup(st, bak, 0, &err), 0);
    CHECK_EQ(moat_store_key_delete(st, "www", &err), 0);

    CHECK_EQ(moat_store_open(db, mk, 0, &server, &err), 0);
    CHECK_EQ(moat_store_watch_open(db, &w, &err), 0);
    CHECK_EQ(moat_store_key_get(server, "www", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_restore(st, bak, NULL, &err), 0);
    CHECK_EQ(moat_store_watch_changed(w, &changed, &err), 0);
    CHECK_EQ(changed, 1);
    CHECK_EQ(moat_store_generation(server, &g_server, &err), 0);
    CHECK_EQ(moat_store_generation(st, &g_live, &err), 0);
    CHECK_EQ(g_server, g_live);
    CHECK_EQ(moat_store_key_get(server, "www", MOAT_KEY_CURRENT, &got, &err), 0);
    moat_store_key_dispose(&got);
    moat_store_watch_close(w);
    moat_store_close(server);
    moat_store_close(st);
    tu_key_free(&k);
}

/* Several commands creating the same new store at the same moment: all succeed, one master key. */
static void test_concurrent_create(void)
{
    int gate[2], status, ok = 0;
    pid_t pids[4];
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_key_list_t list;
    tu_key_t k;

    fresh();
    tu_key_new(&k);
    CHECK_EQ(pipe(gate), 0);
    for (int i = 0; i < 4; i++) {
        if ((pids[i] = fork()) == 0) {
            char c, name[16];
            close(gate[1]);
            if (read(gate[0], &c, 1) != 0) /* returns 0 when the parent opens the gate */
                _exit(3);
            snprintf(name, sizeof(name), "k%d", i);
            if (moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err) != 0) {
                fprintf(stderr, "child %d: %s\n", i, err.msg);
                _exit(1);
            }
            if (tu_add_key(st, name, &k, MOAT_KEY_PENDING, &err) == 0)
                _exit(2);
            moat_store_close(st);
            _exit(0);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int i = 0; i < 4; i++) {
        waitpid(pids[i], &status, 0);
        ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    CHECK_EQ(ok, 4);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st != NULL) {
        CHECK_EQ(moat_store_key_list(st, &list, &err), 0);
        CHECK_EQ(list.n, 4);
        for (size_t i = 0; i < list.n; i++)
            CHECK(key_consistent(st, &list.items[i]));
        moat_store_key_list_dispose(&list);
        moat_store_close(st);
    }
    tu_key_free(&k);
}

static void test_readonly(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    tu_key_t k;

    fresh();
    st = open_new();
    moat_store_close(st);
    st = NULL;
    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_READONLY | MOAT_STORE_CREATE, &st, &err), 0);
    tu_key_new(&k);
    CHECK_EQ(tu_add_key(st, "x", &k, MOAT_KEY_PENDING, &err), 0);
    CHECK_EQ(err.code, MOAT_E_STATE);
    CHECK_EQ(moat_store_begin(st, &err), MOAT_E_STATE);
    moat_store_close(st);
    tu_key_free(&k);
}

/* A version-2 store (so v3 and v4 both run) gains the ACME tables; objects, lookups, lists, counts and
 * sealed external account keys round-trip, and an EAB key binds one account only. */
static void test_migration_acme(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_acme_obj_t o = {0}, got = {0};
    moat_store_acme_list_t l;
    int64_t n = -1, g0 = 0, g1 = 0;
    uint8_t *hmac = NULL;
    size_t hl = 0;
    char acct[64];
    static const uint8_t secret[] = "0123456789abcdef0123456789abcdef";

    fresh();
    snprintf(db, sizeof(db), "%s/v2a.db", dir);
    snprintf(mk, sizeof(mk), "%s/v2a.db.key", dir);
    make_fixture(2, db, mk);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_schema_version(st), MOAT_STORE_SCHEMA_VERSION);
    CHECK_EQ(moat_store_generation(st, &g0, &err), 0);
    o.kind = MOAT_STORE_ACME_ACCOUNT;
    snprintf(o.id, sizeof o.id, "a1");
    snprintf(o.lookup, sizeof o.lookup, "thumb");
    snprintf(o.status, sizeof o.status, "valid");
    o.doc = "{\"status\":\"valid\"}";
    CHECK_EQ(moat_store_acme_put(st, &o, &err), 0);
    o.kind = MOAT_STORE_ACME_ORDER;
    snprintf(o.account, sizeof o.account, "a1");
    for (int i = 0; i < 3; i++) {
        snprintf(o.id, sizeof o.id, "o%d", i);
        snprintf(o.lookup, sizeof o.lookup, "serial%d", i);
        snprintf(o.status, sizeof o.status, i == 2 ? "invalid" : "pending");
        CHECK_EQ(moat_store_acme_put(st, &o, &err), 0);
    }
    CHECK_EQ(moat_store_acme_find(st, MOAT_STORE_ACME_ACCOUNT, "thumb", &got, &err), 0);
    CHECK_STR(got.id, "a1");
    CHECK_STR(got.doc, "{\"status\":\"valid\"}");
    moat_store_acme_obj_dispose(&got);
    CHECK_EQ(moat_store_acme_get(st, MOAT_STORE_ACME_ORDER, "o1", &got, &err), 0);
    CHECK_STR(got.lookup, "serial1");
    CHECK_STR(got.account, "a1");
    moat_store_acme_obj_dispose(&got);
    CHECK_EQ(moat_store_acme_get(st, MOAT_STORE_ACME_ORDER, "nope", &got, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat_store_acme_list(st, MOAT_STORE_ACME_ORDER, 0, "a1", 10, &l, &err), 0);
    CHECK_EQ(l.n, 3);
    moat_store_acme_list_dispose(&l);
    CHECK_EQ(moat_store_acme_count(st, MOAT_STORE_ACME_ORDER, "a1", NULL, NULL, 0, &n, &err), 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(moat_store_acme_count(st, MOAT_STORE_ACME_ORDER, "", NULL, "invalid", 0, &n, &err), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(moat_store_acme_count(st, MOAT_STORE_ACME_ORDER, "", "serial2", NULL, 0, &n, &err), 0);
    CHECK_EQ(n, 1);
    /* ACME state is not served material: no reload for it. */
    CHECK_EQ(moat_store_generation(st, &g1, &err), 0);
    CHECK_EQ(g1, g0);

    CHECK_EQ(moat_store_acme_eab_add(st, "kid-1", secret, 32, &err), 0);
    CHECK_EQ(moat_store_acme_eab_add(st, "kid-1", secret, 32, &err), MOAT_E_EXISTS);
    CHECK_EQ(moat_store_acme_eab_get(st, "kid-1", &hmac, &hl, acct, sizeof acct, &err), 0);
    CHECK_EQ(hl, 32);
    CHECK(hmac != NULL && memcmp(hmac, secret, 32) == 0);
    CHECK_STR(acct, "");
    moat_free_secret(&hmac, hl);
    CHECK_EQ(moat_store_acme_eab_bind(st, "kid-1", "a1", &err), 0);
    CHECK_EQ(moat_store_acme_eab_bind(st, "kid-1", "a1", &err), 0);
    CHECK_EQ(moat_store_acme_eab_bind(st, "kid-1", "a2", &err), MOAT_E_STATE);
    CHECK_EQ(moat_store_acme_eab_get(st, "kid-2", &hmac, &hl, acct, sizeof acct, &err), MOAT_E_NOTFOUND);
    moat_store_close(st);
    /* The sealed key is not in the file in the clear. */
    {
        FILE *f = fopen(db, "rb");
        static char buf[1 << 20];
        size_t got_n = f ? fread(buf, 1, sizeof buf, f) : 0;
        CHECK(got_n > 0);
        CHECK(memmem(buf, got_n, secret, 32) == NULL);
        if (f)
            fclose(f);
    }
}

/* Locked memory of this process in KiB, from /proc/self/status (VmLck). */
static long locked_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmLck:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

/* An unsealed private key and the key object decoded from it live on the secure heap's locked pages,
 * and go back to it (cleansed) when freed. */
static void test_secure_heap(void)
{
    moat_store_t *st;
    moat_err_t err = {0};
    tu_key_t k;
    uint8_t *priv = NULL;
    size_t plen = 0, used0, used1;
    EVP_PKEY *pkey = NULL;
    long lock0 = locked_kib();
    int64_t id;
    int init;

    fresh();
    st = open_new();
    tu_key_new(&k);
    id = tu_add_key(st, "www", &k, MOAT_KEY_PENDING, &err);
    CHECK(id > 0);
    /* Not set up: the ordinary heap. */
    CHECK_EQ(moat_store_key_private(st, id, &priv, &plen, &err), 0);
    CHECK(!CRYPTO_secure_allocated(priv));
    moat_free_secret(&priv, plen);

    init = moat_secure_heap_init();
    CHECK(init == 1 || init == 2);
    CHECK_EQ(moat_secure_heap_init(), 1); /* once */
    CHECK(CRYPTO_secure_malloc_initialized());
    if (init == 1) /* mlock took: 4 MiB more locked memory */
        CHECK(locked_kib() >= lock0 + 4096);
    used0 = CRYPTO_secure_used();
    CHECK_EQ(moat_store_key_private(st, id, &priv, &plen, &err), 0);
    CHECK(priv != NULL && CRYPTO_secure_allocated(priv));
    CHECK(priv != NULL && memcmp(priv, k.priv, plen) == 0);
    used1 = CRYPTO_secure_used();
    CHECK(used1 > used0);
    /* OpenSSL keeps the private scalar of the decoded key on the secure heap too. */
    CHECK_EQ(moat_pki_key_from_pkcs8(priv, plen, &pkey, &err), 0);
    CHECK(CRYPTO_secure_used() > used1);
    EVP_PKEY_free(pkey);
    moat_free_secret(&priv, plen);
    CHECK(priv == NULL);
    CHECK_EQ(CRYPTO_secure_used(), used0);
    tu_key_free(&k);
    moat_store_close(st);
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *raw;
    CHECK_EQ(sqlite3_open(path, &raw), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
}

static char bad_rows[1024];
static void note_bad(void *arg, const char *what)
{
    (void)arg;
    snprintf(bad_rows + strlen(bad_rows), sizeof(bad_rows) - strlen(bad_rows), "%s;", what);
}

/*
 * Schema 5: a version-4 store's keys, certificates, chain, anchor, CA and issued certificates are sealed by
 * the upgrade; afterwards a change made with plain sqlite3 (no master key) is refused where the row is
 * read, and listed by moat_store_rows_verify().
 */
static void test_row_authentication(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_key_list_t kl;
    moat_store_anchor_t a;
    moat_store_anchor_list_t al;
    moat_store_ca_t ca;
    moat_store_issued_t is;
    moat_store_issued_list_t il;
    moat_store_cert_t c;
    size_t nbad = 0;
    tu_key_t k;

    fresh();
    snprintf(db, sizeof(db), "%s/v4.db", dir);
    snprintf(mk, sizeof(mk), "%s/v4.db.key", dir);
    make_fixture(4, db, mk);
    /* Without the master key the upgrade cannot seal the rows: refused, the store stays at version 4. */
    CHECK_EQ(moat_store_open(db, NULL, MOAT_STORE_NO_MASTER_KEY, &st, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "authenticates the store's rows under its master key");
    CHECK(st == NULL);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL) {
        fprintf(stderr, "v4 open: %s\n", err.msg);
        return;
    }
    CHECK_EQ(moat_store_schema_version(st), 6);
    CHECK_EQ(moat_store_rows_verify(st, note_bad, NULL, &nbad, &err), 0);
    CHECK_EQ(nbad, 0);
    CHECK_EQ(moat_store_key_list(st, &kl, &err), 0);
    CHECK_EQ(kl.n, 3);
    for (size_t i = 0; i < kl.n; i++)
        CHECK(key_consistent(st, &kl.items[i]));
    moat_store_key_list_dispose(&kl);
    CHECK_EQ(moat_store_anchor_get(st, "corp", &a, &err), 0);
    moat_store_anchor_dispose(&a);
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), 0);
    CHECK_EQ(ca.crl_number, 3);
    moat_store_ca_dispose(&ca);
    CHECK_EQ(moat_store_issued_get(st, "A1", &is, &err), 0);
    CHECK(is.revoked != 0);
    moat_store_issued_dispose(&is);
    CHECK_EQ(moat_store_cert_current(st, "www", &c, &err), 0);
    CHECK_EQ(c.chain_n, 1);
    moat_store_cert_dispose(&c);
    /* What moat itself writes is sealed: a new anchor, a revocation, a CRL number. */
    tu_key_new(&k);
    {
        int len = 0;
        unsigned char *der = tu_cert(&k, "Rogue CA", "DNS:rogue.example", 7, 0, 86400, &len);
        CHECK_EQ(moat_store_anchor_add(st, "partner", der, (size_t)len, &err), 0);
        CHECK_EQ(moat_store_issued_revoke(st, "B2", 0, 4, &err), 0);
        {
            int64_t n = 0;
            CHECK_EQ(moat_store_ca_next_crl_number(st, MOAT_CA_ROOT, &n, &err), 0);
            CHECK_EQ(n, 4);
        }
        CHECK_EQ(moat_store_rows_verify(st, note_bad, NULL, &nbad, &err), 0);
        CHECK_EQ(nbad, 0);
        moat_store_close(st);
        st = NULL;

        /* Changes made without the master key. */
        raw_exec(db, "UPDATE issued SET revoked = 0, reason = 0 WHERE serial = 'A1';"
                     "UPDATE ca SET crl_number = 1;"
                     "UPDATE certs SET is_current = 0 WHERE id = 1;"
                     "UPDATE cert_chain SET der = x'3000';"
                     "UPDATE keys SET exportable = 1 - exportable WHERE name = 'api';");
        {
            char sql[8192], *hex = calloc(1, (size_t)len * 2 + 1);
            moat_hex_lower(der, (size_t)len, hex);
            snprintf(sql, sizeof(sql),
                     "INSERT INTO anchors (name, der, subject, fingerprint, not_after, created) VALUES "
                     "('rogue', x'%s', 'CN=Rogue CA', 'ff', 1900000000, 1)",
                     hex);
            free(hex);
            raw_exec(db, "DELETE FROM anchors WHERE name = 'partner'");
            raw_exec(db, sql);
        }
        OPENSSL_free(der);
    }
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    bad_rows[0] = '\0';
    CHECK_EQ(moat_store_rows_verify(st, note_bad, NULL, &nbad, &err), 0);
    CHECK_EQ(nbad, 6);
    CHECK_CONTAINS(bad_rows, "key \"api\" (id 2)");
    CHECK_CONTAINS(bad_rows, "certificate 1 (");
    CHECK_CONTAINS(bad_rows, "chain certificate 1 of certificate 1");
    CHECK_CONTAINS(bad_rows, "trust anchor \"rogue\"");
    CHECK_CONTAINS(bad_rows, "the root CA");
    CHECK_CONTAINS(bad_rows, "issued certificate A1");
    CHECK_EQ(moat_store_anchor_get(st, "rogue", &a, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "trust anchor \"rogue\" in the store");
    CHECK_CONTAINS(err.msg, "was changed without the master key");
    CHECK_CONTAINS(err.hint, "moat doctor");
    CHECK_EQ(moat_store_anchor_list(st, &al, &err), MOAT_E_STORE);
    /* The table also lost "partner": none of its rows is used, and the one changed is named. */
    CHECK_EQ(moat_store_anchor_get(st, "corp", &a, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "trust anchor \"rogue\"");
    CHECK_EQ(moat_store_issued_get(st, "A1", &is, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "issued certificate A1");
    CHECK_EQ(moat_store_issued_list(st, 0, 0, &il, &err), MOAT_E_STORE);
    CHECK_EQ(moat_store_issued_get(st, "B2", &is, &err), 0); /* sealed by moat's revoke */
    CHECK(is.revoked != 0);
    moat_store_issued_dispose(&is);
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "the root CA");
    {
        moat_store_key_t kg;
        CHECK_EQ(moat_store_key_get(st, "api", MOAT_KEY_CURRENT, &kg, &err), MOAT_E_STORE);
        CHECK_CONTAINS(err.msg, "key \"api\" (id 2)");
    }
    moat_store_close(st);

    /* Opened without the master key, rows are read unchecked and cannot be changed. */
    CHECK_EQ(moat_store_open(db, NULL, MOAT_STORE_NO_MASTER_KEY, &st, &err), 0);
    if (st != NULL) {
        CHECK_EQ(moat_store_anchor_list(st, &al, &err), 0);
        moat_store_anchor_list_dispose(&al);
        CHECK_EQ(moat_store_rows_verify(st, NULL, NULL, &nbad, &err), MOAT_E_PERM);
        /* Removing changes the seal, which needs the master key as much as adding does. */
        CHECK(moat_store_anchor_remove(st, "corp", &err) != 0);
        CHECK_CONTAINS(err.msg, "opened without its master key");
        {
            int len = 0;
            unsigned char *der = tu_cert(&k, "Other CA", "DNS:o.example", 8, 0, 86400, &len);
            CHECK(moat_store_anchor_add(st, "other", der, (size_t)len, &err) != 0);
            CHECK_CONTAINS(err.msg, "opened without its master key");
            OPENSSL_free(der);
        }
        CHECK_EQ(moat_store_use_master_key(st, mk, &err), 0);
        CHECK_EQ(moat_store_rows_verify(st, NULL, NULL, &nbad, &err), 0);
        CHECK_EQ(nbad, 6);
        moat_store_close(st);
        st = NULL;
    }
    /* A trigger planted in the store could rewrite what moat writes: such a store is refused. */
    raw_exec(db, "CREATE TRIGGER sneaky AFTER INSERT ON issued BEGIN UPDATE issued SET revoked = 0; END;");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "trigger \"sneaky\"");
    tu_key_free(&k);
}

/* Runs <sql> on the store file with a scratch database attached as "x" (old copies of rows live there). */
static void raw_exec_x(const char *path, const char *sql)
{
    char full[8192];
    snprintf(full, sizeof(full), "ATTACH '%s/scratch.db' AS x; %s", dir, sql);
    raw_exec(path, full);
}

static void sets_bad(moat_store_t *st, size_t want, const char *contains)
{
    moat_err_t err = {0};
    size_t n = 99;
    bad_rows[0] = '\0';
    CHECK_EQ(moat_store_sets_verify(st, note_bad, NULL, &n, &err), 0);
    CHECK_EQ(n, want);
    if (contains != NULL)
        CHECK_CONTAINS(bad_rows, contains);
}

/*
 * Schema 6: a version-5 store (rows sealed, one cached CRL) gets the seal, and its CRLs and host names are
 * authenticated. Afterwards a row removed, or an older copy of a row put back with plain sqlite3 (every
 * row's own code verifies), is found: the table is refused where it is read and listed by
 * moat_store_sets_verify(); restoring the whole table as moat left it makes the store good again.
 */
static void test_row_sets(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_issued_t is;
    moat_store_issued_list_t il;
    moat_store_ca_t ca;
    moat_store_crl_list_t cl;
    moat_store_cert_list_t hl;
    moat_store_key_list_t kl;
    size_t nbad = 0;
    int64_t crl = 0;

    fresh();
    snprintf(db, sizeof(db), "%s/v5.db", dir);
    snprintf(mk, sizeof(mk), "%s/v5.db.key", dir);
    make_fixture(5, db, mk);
    CHECK_EQ(moat_store_open(db, NULL, MOAT_STORE_NO_MASTER_KEY, &st, &err), MOAT_E_PERM);
    CHECK(st == NULL);
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL) {
        fprintf(stderr, "v5 open: %s\n", err.msg);
        return;
    }
    CHECK_EQ(moat_store_schema_version(st), 6);
    CHECK_EQ(moat_store_rows_verify(st, note_bad, NULL, &nbad, &err), 0);
    CHECK_EQ(nbad, 0);
    sets_bad(st, 0, NULL);
    CHECK_EQ(moat_store_crl_list(st, &cl, &err), 0);
    CHECK_EQ(cl.n, 1);
    moat_store_crl_list_dispose(&cl);
    CHECK_EQ(moat_store_cert_find_host(st, "www.v1.example", 1500000000, &hl, &err), 0);
    moat_store_cert_list_dispose(&hl);
    CHECK_EQ(moat_store_issued_get(st, "B2", &is, &err), 0);
    CHECK(is.revoked == 0);
    moat_store_issued_dispose(&is);
    moat_store_close(st);
    st = NULL;

    /* Old copies, taken before moat changes the rows: B2 before its revocation, the CA before a CRL. */
    raw_exec_x(db, "CREATE TABLE x.issued AS SELECT * FROM main.issued; CREATE TABLE x.ca AS SELECT * FROM "
                   "main.ca; CREATE TABLE x.seal AS SELECT * FROM main.seal");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_issued_revoke(st, "B2", 0, 4, &err), 0);
    CHECK_EQ(moat_store_ca_next_crl_number(st, MOAT_CA_ROOT, &crl, &err), 0);
    CHECK_EQ(crl, 4);
    sets_bad(st, 0, NULL);
    moat_store_close(st);
    st = NULL;

    /* 1. The record of B2 from before its revocation put back: its own code verifies. */
    raw_exec_x(db, "DELETE FROM main.issued WHERE serial = 'B2'; "
                   "INSERT INTO main.issued SELECT * FROM x.issued WHERE serial = 'B2'");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_rows_verify(st, NULL, NULL, &nbad, &err), 0);
    CHECK_EQ(nbad, 0);
    sets_bad(st, 1, "records of issued certificates (table issued) are not the rows moat last wrote");
    CHECK_EQ(moat_store_issued_get(st, "B2", &is, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "an older copy of a row was put back");
    CHECK_CONTAINS(err.hint, "moat store restore");
    CHECK_EQ(moat_store_issued_list(st, MOAT_ISSUED_REVOKED_ONLY, 0, &il, &err), MOAT_E_STORE);
    CHECK_EQ(moat_store_issued_revoke(st, "B2", 0, 4, &err), MOAT_E_STORE);
    /* Other tables are still read. */
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), 0);
    moat_store_ca_dispose(&ca);
    moat_store_close(st);
    st = NULL;

    /* 2. The record removed instead: one row fewer. */
    raw_exec(db, "DELETE FROM issued WHERE serial = 'B2'");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_issued_get(st, "B2", &is, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "are 1 where moat's last change left 2: a row was removed");
    moat_store_close(st);
    st = NULL;

    /* 3. The old CA row (CRL number 3) put back: the next number would be handed out again. */
    raw_exec_x(db, "DELETE FROM main.ca; INSERT INTO main.ca SELECT * FROM x.ca");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "the root CA in the store");
    CHECK_CONTAINS(err.msg, "CA rows (table ca)");
    CHECK_EQ(moat_store_ca_next_crl_number(st, MOAT_CA_ROOT, &crl, &err), MOAT_E_STORE);
    sets_bad(st, 2, "(table ca)");
    moat_store_close(st);
    st = NULL;

    /* 4. The whole old state of both tables with the old seal: consistent, so only the seal's epoch
     * tells; that is what restoring a backup does, and it is not refused. */
    raw_exec_x(db, "DELETE FROM main.issued; INSERT INTO main.issued SELECT * FROM x.issued;"
                   "DELETE FROM main.seal; INSERT INTO main.seal SELECT * FROM x.seal");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    sets_bad(st, 0, NULL);
    moat_store_close(st);
    st = NULL;

    /* 5. A host name moved to another certificate, and a cached CRL changed: their own codes fail. */
    raw_exec(db, "UPDATE cert_names SET cert_id = 2 WHERE name = 'www.v1.example';"
                 "UPDATE crls SET der = x'3000'");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    bad_rows[0] = '\0';
    CHECK_EQ(moat_store_rows_verify(st, note_bad, NULL, &nbad, &err), 0);
    CHECK_EQ(nbad, 2);
    CHECK_CONTAINS(bad_rows, "host name www.v1.example of certificate 2");
    CHECK_CONTAINS(bad_rows, "the cached CRL of ");
    CHECK_EQ(moat_store_cert_find_host(st, "www.v1.example", 1500000000, &hl, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "host name www.v1.example of certificate 2");
    CHECK_CONTAINS(err.msg, "was changed without the master key");
    CHECK_EQ(moat_store_crl_list(st, &cl, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "the cached CRL of ");
    moat_store_close(st);
    st = NULL;

    /* 6. A host name removed, and the seal removed: every table with rows is refused. */
    raw_exec(db, "DELETE FROM cert_names WHERE name = 'api.v1.example'; DELETE FROM seal");
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st == NULL)
        return;
    CHECK_EQ(moat_store_key_list(st, &kl, &err), MOAT_E_STORE);
    CHECK_CONTAINS(err.msg, "keys (table keys) are 3 where moat's last change left 0");
    moat_store_close(st);
    st = NULL;
}

int main(void)
{
    RUN(test_open_create);
    RUN(test_blob);
    RUN(test_keys);
    RUN(test_encrypted_at_rest);
    RUN(test_certs_renewal_rollback);
    RUN(test_anchors_ca_issued);
    RUN(test_meta);
    RUN(test_transactions);
    RUN(test_permissions_and_master_key);
    RUN(test_not_a_store);
    RUN(test_newer_version);
    RUN(test_migration_from_v1);
    RUN(test_migration_from_v2);
    RUN(test_migration_acme);
    RUN(test_row_authentication);
    RUN(test_row_sets);
    RUN(test_watch);
    RUN(test_backup_restore);
    RUN(test_restore_v1);
    RUN(test_restore_under_open_readers);
    RUN(test_concurrent_create);
    RUN(test_readonly);
    RUN(test_secure_heap); /* last: it sets up the secure heap for the whole process */
    if (dir[0])
        tu_rmrf(dir);
    return harness_done();
}
