/*
 * Private keys at rest: AES-256-GCM under the master key, a fresh 96-bit nonce per write, and the key's
 * row id as associated data (a ciphertext moved to another row does not decrypt).
 * Sealed format: 0x01 || nonce[12] || ciphertext || tag[16].
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEAL_VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16
#define CHECK_AAD "moat master key check"
#define CHECK_TEXT "moat"
#define ROW_KEY_INFO "moat store rows v1"

int moat__store_check_mode(const char *what, const char *path, int strict, moat_err_t *err)
{
    struct stat sb;
    mode_t bad = strict ? 077 : (S_IROTH | S_IWOTH | S_IWGRP);
    if (stat(path, &sb) != 0)
        return moat_err_set(err, MOAT_E_IO, "cannot access %s %s: %s", what, path, strerror(errno));
    if (sb.st_mode & bad) {
        moat_err_set(err, MOAT_E_PERM, "%s %s has mode %03o: %s", what, path, (unsigned)(sb.st_mode & 0777),
                     (sb.st_mode & (S_IROTH | S_IRGRP)) ? "other users can read it"
                                                        : "other users can change it");
        return moat_err_hint(err, "run: chmod 600 %s", path);
    }
    return 0;
}

static int seal_raw(const unsigned char *mk, const char *aad, const uint8_t *plain, size_t len, uint8_t **out,
                    size_t *outlen, moat_err_t *err)
{
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t *buf = NULL;
    size_t total = 1 + NONCE_LEN + len + TAG_LEN;
    int n = 0, fin = 0, rc = 0;

    if (len > MOAT_STORE_MAX_BLOB)
        return moat_err_set(err, MOAT_E_LIMIT, "private key too large (%zu bytes)", len);
    if ((buf = moat_malloc(total)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory encrypting a private key");
    buf[0] = SEAL_VERSION;
    if (RAND_bytes(buf + 1, NONCE_LEN) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "no random numbers for the key encryption nonce");
        goto done;
    }
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, mk, buf + 1) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(ctx, buf + 1 + NONCE_LEN, &n, plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + 1 + NONCE_LEN + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + 1 + NONCE_LEN + len) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "encrypting a private key failed");
        goto done;
    }
done:
    EVP_CIPHER_CTX_free(ctx);
    if (rc != 0) {
        moat_free_secret(&buf, total);
        return rc;
    }
    *out = buf;
    *outlen = total;
    return 0;
}

static int open_raw(const unsigned char *mk, const char *aad, const uint8_t *sealed, size_t len,
                    uint8_t **plain, size_t *plainlen, moat_err_t *err)
{
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t *buf = NULL;
    size_t clen;
    int n = 0, fin = 0, rc = 0;

    if (len < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_VERSION)
        return moat_err_set(err, MOAT_E_PKI, "an encrypted private key in the store is malformed");
    clen = len - 1 - NONCE_LEN - TAG_LEN;
    /* The unsealed key: on the secure heap's locked pages. */
    if ((buf = moat_secure_malloc(clen ? clen : 1)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory decrypting a private key");
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, mk, sealed + 1) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_DecryptUpdate(ctx, buf, &n, sealed + 1 + NONCE_LEN, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(sealed + len - TAG_LEN)) != 1 ||
        EVP_DecryptFinal_ex(ctx, buf + n, &fin) != 1) {
        /* The tag did not verify: wrong master key or altered ciphertext. OpenSSL gives no reason. */
        ERR_clear_error();
        rc =
            moat_err_set(err, MOAT_E_PKI, "a private key in the store does not decrypt with this master key");
    }
    EVP_CIPHER_CTX_free(ctx);
    if (rc != 0) {
        moat_free_secret(&buf, clen ? clen : 1);
        return rc;
    }
    *plain = buf;
    *plainlen = clen;
    return 0;
}

static void key_aad(int64_t id, char *aad, size_t n)
{
    snprintf(aad, n, "moat-key:%lld", (long long)id);
}

static int need_mk(const moat_store_t *st, moat_err_t *err)
{
    if (st->have_mk)
        return 0;
    if (st->mk_path[0] == '\0' || (st->flags & MOAT_STORE_NO_MASTER_KEY))
        return moat_err_set(err, MOAT_E_PERM, "the store was opened without its master key");
    moat_err_set(err, MOAT_E_PERM, "the master key %s does not exist", st->mk_path);
    return moat_err_hint(err, "pass --master-key FILE or set MOAT_MASTER_KEY_FILE");
}

int moat__store_seal(const moat_store_t *st, int64_t id, const uint8_t *plain, size_t len, uint8_t **out,
                     size_t *outlen, moat_err_t *err)
{
    char aad[48];
    int rc;
    if ((rc = need_mk(st, err)) != 0)
        return rc;
    key_aad(id, aad, sizeof(aad));
    return seal_raw(st->mk, aad, plain, len, out, outlen, err);
}

