/* Files written whole: see core.h. */
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder of <path> into <out> ("." for a bare name). */
static void folder_of(const char *path, char *out, size_t outsz)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        (void)moat_strlcpy(out, ".", outsz);
    } else if (slash == path) {
        (void)moat_strlcpy(out, "/", outsz);
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= outsz)
            n = outsz - 1;
        memcpy(out, path, n);
        out[n] = '\0';
    }
}

void moat_file_sweep_stale(const char *base, const char *tag)
{
    char dir[PATH_MAX], prefix[NAME_MAX + 32];
    const char *name = strrchr(base, '/');
    struct dirent *de;
    DIR *d;
    int dfd;

    name = name != NULL ? name + 1 : base;
    if ((size_t)snprintf(prefix, sizeof(prefix), "%s.%s-", name, tag) >= sizeof(prefix))
        return;
    folder_of(base, dir, sizeof(dir));
    if ((d = opendir(dir)) == NULL)
        return; /* nothing to sweep where nothing can be read */
    dfd = dirfd(d);
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        char *end;
        long pid;
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        errno = 0;
        pid = strtol(de->d_name + strlen(prefix), &end, 10);
        if (errno != 0 || pid <= 0 || *end != '-' || strlen(end + 1) < 6 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* still running (or another user's): in use */
        if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode))
            (void)unlinkat(dfd, de->d_name, 0); /* best effort: the next run tries again */
    }
    closedir(d);
}

int moat_file_tmp_open(moat_tmpfile_t *t, const char *dest, int mode, moat_err_t *err)
{
    char dir[4096];
    int e;
    t->fd = -1;
    t->named[0] = '\0';
    if (moat_strlcpy(t->dest, dest, sizeof(t->dest)) != 0)
        return moat_err_set(err, MOAT_E_INVAL, "path too long: %.200s", dest);
    folder_of(dest, dir, sizeof(dir));
    moat_file_sweep_stale(dest, "tmp");
    t->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, (mode_t)mode);
    if (t->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* A file system without unnamed files: a named one, removed on every failure. */
        (void)snprintf(t->named, sizeof(t->named), "%s.tmp-%ld-XXXXXX", dest, (long)getpid());
        t->fd = mkstemp(t->named);
        if (t->fd < 0)
            t->named[0] = '\0';
    }
    if (t->fd < 0) {
        e = errno;
        moat_err_set(err, MOAT_E_IO, "cannot create %s: %s", dest, strerror(e));
        return moat_err_hint(err, "check that the folder exists and that you may write to it");
    }
    if (fchmod(t->fd, (mode_t)mode) != 0) {
        e = errno;
        moat_file_tmp_discard(t);
        return moat_err_set(err, MOAT_E_IO, "cannot set the mode of %s: %s", dest, strerror(e));
    }
    return 0;
}

int moat_file_write_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return MOAT_E_IO;
        }
        done += (size_t)w;
    }
    return 0;
}

void moat_file_tmp_discard(moat_tmpfile_t *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->named[0] != '\0')
        (void)unlink(t->named); /* best effort: the partial file must not stay behind */
    t->named[0] = '\0';
}

static void sync_folder(const char *path)
{
    char dir[4096];
    int fd;
    folder_of(path, dir, sizeof(dir));
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* the name is in place; a failed folder sync only weakens durability */
        close(fd);
    }
}

/* Gives the unnamed file <fd> the name <name> (fails with EEXIST when it exists). */
static int link_unnamed(int fd, const char *name)
{
    char proc[64];
    (void)snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
}

int moat_file_publish(moat_tmpfile_t *t, int replace, moat_err_t *err)
{
    char tmp[4096 + 32];
    int e = 0;
    if (fsync(t->fd) != 0) {
        e = errno;
        goto fail;
    }
    if (t->named[0] != '\0') {
        if (replace ? rename(t->named, t->dest) != 0 : link(t->named, t->dest) != 0) {
            e = errno;
            goto fail;
        }
        if (!replace)
            (void)unlink(t->named); /* the file lives under its real name now */
        t->named[0] = '\0';
    } else if (link_unnamed(t->fd, t->dest) != 0) {
        e = errno;
        if (e != EEXIST || !replace)
            goto fail;
        /* Replacing: a name of its own first, then the one atomic step. Only a kill between these two
         * calls leaves that name behind, holding a complete file: the next write to <dest> sweeps it. */
        for (unsigned i = 0;; i++) {
            (void)snprintf(tmp, sizeof(tmp), "%s.tmp-%ld-%06u", t->dest, (long)getpid(), i);
            if (link_unnamed(t->fd, tmp) == 0)
                break;
            if (errno != EEXIST || i == 100) {
                e = errno;
                goto fail;
            }
        }
        if (rename(tmp, t->dest) != 0) {
            e = errno;
            (void)unlink(tmp);
            goto fail;
        }
    }
    close(t->fd);
    t->fd = -1;
    sync_folder(t->dest);
    return 0;
fail:
    moat_file_tmp_discard(t);
    if (e == EEXIST)
        return moat_err_set(err, MOAT_E_EXISTS, "%s exists already", t->dest);
    moat_err_set(err, MOAT_E_IO, "cannot write %s: %s", t->dest, strerror(e));
    if (e == ENOSPC || e == EFBIG || e == EDQUOT)
        moat_err_hint(err, "free some disk space and try again; nothing was written");
    return err->code;
}

