/* Unit tests for src/import/scan.c: nginx and Apache configs with includes, certbot layout, folders. */
#include "harness.h"
#include "import/import.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];

static void put(const char *rel, const char *text)
{
    char path[PATH_MAX], dir[PATH_MAX], *slash;
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    /* mkdir -p of the folder */
    for (slash = dir + strlen(root) + 1; (slash = strchr(slash, '/')) != NULL; slash++) {
        *slash = '\0';
        (void)mkdir(dir, 0700);
        *slash = '/';
    }
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void link_to(const char *target, const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    CHECK_EQ(symlink(target, path), 0);
}

static const moat_import_file_t *find(const moat_import_scan_t *s, const char *rel)
{
    char path[PATH_MAX], real[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (realpath(path, real) == NULL)
        return NULL;
    for (size_t i = 0; i < s->nfiles; i++)
        if (strcmp(s->files[i].real, real) == 0)
            return &s->files[i];
    return NULL;
}

static int has_note(const moat_import_scan_t *s, const char *needle)
{
    for (size_t i = 0; i < s->nnotes; i++)
        if (strstr(s->notes[i], needle) != NULL)
            return 1;
    return 0;
}

static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    FILE *p;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    p = popen(cmd, "r");
    if (p != NULL)
        pclose(p);
}

static void test_nginx(void)
{
    moat_import_scan_t s;
    moat_err_t err = {0};
    const moat_import_file_t *f;
    char path[PATH_MAX];
    put("nginx/nginx.conf", "user www-data;\n"
                            "http {\n"
                            "    # ssl_certificate /commented/out.pem;\n"
                            "    include conf.d/*.conf;\n"
                            "    include sites-enabled/*;\n"
                            "    include loop.conf;\n"
                            "}\n");
    put("nginx/loop.conf", "include nginx.conf; # a loop must end\n");
    put("nginx/conf.d/ssl.conf", "ssl_protocols TLSv1.2;\n");
    put("nginx/sites-enabled/a", "server {\n"
                                 "    listen 443 ssl;\n"
                                 "    server_name _ www.a.test a.test;\n"
                                 "    ssl_certificate     /etc/missing/a.pem;\n"
                                 "    ssl_certificate \"../certs/a cert.pem\";\n"
                                 "    ssl_certificate_key ../certs/a.key;\n"
                                 "    ssl_certificate $ssl_server_name.crt;\n"
                                 "    ssl_certificate_key data:$key;\n"
                                 "}\n"
                                 "server { server_name b.test; ssl_certificate ../certs/b.pem; "
                                 "ssl_certificate_key '../certs/b.key'; }\n");
    put("certs/a cert.pem", "x");
    put("certs/a.key", "x");
    put("certs/b.pem", "x");
    put("certs/b.key", "x");
    put("certs/unrelated.pem", "x");
    snprintf(path, sizeof(path), "%s/nginx/nginx.conf", root);
    CHECK_EQ(moat_import_scan(path, &s, &err), 0);
    CHECK_STR(s.kind, "nginx");
    CHECK_EQ(s.nfiles, 4);
    f = find(&s, "certs/a cert.pem");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK_STR(f->name_hint, "www.a.test");
        CHECK(f->referenced);
        CHECK_CONTAINS(f->origin, "sites-enabled/a:5 ssl_certificate");
    }
    f = find(&s, "certs/a.key");
    CHECK(f != NULL && f->name_hint != NULL && strcmp(f->name_hint, "www.a.test") == 0);
    f = find(&s, "certs/b.key");
    CHECK(f != NULL && f->name_hint != NULL && strcmp(f->name_hint, "b.test") == 0);
    if (f != NULL)
        CHECK_CONTAINS(f->origin, "sites-enabled/a:10 ssl_certificate_key");
    CHECK(find(&s, "certs/unrelated.pem") == NULL);
    CHECK(has_note(&s, "/etc/missing/a.pem: No such file or directory"));
    CHECK(has_note(&s, "uses a variable ($ssl_server_name.crt)"));
    CHECK(has_note(&s, "is not a file (data:$key"));
    CHECK(!has_note(&s, "commented"));
    moat_import_scan_dispose(&s);
}