int moat__store_open_sealed(const moat_store_t *st, int64_t id, const uint8_t *sealed, size_t len,
                            uint8_t **plain, size_t *plainlen, moat_err_t *err)
{
    char aad[48];
    int rc;
    if ((rc = need_mk(st, err)) != 0)
        return rc;
    key_aad(id, aad, sizeof(aad));
    if ((rc = open_raw(st->mk, aad, sealed, len, plain, plainlen, err)) != 0)
        moat_err_hint(err, "the master key %s does not belong to this store, or the store was altered",
                      st->mk_path);
    return rc;
}

static int read_mk(moat_store_t *st, int fd, moat_err_t *err)
{
    unsigned char extra;
    ssize_t n;
    size_t got = 0;

    while (got < sizeof(st->mk)) {
        n = read(fd, st->mk + got, sizeof(st->mk) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got != sizeof(st->mk) || read(fd, &extra, 1) != 0) {
        OPENSSL_cleanse(st->mk, sizeof(st->mk));
        moat_err_set(err, MOAT_E_INVAL,
                     "master key %s is not a moat master key (it must be exactly %d bytes)", st->mk_path,
                     MOAT_STORE_MASTER_KEY_LEN);
        return moat_err_hint(err, "restore the right master key file from your backup");
    }
    st->have_mk = 1;
    return 0;
}

/*
 * Makes a new master key. It is written to an unnamed temporary file (a kill leaves no second copy) and
 * published with link(), which fails if the name exists: another process creating the same store at the
 * same moment never reads half a key, and exactly one key wins. Returns 0 (created), 1 (another process
 * won: load theirs) or an error.
 */
static int create_mk(moat_store_t *st, moat_err_t *err)
{
    moat_tmpfile_t t;
    int rc;

    if ((rc = moat_file_tmp_open(&t, st->mk_path, 0600, err)) != 0)
        return moat_err_prefix(err, "master key: ");
    if (RAND_priv_bytes(st->mk, sizeof(st->mk)) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "no random numbers for the master key");
        moat_file_tmp_discard(&t);
    } else if (moat_file_write_all(t.fd, st->mk, sizeof(st->mk)) != 0) {
        rc = moat_err_set(err, MOAT_E_IO, "writing master key %s failed: %s", st->mk_path, strerror(errno));
        moat_file_tmp_discard(&t);
    } else if ((rc = moat_file_publish(&t, 0, err)) == MOAT_E_EXISTS) {
        moat_err_clear(err);
        rc = 1;
    }
    if (rc != 0) {
        OPENSSL_cleanse(st->mk, sizeof(st->mk));
        return rc;
    }
    st->have_mk = 1;
    return 0;
}

/* Proves that the master key belongs to this store by decrypting the check value stored in meta. */
static int check_mk(moat_store_t *st, int *found, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    uint8_t *plain = NULL;
    size_t plen = 0;
    int rc;

    *found = 0;
    if ((rc = moat__store_query(st, &s, err, "SELECT value FROM meta WHERE name = 'master_key_check'", "")) !=
        0)
        return rc;
    if ((rc = st->ops->step(s, err)) == 1) {
        /* Stored as hex text: meta is a text table on every backend. */
        long n = 0;
        unsigned char *raw = OPENSSL_hexstr2buf(st->ops->column_text(s, 0), &n);
        *found = 1;
        rc = raw != NULL ? open_raw(st->mk, CHECK_AAD, raw, (size_t)n, &plain, &plen, err) : MOAT_E_PKI;
        if (rc != 0 && rc != MOAT_E_NOMEM) {
            moat_err_set(err, MOAT_E_PERM, "the master key %s does not belong to the store %s", st->mk_path,
                         st->path);
            rc =
                moat_err_hint(err, "without its own master key the store's private keys cannot be decrypted: "
                                   "pass the right one with --master-key FILE");
        }
        OPENSSL_free(raw);
        moat_free_secret(&plain, plen);
    }
    st->ops->finalize(s);
    return rc;
}

/* Checks the master key against the store, or records the check value when the store has none yet. */
static int verify_mk(moat_store_t *st, moat_err_t *err)
{
    uint8_t *sealed = NULL;
    size_t slen = 0;
    char *hex;
    int rc, found = 0, own = 0;

    if ((rc = check_mk(st, &found, err)) != 0 || found || (st->flags & MOAT_STORE_READONLY))
        return rc;
    /* Not recorded yet: record it under the write lock, unless a concurrent opener just did. */
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = check_mk(st, &found, err)) == 0 && !found) {
        rc =
            seal_raw(st->mk, CHECK_AAD, (const uint8_t *)CHECK_TEXT, strlen(CHECK_TEXT), &sealed, &slen, err);
        if (rc == 0) {
            hex = OPENSSL_buf2hexstr(sealed, (long)slen);
            moat_free(&sealed);
            if (hex == NULL)
                rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory recording the master key check");
            else
                rc = moat__store_run(st, err, "INSERT INTO meta (name, value) VALUES ('master_key_check', ?)",
                                     "t", hex);
            OPENSSL_free(hex);
        }
    }
    return moat__store_auto_end(st, own, rc, err);
}