/* A device, FIFO or socket (or a name under /dev or /proc, such as /dev/stdout): written where it is. */
static int write_in_place(const char *path, const void *data, size_t len, moat_err_t *err)
{
    int fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC), e;
    if (fd < 0) {
        e = errno;
        return moat_err_set(err, MOAT_E_IO, "cannot open %s: %s", path, strerror(e));
    }
    if (moat_file_write_all(fd, data, len) != 0) {
        e = errno;
        close(fd);
        return moat_err_set(err, MOAT_E_IO, "cannot write %s: %s", path, strerror(e));
    }
    if (close(fd) != 0 && errno != EINTR) {
        e = errno;
        return moat_err_set(err, MOAT_E_IO, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

int moat_file_write(const char *path, const void *data, size_t len, int mode, moat_err_t *err)
{
    char real[PATH_MAX];
    const char *dest = path;
    moat_tmpfile_t t;
    struct stat sb, lsb;
    int rc;

    if (strcmp(path, "-") == 0) {
        if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
            return moat_err_set(err, MOAT_E_IO, "cannot write to stdout: %s", strerror(errno));
        return 0;
    }
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            moat_err_set(err, MOAT_E_INVAL, "%s is a folder", path);
            return moat_err_hint(err, "give the name of a file to write");
        }
        if (!S_ISREG(sb.st_mode))
            return write_in_place(path, data, len, err);
        /* A regular file behind a symbolic link: replace the file, keep the link. */
        if (lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode) && realpath(path, real) != NULL) {
            if (strncmp(real, "/proc/", 6) == 0 || strncmp(real, "/dev/", 5) == 0)
                return write_in_place(path, data, len, err);
            dest = real;
        }
    }
    if ((rc = moat_file_tmp_open(&t, dest, mode, err)) != 0)
        return rc;
    if (moat_file_write_all(t.fd, data, len) != 0) {
        int e = errno;
        moat_file_tmp_discard(&t);
        moat_err_set(err, MOAT_E_IO, "cannot write %s: %s", path, strerror(e));
        if (e == ENOSPC || e == EFBIG || e == EDQUOT)
            moat_err_hint(err, "free some disk space and try again; nothing was written");
        return err->code;
    }
    return moat_file_publish(&t, 1, err);
}

/* "s7/../s2/moat.db" is printed as ".../s2/moat.db": the folder of an existing path is resolved (the file
 * itself may not exist yet, and a symlink to it is kept). */
static void tidy(char *out, size_t outsz)
{
    char dir[PATH_MAX], real[PATH_MAX], joined[PATH_MAX];
    char *slash = strrchr(out, '/');
    if (slash == NULL || slash == out || (size_t)(slash - out) >= sizeof(dir))
        return;
    memcpy(dir, out, (size_t)(slash - out));
    dir[slash - out] = '\0';
    if ((strstr(dir, "/.") == NULL && strstr(dir, "//") == NULL) || realpath(dir, real) == NULL)
        return;
    if ((size_t)snprintf(joined, sizeof(joined), "%s%s", strcmp(real, "/") == 0 ? "" : real, slash) < outsz)
        (void)moat_strlcpy(out, joined, outsz);
}

int moat_path_absolute(const char *path, char *out, size_t outsz, moat_err_t *err)
{
    char cwd[PATH_MAX];
    if (path[0] == '/') {
        if (moat_strlcpy(out, path, outsz) != 0)
            return moat_err_set(err, MOAT_E_INVAL, "path too long: %s", path);
        tidy(out, outsz);
        return 0;
    }
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return moat_err_set(err, MOAT_E_IO, "cannot read the current directory: %s", strerror(errno));
    if ((size_t)snprintf(out, outsz, "%s/%s", cwd, path) >= outsz)
        return moat_err_set(err, MOAT_E_INVAL, "path too long: %s", path);
    tidy(out, outsz);
    return 0;
}
