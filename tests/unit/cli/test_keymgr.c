/* The key manager's shared helpers: option parsing, atomic files, names, fingerprints, days. */
#include "cli/keymgr_int.h"
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse(const moat__km_cmd_t *cmd, int argc, const char **argv)
{
    /* stdout/stderr from usage errors go to the test log; only the result matters here. */
    return moat__km_parse(cmd, argc, (char **)argv);
}

static void test_parse_options(void)
{
    const char *cn = NULL, *out = NULL, *sans[3], *pos[2];
    size_t nsans = 0;
    int flag = 0;
    const moat__km_opt_t opts[] = {
        {"--cn", &cn, NULL, NULL, NULL, 0},
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--san", NULL, NULL, sans, &nsans, 3},
        {"--exportable", NULL, &flag, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {"moat test NAME [FILE]", "help\n", opts, pos, 1, 2};
    const char *a1[] = {"new",   "www",   "--cn",         "www.example.com", "--san=DNS:a",
                        "--san", "DNS:b", "--exportable", "--out=x.csr"};
    CHECK_EQ(parse(&cmd, 9, a1), -1);
    CHECK_STR(pos[0], "www");
    CHECK(pos[1] == NULL);
    CHECK_STR(cn, "www.example.com");
    CHECK_STR(out, "x.csr");
    CHECK_EQ(nsans, 2);
    CHECK_STR(sans[1], "DNS:b");
    CHECK_EQ(flag, 1);

    /* "--" ends the options: a name may then start with a dash. */
    const char *a2[] = {"new", "--", "-odd", "file"};
    CHECK_EQ(parse(&cmd, 4, a2), -1);
    CHECK_STR(pos[0], "-odd");
    CHECK_STR(pos[1], "file");

    /* Usage errors: exit 2. Help: exit 0. */
    const char *missing[] = {"new"};
    CHECK_EQ(parse(&cmd, 1, missing), MOAT_EXIT_USAGE);
    const char *unknown[] = {"new", "www", "--bogus"};
    CHECK_EQ(parse(&cmd, 3, unknown), MOAT_EXIT_USAGE);
    const char *novalue[] = {"new", "www", "--cn"};
    CHECK_EQ(parse(&cmd, 3, novalue), MOAT_EXIT_USAGE);
    const char *flagvalue[] = {"new", "www", "--exportable=yes"};
    CHECK_EQ(parse(&cmd, 3, flagvalue), MOAT_EXIT_USAGE);
    const char *toomany[] = {"new", "a", "b", "c"};
    CHECK_EQ(parse(&cmd, 4, toomany), MOAT_EXIT_USAGE);
    nsans = 0;
    const char *fullsans[] = {"new", "a", "--san", "1", "--san", "2", "--san", "3", "--san", "4"};
    CHECK_EQ(parse(&cmd, 10, fullsans), MOAT_EXIT_USAGE);
    const char *help[] = {"new", "--help"};
    CHECK_EQ(parse(&cmd, 2, help), MOAT_EXIT_OK);
}

static void test_names(void)
{
    moat_err_t err = {0};
    CHECK_EQ(moat__km_check_name("www", &err), 0);
    CHECK_EQ(moat__km_check_name("alice@example.com", &err), 0);
    CHECK_EQ(moat__km_check_name("a_b-c.d", &err), 0);
    CHECK_EQ(moat__km_check_name("", &err), MOAT_E_INVAL);
    CHECK_EQ(moat__km_check_name("a b", &err), MOAT_E_INVAL);
    CHECK_EQ(moat__km_check_name("../x", &err), MOAT_E_INVAL);
    CHECK_EQ(moat__km_check_name("-x", &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "not a valid key name");
    CHECK(err.hint[0] != '\0');
}

static void test_fingerprint_and_days(void)
{
    char out[MOAT_PKI_FINGERPRINT_SIZE];
    long d = 0;
    moat_err_t err = {0};
    moat__km_fpr_colon("ab01ff", out);
    CHECK_STR(out, "AB:01:FF");
    moat__km_fpr_colon("", out);
    CHECK_STR(out, "");
    CHECK_EQ(moat__km_days_left(1000 + 86400 * 3, 1000), 3);
    CHECK_EQ(moat__km_days_left(1000 + 86400 * 3 - 1, 1000), 2);
    CHECK_EQ(moat__km_days_left(1000 - 1, 1000), -1);
    CHECK_EQ(moat__km_days_left(1000, 1000), 0);
    CHECK_EQ(moat__km_parse_days("90", &d, &err), 0);
    CHECK_EQ(d, 90);
    CHECK_EQ(moat__km_parse_days("0", &d, &err), MOAT_E_USAGE);
    CHECK_EQ(moat__km_parse_days("9x", &d, &err), MOAT_E_USAGE);
    CHECK_EQ(moat__km_parse_days("36501", &d, &err), MOAT_E_USAGE);
}

static void test_write_file_is_atomic(void)
{
    char dir[] = "/tmp/moat-test-keymgr-XXXXXX", path[256];
    unsigned char *back = NULL;
    size_t len = 0;
    struct stat sb;
    struct rlimit old, small;
    char big[4096];
    moat_err_t err = {0};

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/out.pem", dir);
    CHECK_EQ(moat__km_write_file(path, "first\n", 6, 0600, &err), 0);
    CHECK_EQ(stat(path, &sb), 0);
    CHECK_EQ(sb.st_mode & 0777, 0600);
    CHECK_EQ(moat__km_read_file(path, 1024, &back, &len, &err), 0);
    CHECK_EQ(len, 6);
    CHECK_STR((char *)back, "first\n");
    moat_free(&back);

    /* A write that cannot complete leaves the old file, and no temporary file, behind. */
    memset(big, 'x', sizeof(big));
    CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_cur = 64; /* only the soft limit: it can be raised back */
    small.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    CHECK_EQ(moat__km_write_file(path, big, sizeof(big), 0644, &err), MOAT_E_IO);
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    CHECK_CONTAINS(err.msg, path);
    CHECK_EQ(moat__km_read_file(path, 1024, &back, &len, &err), 0);
    CHECK_STR((char *)back, "first\n");
    moat_free(&back);
    CHECK_EQ(stat(path, &sb), 0);
    CHECK_EQ(sb.st_mode & 0777, 0600);

    /* Reading: size cap and missing files. */
    CHECK_EQ(moat__km_read_file(path, 3, &back, &len, &err), MOAT_E_LIMIT);
    CHECK(back == NULL);
    snprintf(path, sizeof(path), "%s/missing", dir);
    CHECK_EQ(moat__km_read_file(path, 10, &back, &len, &err), MOAT_E_NOTFOUND);
    CHECK_EQ(moat__km_write_file("/nonexistent-dir/x", "a", 1, 0600, &err), MOAT_E_IO);

    snprintf(path, sizeof(path), "%s/out.pem", dir);
    unlink(path);
    CHECK_EQ(rmdir(dir), 0); /* fails if a temporary file was left */
}

int main(void)
{
    RUN(test_parse_options);
    RUN(test_names);
    RUN(test_fingerprint_and_days);
    RUN(test_write_file_is_atomic);
    return harness_done();
}