/* The rows' authentication key: HKDF-SHA256 of the master key, so that neither key gives the other. */
static int derive_row_key(moat_store_t *st, moat_err_t *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, st->mk, sizeof(st->mk)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)ROW_KEY_INFO, strlen(ROW_KEY_INFO)),
        OSSL_PARAM_construct_end(),
    };
    int ok = ctx != NULL && EVP_KDF_derive(ctx, st->row_key, sizeof(st->row_key), params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    if (!ok) {
        OPENSSL_cleanse(st->row_key, sizeof(st->row_key));
        return moat_err_ossl(err, MOAT_E_PKI, "deriving the store's row authentication key failed");
    }
    st->have_row_key = 1;
    return 0;
}

int moat__store_row_mac(const moat_store_t *st, const uint8_t *msg, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (!st->have_row_key)
        return MOAT_E_PERM;
    if (HMAC(EVP_sha256(), st->row_key, (int)sizeof(st->row_key), msg, len, out, &n) == NULL || n != 32) {
        ERR_clear_error();
        return MOAT_E_PKI;
    }
    return 0;
}

static int mk_load(moat_store_t *st, int may_create, int64_t nkeys, moat_err_t *err);

int moat__store_mk_load(moat_store_t *st, int may_create, int64_t nkeys, moat_err_t *err)
{
    int rc = mk_load(st, may_create, nkeys, err);
    if (rc == 0 && st->have_mk && !st->have_row_key)
        rc = derive_row_key(st, err);
    return rc;
}

int moat_store_use_master_key(moat_store_t *st, const char *master_key_path, moat_err_t *err)
{
    int64_t nkeys = 0;
    int rc;
    if (st->have_mk)
        return 0;
    if (master_key_path == NULL || moat_strlcpy(st->mk_path, master_key_path, sizeof(st->mk_path)) != 0)
        return moat_err_set(err, MOAT_E_INVAL, "no master key path given, or one too long");
    if ((rc = moat__store_int(st, &nkeys, err, "SELECT count(*) FROM keys", "")) != 0)
        return rc;
    st->flags &= ~(unsigned)MOAT_STORE_NO_MASTER_KEY;
    if ((rc = moat__store_mk_load(st, 0, nkeys, err)) == 0 && !st->have_mk) {
        moat_err_set(err, MOAT_E_PERM, "the master key %s does not exist", st->mk_path);
        rc = moat_err_hint(err, "pass --master-key FILE or set MOAT_MASTER_KEY_FILE");
    }
    if (rc != 0)
        st->flags |= MOAT_STORE_NO_MASTER_KEY;
    return rc;
}

static int mk_load(moat_store_t *st, int may_create, int64_t nkeys, moat_err_t *err)
{
    int fd, rc;

    for (int attempt = 0; attempt < 2; attempt++) {
        /* O_NONBLOCK: a FIFO given as the key must not hold the command forever waiting for a writer. */
        fd = open(st->mk_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0) {
            struct stat sb;
            if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
                close(fd);
                moat_err_set(err, MOAT_E_INVAL, "the master key %s is not a file (%s)", st->mk_path,
                             S_ISDIR(sb.st_mode)    ? "a folder"
                             : S_ISFIFO(sb.st_mode) ? "a FIFO"
                             : S_ISCHR(sb.st_mode)  ? "a device"
                                                    : "not a regular file");
                return moat_err_hint(err,
                                     "point --master-key or MOAT_MASTER_KEY_FILE to the 32-byte key file");
            }
            if ((rc = moat__store_check_mode("master key", st->mk_path, 1, err)) == 0)
                rc = read_mk(st, fd, err);
            close(fd);
            if (rc != 0)
                return rc;
            return verify_mk(st, err);
        }
        if (errno != ENOENT)
            return moat_err_set(err, MOAT_E_IO, "cannot read master key %s: %s", st->mk_path,
                                strerror(errno));
        if (nkeys > 0) {
            moat_err_set(
                err, MOAT_E_PERM,
                "the master key %s is missing: without it the %lld private keys in %s cannot be decrypted",
                st->mk_path, (long long)nkeys, st->path);
            return moat_err_hint(err, "restore the master key file from your backup, or point to it with "
                                      "--master-key FILE or MOAT_MASTER_KEY_FILE");
        }
        if (!may_create)
            return 0; /* a read-only look at a store without keys needs no master key */
        rc = create_mk(st, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return verify_mk(st, err);
    }
    return moat_err_set(err, MOAT_E_IO, "cannot read master key %s", st->mk_path);
}
