/*
 * Crash safety and full disk: a child writing transactions is SIGKILLed at random moments; a child whose
 * file size limit is reached must fail cleanly. Afterwards the store must be intact and hold exactly
 * the transactions that committed.
 */
#include "harness.h"
#include "store_testutil.h"

#include <errno.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

static char dir[256], db[300], mk[300];

static int integrity_ok(const char *path)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *s = NULL;
    int ok = 0;
    if (sqlite3_open_v2(path, &raw, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        ok = strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0;
        if (!ok)
            fprintf(stderr, "integrity_check: %s\n", sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    sqlite3_close(raw);
    return ok;
}

/* The child: one transaction per key (key + audit entry + setting), reporting each commit on <fd>. */
static void writer(int fd, int round, const tu_key_t *k)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    char name[64], val[32];

    if (moat_store_open(db, mk, 0, &st, &err) != 0) {
        fprintf(stderr, "child open: %s\n", err.msg);
        _exit(3);
    }
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof(name), "r%d-k%d", round, i);
        snprintf(val, sizeof(val), "%d", i);
        if (moat_store_begin(st, &err) != 0 || tu_add_key(st, name, k, MOAT_KEY_PENDING, &err) == 0 ||
            moat_store_audit_add(st, "key.new", name, NULL, &err) != 0 ||
            moat_store_setting_set(st, "last", name, &err) != 0 || moat_store_commit(st, &err) != 0) {
            fprintf(stderr, "child write: %s\n", err.msg);
            _exit(4);
        }
        if (write(fd, &i, sizeof(i)) != (ssize_t)sizeof(i))
            _exit(5);
    }
    _exit(0);
}

