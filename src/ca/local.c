/*
 * ca: moat's root in this machine's trust stores ('moat trust install-local'), like 'caddy trust': Debian's
 * /usr/local/share/ca-certificates with update-ca-certificates, and the NSS database browsers read
 * ($HOME/.pki/nssdb) with certutil. Programs run with an argument vector (no shell) and a deadline.
 */
#include "ca/ca.h"
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define RUN_TIMEOUT_MS 60000

/* Runs argv[0] (looked up in /usr/sbin, /sbin, /usr/bin, /bin, then PATH) with its output on stderr and
 * <in> (a few kilobytes at most, or NULL) on its standard input (<quiet>: its output is dropped). 0
 * when it exited 0; MOAT_E_NOTFOUND when there is no such program. */
static int run(char *const argv[], const char *in, size_t inlen, int quiet, moat_err_t *err)
{
    int pfd[2] = {-1, -1};
    char path[PATH_MAX];
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, e;
    uint64_t end = moat_clock_ms() + RUN_TIMEOUT_MS;
    static const char *const sbin[] = {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"};

    path[0] = '\0';
    for (size_t i = 0; strchr(argv[0], '/') == NULL && i < MOAT_ARRAY_LEN(sbin); i++) {
        snprintf(path, sizeof(path), "%s%s", sbin[i], argv[0]);
        if (access(path, X_OK) == 0)
            break;
        path[0] = '\0';
    }
    if (path[0] == '\0' && strchr(argv[0], '/') != NULL)
        moat_strlcpy(path, argv[0], sizeof(path));
    if (posix_spawn_file_actions_init(&fa) != 0)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    /* Its messages ("1 added") go to stderr, so that standard output stays ours (--json). */
    if (quiet) {
        (void)posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        (void)posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    } else
        (void)posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    if (in != NULL && pipe2(pfd, O_CLOEXEC) == 0) {
        (void)posix_spawn_file_actions_adddup2(&fa, pfd[0], STDIN_FILENO);
    } else {
        (void)posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    }
    e = path[0] != '\0' ? posix_spawn(&pid, path, &fa, NULL, argv, environ)
                        : posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (pfd[0] >= 0) {
        close(pfd[0]);
        /* A certificate fits in the pipe's buffer: the write does not wait for the reader. */
        if (e == 0 && moat_file_write_all(pfd[1], in, inlen) != 0)
            e = errno;
        close(pfd[1]);
    }
    if (e == ENOENT)
        return moat_err_set(err, MOAT_E_NOTFOUND, "%s is not installed", argv[0]);
    if (e != 0)
        return moat_err_set(err, MOAT_E_IO, "cannot run %s: %s", argv[0], strerror(e));
    if ((e = moat_child_wait(pid, end, &status)) < 0)
        return moat_err_set(err, MOAT_E_IO, "waiting for %s: %s", argv[0], strerror(errno));
    if (e > 0)
        return moat_err_set(err, MOAT_E_IO, "%s did not finish within %d s", argv[0], RUN_TIMEOUT_MS / 1000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return moat_err_set(err, MOAT_E_IO, "%s failed (exit status %d)", argv[0],
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

/* <prefix><path>, where an empty prefix is the machine itself. */
static int under(const char *prefix, const char *path, char out[PATH_MAX], moat_err_t *err)
{
    int n = snprintf(out, PATH_MAX, "%s%s", prefix ? prefix : "", path);
    if (n < 0 || n >= PATH_MAX)
        return moat_err_set(err, MOAT_E_LIMIT, "the path %s%s is too long", prefix ? prefix : "", path);
    return 0;
}

static int debian_store(X509 *root, const moat_ca_local_opts_t *o, moat_ca_local_res_t *res, moat_err_t *err)
{
    char dir[PATH_MAX], conf[PATH_MAX], certs[PATH_MAX], etc[PATH_MAX], hooks[PATH_MAX];
    const char *pre = o->root != NULL && o->root[0] != '\0' ? o->root : NULL;
    char *pem = NULL;
    size_t len = 0;
    struct stat sb;
    int rc, had;

    if ((rc = under(pre, MOAT_CA_LOCAL_DIR, dir, err)) != 0 ||
        (rc = under(pre, "/etc/ca-certificates.conf", conf, err)) != 0 ||
        (rc = under(pre, "/usr/share/ca-certificates", certs, err)) != 0 ||
        (rc = under(pre, "/etc/ssl/certs", etc, err)) != 0 ||
        (rc = under(pre, "/etc/ca-certificates/update.d", hooks, err)) != 0)
        return rc;
    if (snprintf(res->file, sizeof(res->file), "%s/%s.crt", dir, res->name) >= (int)sizeof(res->file))
        return moat_err_set(err, MOAT_E_LIMIT, "the path %s is too long", dir);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        moat_err_set(err, MOAT_E_NOTFOUND, "%s does not exist: this is not a Debian-style system trust store",
                     dir);
        return moat_err_hint(err,
                             "install Debian's ca-certificates package (apt-get install ca-certificates), "
                             "or add %s to your system's trust store by hand (moat ca cert --root)",
                             res->name);
    }
    if (access(dir, W_OK) != 0) {
        moat_err_set(err, MOAT_E_PERM, "cannot write to %s: %s", dir, strerror(errno));
        return moat_err_hint(err, "the system trust store belongs to root: sudo moat trust install-local%s",
                             o->remove ? " --remove" : "");
    }
    had = stat(res->file, &sb) == 0;
    if (o->remove) {
        if (had && unlink(res->file) != 0) {
            moat_err_set(err, errno == EACCES ? MOAT_E_PERM : MOAT_E_IO, "cannot remove %s: %s", res->file,
                         strerror(errno));
            return moat_err_hint(err, "run it as root: sudo moat trust install-local --remove");
        }
        res->system_changed = had;
    } else {
        if ((rc = moat_pki_cert_to_pem(root, NULL, &pem, &len, err)) != 0)
            return rc;
        /* A world-readable public certificate, as update-ca-certificates expects. */
        rc = moat_file_write(res->file, pem, len, 0644, err);
        moat_free(&pem);
        if (rc != 0)
            return rc;
        res->system_changed = !had;
    }
    {
        char *argv_sys[] = {"update-ca-certificates", NULL, NULL};
        char *argv_pre[] = {"update-ca-certificates",
                            "--certsconf",
                            conf,
                            "--certsdir",
                            certs,
                            "--localcertsdir",
                            dir,
                            "--etccertsdir",
                            etc,
                            "--hooksdir",
                            hooks,
                            NULL,
                            NULL};
        /* A removed local certificate leaves its link behind unless the links are rebuilt (--fresh). */
        if (o->remove) {
            argv_sys[1] = "--fresh";
            argv_pre[11] = "--fresh";
        }
        if ((rc = run(pre ? argv_pre : argv_sys, NULL, 0, 0, err)) != 0) {
            moat_err_prefix(err, "%s %s, but", res->file, o->remove ? "is removed" : "is written");
            return moat_err_hint(err, "run update-ca-certificates%s yourself (as root)",
                                 o->remove ? " --fresh" : "");
        }
    }
    if (snprintf(res->bundle, sizeof(res->bundle), "%s/ca-certificates.crt", etc) >= (int)sizeof(res->bundle))
        res->bundle[0] = '\0'; /* too long to name; the bundle was rebuilt all the same */
    return 0;
}

static int nss_store(X509 *root, const moat_ca_local_opts_t *o, moat_ca_local_res_t *res, moat_err_t *err)
{
    char db[PATH_MAX + 8], nick[256];
    struct stat sb;
    int rc;

    if (o->nssdb != NULL && o->nssdb[0] == '\0')
        return 0; /* asked for none */
    if (o->nssdb != NULL) {
        moat_strlcpy(res->nssdb, o->nssdb, sizeof(res->nssdb));
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0' || (o->root != NULL && o->root[0] != '\0'))
            return 0;
        snprintf(res->nssdb, sizeof(res->nssdb), "%s/.pki/nssdb", home);
        if (stat(res->nssdb, &sb) != 0) {
            res->nssdb[0] = '\0'; /* no browser database for this user: nothing to do */
            return 0;
        }
    }
    snprintf(db, sizeof(db), "sql:%s", res->nssdb);
    snprintf(nick, sizeof(nick), "%s", res->name);
    {
        char *argv_list[] = {"certutil", "-d", db, "-L", "-n", nick, NULL};
        moat_err_t e = {0};
        int present = run(argv_list, NULL, 0, 1, &e) == 0;
        if (e.code == MOAT_E_NOTFOUND) {
            moat_err_set(err, MOAT_E_NOTFOUND,
                         "certutil is not installed, so the NSS database %s cannot be changed", res->nssdb);
            return moat_err_hint(err,
                                 "install Debian's libnss3-tools, or leave browsers out with --nssdb \"\"");
        }
        if (present == !o->remove)
            return 0; /* in it already (or not in it): nothing to do */
    }
    if (o->remove) {
        char *argv_del[] = {"certutil", "-d", db, "-D", "-n", nick, NULL};
        if ((rc = run(argv_del, NULL, 0, 0, err)) != 0)
            return moat_err_prefix(err, "removing %s from the NSS database %s", nick, res->nssdb);
        res->nss_changed = true;
        return 0;
    }
    {
        char *pem = NULL;
        size_t len = 0;
        /* Trusted to issue server certificates ("C,,"); certutil reads the certificate from stdin. */
        char *argv_add[] = {"certutil", "-d", db, "-A", "-t", "C,,", "-n", nick, "-a", NULL};
        if ((rc = moat_pki_cert_to_pem(root, NULL, &pem, &len, err)) != 0)
            return rc;
        rc = run(argv_add, pem, len, 0, err);
        moat_free(&pem);
        if (rc != 0)
            return moat_err_prefix(err, "adding the root to the NSS database %s", res->nssdb);
        res->nss_changed = true;
    }
    return 0;
}

int moat_ca_install_local(X509 *root, const moat_ca_local_opts_t *o, moat_ca_local_res_t *res,
                          moat_err_t *err)
{
    char fpr[MOAT_PKI_FINGERPRINT_SIZE];
    int rc;
    size_t k = 0;

    memset(res, 0, sizeof(*res));
    if ((rc = moat_pki_cert_fingerprint(root, fpr, err)) != 0)
        return rc;
    /* One file per root: "moat-" and the first 8 bytes of its fingerprint, so two stores never clash. */
    k = (size_t)snprintf(res->name, sizeof(res->name), "moat-");
    for (const char *p = fpr; *p && k < 5 + 16; p++)
        if (*p != ':')
            res->name[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    res->name[k] = '\0';
    if ((rc = debian_store(root, o, res, err)) != 0)
        return rc;
    return nss_store(root, o, res, err);
}