static void test_apache(void)
{
    moat_import_scan_t s;
    moat_err_t err = {0};
    const moat_import_file_t *f;
    char path[PATH_MAX];
    put("apache/sites-enabled/site.conf", "<VirtualHost *:443>\n"
                                          "    ServerName https://www.c.test:443\n"
                                          "    SSLEngine on\n"
                                          "    sslcertificatefile   ../certs/c.pem\n"
                                          "    SSLCertificateKeyFile \\\n"
                                          "        ../certs/c.key\n"
                                          "    SSLCertificateChainFile ../certs/chain.pem\n"
                                          "    SSLCertificateFile ${APACHE_CERT}\n"
                                          "</VirtualHost>\n");
    put("certs/c.pem", "x");
    put("certs/c.key", "x");
    put("certs/chain.pem", "x");
    /* ServerRoot is the apache folder itself, written absolute. */
    {
        char conf[PATH_MAX * 2];
        snprintf(
            conf, sizeof(conf),
            "ServerRoot \"%s/apache\"\nIncludeOptional mods-enabled/*.conf\nIncludeOptional nothing/*.conf\n"
            "Include sites-enabled\nInclude missing.conf\n",
            root);
        put("apache/apache2.conf", conf);
    }
    snprintf(path, sizeof(path), "%s/apache/apache2.conf", root);
    CHECK_EQ(moat_import_scan(path, &s, &err), 0);
    CHECK_STR(s.kind, "apache");
    CHECK_EQ(s.nfiles, 3);
    f = find(&s, "certs/c.key");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK_STR(f->name_hint, "www.c.test");
        CHECK_CONTAINS(f->origin, "site.conf:5 SSLCertificateKeyFile");
    }
    CHECK(find(&s, "certs/chain.pem") != NULL);
    CHECK(has_note(&s, "uses a variable (${APACHE_CERT})"));
    CHECK(has_note(&s, "missing.conf: no such file"));
    CHECK(!has_note(&s, "nothing"));
    moat_import_scan_dispose(&s);
}

static void test_certbot_and_folder(void)
{
    moat_import_scan_t s;
    moat_err_t err = {0};
    const moat_import_file_t *f;
    char path[PATH_MAX];
    put("dir/letsencrypt/archive/ex.test/cert1.pem", "x");
    put("dir/letsencrypt/archive/ex.test/privkey1.pem", "x");
    put("dir/letsencrypt/archive/ex.test/cert2.pem", "x");
    put("dir/letsencrypt/archive/ex.test/privkey2.pem", "x");
    put("dir/letsencrypt/live/ex.test/README", "This directory contains your keys and certificates.");
    link_to("../../archive/ex.test/cert2.pem", "dir/letsencrypt/live/ex.test/cert.pem");
    link_to("../../archive/ex.test/privkey2.pem", "dir/letsencrypt/live/ex.test/privkey.pem");
    put("dir/loose/server.key", "x");
    put("dir/loose/empty.pem", "");
    put("dir/nginx.conf", "server { server_name d.test; ssl_certificate loose/server.crt; "
                          "ssl_certificate_key loose/server.key; }\n");
    put("dir/loose/server.crt", "x");
    mkdir("dir/sub", 0700);
    snprintf(path, sizeof(path), "%s/dir", root);
    CHECK_EQ(moat_import_scan(path, &s, &err), 0);
    CHECK_STR(s.kind, "directory");
    f = find(&s, "dir/letsencrypt/archive/ex.test/cert2.pem");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK_EQ(f->certbot, MOAT_IMPORT_CERTBOT_LIVE);
        CHECK_STR(f->name_hint, "ex.test");
        CHECK_CONTAINS(f->path, "/live/ex.test/cert.pem");
    }
    f = find(&s, "dir/letsencrypt/archive/ex.test/privkey1.pem");
    CHECK(f != NULL && f->certbot == MOAT_IMPORT_CERTBOT_ARCHIVE);
    f = find(&s, "dir/loose/server.key");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK(f->referenced);
        CHECK_STR(f->name_hint, "d.test");
    }
    CHECK(find(&s, "dir/loose/empty.pem") == NULL);
    CHECK(find(&s, "dir/nginx.conf") == NULL); /* a config, followed rather than read as a key */
    /* README, cert1, privkey1, cert2, privkey2, server.key, server.crt */
    CHECK_EQ(s.nfiles, 7);
    moat_import_scan_dispose(&s);

    CHECK_EQ(moat_import_scan("/nonexistent/moat-import", &s, &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.msg, "cannot read /nonexistent/moat-import");
    snprintf(path, sizeof(path), "%s/dir/loose/server.key", root);
    CHECK_EQ(moat_import_scan(path, &s, &err), 0);
    CHECK_STR(s.kind, "file");
    CHECK_EQ(s.nfiles, 1);
    moat_import_scan_dispose(&s);
}

static void test_sanitise(void)
{
    char out[128];
    moat_import_name_sanitise("*.example.com", out, sizeof(out));
    CHECK_STR(out, "wildcard.example.com");
    moat_import_name_sanitise("My Site/2", out, sizeof(out));
    CHECK_STR(out, "My-Site-2");
    moat_import_name_sanitise("", out, sizeof(out));
    CHECK_STR(out, "imported");
    moat_import_name_sanitise("a@b_c.d-e", out, sizeof(out));
    CHECK_STR(out, "a@b_c.d-e");
    moat_import_name_sanitise("abcdef", out, 4);
    CHECK_STR(out, "abc");
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/moat-scan-XXXXXX");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (chdir(root) != 0)
        return 1;
    RUN(test_nginx);
    RUN(test_apache);
    RUN(test_certbot_and_folder);
    RUN(test_sanitise);
    if (chdir("/") != 0)
        return 1;
    rm_rf(root);
    return harness_done();
}