static void test_kill_during_writes(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    tu_key_t k;
    int rounds = 6, total_reported = 0;

    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err), 0);
    moat_store_close(st);
    tu_key_new(&k);

    for (int round = 0; round < rounds; round++) {
        int p[2], last = -1, v, status = 0;
        unsigned char r;
        pid_t pid;
        struct timespec ts;

        CHECK_EQ(pipe(p), 0);
        pid = fork();
        if (pid == 0) {
            close(p[0]);
            writer(p[1], round, &k);
        }
        close(p[1]);
        RAND_bytes(&r, 1);
        /* Let it commit a few first, then kill it anywhere (20..275 ms in). */
        ts.tv_sec = 0;
        ts.tv_nsec = (20 + (long)r) * 1000000L;
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read(p[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
            last = v;
        close(p[0]);

        CHECK(integrity_ok(db));
        st = NULL;
        CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
        if (st == NULL)
            break;
        /* Every reported commit is there, with its audit entry. */
        for (int i = 0; i <= last; i++) {
            moat_store_key_t got;
            char name[64];
            snprintf(name, sizeof(name), "r%d-k%d", round, i);
            if (moat_store_key_get(st, name, MOAT_KEY_CURRENT, &got, &err) != 0) {
                CHECK_STR(name, "(present)");
                break;
            }
            moat_store_key_dispose(&got);
        }
        /* At most one more (committed, killed before reporting), and never a key without its audit row. */
        {
            moat_store_key_list_t list;
            moat_store_audit_list_t al;
            size_t mine = 0, audited = 0;
            char prefix[16];
            snprintf(prefix, sizeof(prefix), "r%d-", round);
            CHECK_EQ(moat_store_key_list(st, &list, &err), 0);
            for (size_t i = 0; i < list.n; i++)
                mine += strncmp(list.items[i].name, prefix, strlen(prefix)) == 0;
            CHECK_EQ(moat_store_audit_list(st, 0, &al, &err), 0);
            for (size_t i = 0; i < al.n; i++)
                audited += strncmp(al.items[i].object, prefix, strlen(prefix)) == 0;
            CHECK(mine == (size_t)(last + 1) || mine == (size_t)(last + 2));
            CHECK_EQ(audited, mine);
            moat_store_key_list_dispose(&list);
            moat_store_audit_list_dispose(&al);
        }
        moat_store_close(st);
        total_reported += last + 1;
    }
    /* The kills must have landed in the middle of work, not before it started. */
    CHECK(total_reported > rounds);
    printf("crash test: %d transactions reported committed over %d kills\n", total_reported, rounds);
    tu_key_free(&k);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : 0;
}

/* Writes a large key under a file size limit: the store says the disk is full and changes nothing. */
static void test_full_disk(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    tu_key_t k;
    int p[2], status = 0;
    pid_t pid;
    char msg[512] = "";
    ssize_t n;
    int64_t gen_before = 0, gen_after = 0;
    char wal[320];

    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    tu_key_new(&k);
    CHECK(tu_add_key(st, "before", &k, MOAT_KEY_PENDING, &err) > 0);
    CHECK_EQ(moat_store_generation(st, &gen_before, &err), 0);
    moat_store_close(st);
    snprintf(wal, sizeof(wal), "%s-wal", db);

    CHECK_EQ(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        struct rlimit rl;
        off_t biggest = file_size(db) > file_size(wal) ? file_size(db) : file_size(wal);
        moat_store_key_t rec;
        unsigned char *big = calloc(1, 600000);
        int rc;
        close(p[0]);
        signal(SIGXFSZ, SIG_IGN);
        st = NULL;
        if (moat_store_open(db, mk, 0, &st, &err) != 0)
            _exit(3);
        rl.rlim_cur = rl.rlim_max = (rlim_t)biggest + 65536;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(4);
        memset(&rec, 0, sizeof(rec));
        snprintf(rec.name, sizeof(rec.name), "huge");
        snprintf(rec.algorithm, sizeof(rec.algorithm), "ec-p256");
        rec.pubkey.data = k.pub;
        rec.pubkey.len = (size_t)k.pub_len;
        RAND_bytes(big, 600000);
        rec.csr.data = big;
        rec.csr.len = 600000;
        rc = moat_store_begin(st, &err);
        if (rc == 0)
            rc = moat_store_key_add(st, &rec, k.priv, (size_t)k.priv_len, &err);
        if (rc == 0)
            rc = moat_store_commit(st, &err);
        else
            moat_store_rollback(st);
        snprintf(msg, sizeof(msg), "%d %.400s", rc, err.msg);
        if (write(p[1], msg, strlen(msg)) < 0)
            _exit(5);
        moat_store_close(st);
        free(big);
        _exit(0);
    }
    close(p[1]);
    n = read(p[0], msg, sizeof(msg) - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(p[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The message says what went wrong and that nothing changed. */
    CHECK(strncmp(msg, "-3 ", 3) == 0);
    CHECK_CONTAINS(msg, "nothing was changed");
    printf("full disk: %s\n", msg);

    CHECK(integrity_ok(db));
    st = NULL;
    CHECK_EQ(moat_store_open(db, mk, 0, &st, &err), 0);
    if (st != NULL) {
        moat_store_key_t got;
        CHECK_EQ(moat_store_key_get(st, "huge", MOAT_KEY_CURRENT, &got, &err), MOAT_E_NOTFOUND);
        CHECK_EQ(moat_store_key_get(st, "before", MOAT_KEY_CURRENT, &got, &err), 0);
        moat_store_key_dispose(&got);
        CHECK_EQ(moat_store_generation(st, &gen_after, &err), 0);
        CHECK_EQ(gen_after, gen_before);
        /* With room again, the same write works. */
        moat_store_close(st);
    }
    tu_key_free(&k);
}

int main(void)
{
    tu_tmpdir(dir, sizeof(dir));
    snprintf(db, sizeof(db), "%s/moat.db", dir);
    snprintf(mk, sizeof(mk), "%s/moat.db.key", dir);
    RUN(test_kill_during_writes);
    RUN(test_full_disk);
    tu_rmrf(dir);
    return harness_done();
}
