/*
 * Out of memory: a scenario covering the store's API runs once per allocation, with that allocation
 * failing (MOAT_FAIL_ALLOC=N in a forked child). Every failure must be a clean MOAT_E_NOMEM, leave no
 * leak (LeakSanitizer checks the child's exit) and leave the store intact and consistent.
 */
#include "harness.h"
#include "store_testutil.h"

#include <signal.h>
#include <sys/wait.h>

static char dir[256], db[300], mk[300], bak[300];

enum { DONE = 0, CLEAN_NOMEM = 10, WRONG_CODE = 11, BROKEN = 12 };

static int outcome(int rc, const moat_err_t *err, const char *step)
{
    if (rc == 0)
        return -1;
    if (err->code == MOAT_E_NOMEM && rc == MOAT_E_NOMEM)
        return CLEAN_NOMEM;
    fprintf(stderr, "%s: code %d (%s) instead of out of memory\n", step, rc, err->msg);
    return WRONG_CODE;
}

#define STEP(call, name)                                                                                     \
    do {                                                                                                     \
        int o_ = outcome((call), &err, (name));                                                              \
        if (o_ >= 0) {                                                                                       \
            result = o_;                                                                                     \
            goto out;                                                                                        \
        }                                                                                                    \
    } while (0)

/* Runs in the child; returns DONE, CLEAN_NOMEM or WRONG_CODE. */
static int scenario(const tu_key_t *k, const unsigned char *cert, int cert_len)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_key_t rec, got;
    moat_store_key_list_t kl = {0};
    moat_store_cert_list_t cl = {0};
    moat_store_anchor_list_t al = {0};
    moat_store_audit_list_t aul = {0};
    moat_store_issued_list_t il = {0};
    moat_store_diff_t diff = {0};
    moat_store_issued_t is;
    moat_store_blob_t chain[1];
    uint8_t *priv = NULL;
    size_t plen = 0;
    int result = DONE;

    memset(&got, 0, sizeof(got));
    STEP(moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err), "open");
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.name, sizeof(rec.name), "www");
    snprintf(rec.algorithm, sizeof(rec.algorithm), "ec-p256");
    rec.pubkey.data = k->pub;
    rec.pubkey.len = (size_t)k->pub_len;
    STEP(moat_store_begin(st, &err), "begin");
    STEP(moat_store_key_add(st, &rec, k->priv, (size_t)k->priv_len, &err), "key_add");
    chain[0].data = (uint8_t *)cert;
    chain[0].len = (size_t)cert_len;
    STEP(moat_store_cert_install(st, rec.id, cert, (size_t)cert_len, chain, 1, NULL, &err), "cert_install");
    STEP(moat_store_audit_add(st, "key.new", "www", NULL, &err), "audit_add");
    STEP(moat_store_commit(st, &err), "commit");
    STEP(moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err), "key_get");
    STEP(moat_store_key_private(st, got.id, &priv, &plen, &err), "key_private");
    STEP(moat_store_key_list(st, &kl, &err), "key_list");
    STEP(moat_store_cert_list(st, "www", &cl, &err), "cert_list");
    moat_store_cert_list_dispose(&cl);
    STEP(moat_store_cert_find_host(st, "www.example.com", (int64_t)time(NULL), &cl, &err), "find_host");
    STEP(moat_store_anchor_add(st, "corp", cert, (size_t)cert_len, &err), "anchor_add");
    STEP(moat_store_anchor_list(st, &al, &err), "anchor_list");
    memset(&is, 0, sizeof(is));
    snprintf(is.profile, sizeof(is.profile), "server");
    is.der.data = (uint8_t *)cert;
    is.der.len = (size_t)cert_len;
    STEP(moat_store_issued_add(st, &is, &err), "issued_add");
    STEP(moat_store_issued_list(st, 0, 0, &il, &err), "issued_list");
    STEP(moat_store_audit_list(st, 0, &aul, &err), "audit_list");
    STEP(moat_store_backup(st, bak, 1, &err), "backup");
    STEP(moat_store_restore(st, bak, &diff, &err), "restore");
out:
    moat_free_secret(&priv, plen);
    moat_store_key_dispose(&got);
    moat_store_key_list_dispose(&kl);
    moat_store_cert_list_dispose(&cl);
    moat_store_anchor_list_dispose(&al);
    moat_store_issued_list_dispose(&il);
    moat_store_audit_list_dispose(&aul);
    moat_store_diff_dispose(&diff);
    moat_store_close(st);
    return result;
}

/* After a failed run: the store (if any) opens and holds either nothing or the whole first transaction. */
static int consistent(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    moat_store_key_t got;
    int ok = 1;
    if (access(db, F_OK) != 0)
        return 1; /* creation failed and was undone */
    if (moat_store_open(db, mk, 0, &st, &err) != 0) {
        fprintf(stderr, "reopen: %s\n", err.msg);
        return 0;
    }
    if (moat_store_key_get(st, "www", MOAT_KEY_CURRENT, &got, &err) == 0) {
        ok = got.state == MOAT_KEY_ACTIVE && got.cert != NULL && got.cert->chain_n == 1;
        moat_store_key_dispose(&got);
    }
    moat_store_close(st);
    return ok;
}

static void test_every_allocation_fails_cleanly(void)
{
    tu_key_t k;
    unsigned char *cert;
    int cert_len, n, nomem = 0;

    tu_key_new(&k);
    cert = tu_cert(&k, "www.example.com", "DNS:www.example.com", 9, -60, 86400, &cert_len);
    for (n = 1; n < 2000; n++) {
        int status = 0;
        pid_t pid;
        char v[16];
        tu_rmrf(dir);
        if (mkdir(dir, 0700) != 0)
            break;
        pid = fork();
        if (pid == 0) {
            snprintf(v, sizeof(v), "%d", n);
            setenv("MOAT_FAIL_ALLOC", v, 1);
            exit(scenario(&k, cert, cert_len)); /* exit(), not _exit(): LeakSanitizer runs at exit */
        }
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status)) {
            HARNESS_FAIL("allocation %d: child died with signal %d", n,
                         WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            break;
        }
        if (WEXITSTATUS(status) == DONE)
            break;
        if (WEXITSTATUS(status) != CLEAN_NOMEM) {
            HARNESS_FAIL("allocation %d: exit %d (wrong error code or a leak)", n, WEXITSTATUS(status));
            continue;
        }
        nomem++;
        /* Checked in a child too: this process must never allocate through moat, or the children would
         * inherit an already read MOAT_FAIL_ALLOC. */
        if ((pid = fork()) == 0)
            exit(consistent() ? 0 : 1);
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            HARNESS_FAIL("allocation %d: store left inconsistent", n);
    }
    harness_checks++;
    printf("oom: %d allocations failed one by one, %d clean out-of-memory errors\n", n - 1, nomem);
    CHECK(n > 20 && n < 2000);
    OPENSSL_free(cert);
    tu_key_free(&k);
}

int main(void)
{
    /* Hundreds of small stores: on tmpfs where there is one, since fsync cost is not what is tested. */
    snprintf(dir, sizeof(dir), "/dev/shm/moat-store-oom-XXXXXX");
    if (access("/dev/shm", W_OK) != 0 || mkdtemp(dir) == NULL)
        tu_tmpdir(dir, sizeof(dir));
    snprintf(db, sizeof(db), "%s/moat.db", dir);
    snprintf(mk, sizeof(mk), "%s/moat.db.key", dir);
    snprintf(bak, sizeof(bak), "%s/backup.db", dir);
    RUN(test_every_allocation_fails_cleanly);
    tu_rmrf(dir);
    return harness_done();
}
