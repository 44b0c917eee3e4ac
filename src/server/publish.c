/*
 * Publication of moat's CA under /.well-known/moat/ on sites with ca_publish: the CA certificates (PEM
 * and DER), the CRLs the CLI keeps in the store, and a page on how to trust the root. Everything is
 * built with the generation on the control thread (a revocation bumps the store generation, so the
 * served CRL follows within one store poll); workers answer from memory.
 */
#include "ca/ca.h"
#include "server/request.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/*
 * Certificates go out as application/x-x509-ca-cert, PEM as well as DER: it is the type browsers and
 * OS installers act on (Firefox opens its "trust this CA" dialog, Android and iOS their certificate
 * installers, and all of them read either encoding), while application/x-pem-file has no handler
 * anywhere and only downloads. CRLs are DER as RFC 5280 §4.2.1.13 asks, with its media type.
 */
#define TYPE_CA_CERT "application/x-x509-ca-cert"
#define TYPE_CRL "application/pkix-crl"
#define TYPE_HTML "text/html; charset=utf-8"

enum { PUB_PAGE, PUB_CA_PEM, PUB_CA_DER, PUB_ROOT_PEM, PUB_ROOT_DER, PUB_CA_CRL, PUB_ROOT_CRL };

static const struct {
    const char *path;
    const char *type;
} pub_paths[MOAT__PUB_FILES] = {
    [PUB_PAGE] = {MOAT_PKI_PATH_TRUST_PAGE, TYPE_HTML},
    [PUB_CA_PEM] = {MOAT_PKI_PATH_CA_PEM, TYPE_CA_CERT},
    [PUB_CA_DER] = {MOAT_PKI_PATH_CA_DER, TYPE_CA_CERT},
    [PUB_ROOT_PEM] = {MOAT_PKI_PATH_ROOT_PEM, TYPE_CA_CERT},
    [PUB_ROOT_DER] = {MOAT_PKI_PATH_ROOT_DER, TYPE_CA_CERT},
    [PUB_CA_CRL] = {MOAT_PKI_PATH_CRL, TYPE_CRL},
    [PUB_ROOT_CRL] = {MOAT_PKI_PATH_ROOT_CRL, TYPE_CRL},
};

void moat__publish_free(moat__publish_t **pub)
{
    if (*pub == NULL)
        return;
    for (size_t i = 0; i < MOAT__PUB_FILES; i++)
        moat_free(&(*pub)->file[i].body);
    moat_free(pub);
}

/* Takes <body> (owned) as file <i>, with a strong ETag from its SHA-256. */
static int set_file(moat__publish_t *pub, int i, unsigned char *body, size_t len, time_t last_modified,
                    moat_err_t *err)
{
    moat__pub_file_t *f = &pub->file[i];
    unsigned char md[32];
    size_t o = 0;

    if (EVP_Digest(body, len, md, NULL, EVP_sha256(), NULL) != 1) {
        moat_free(&body);
        return moat_err_ossl(err, MOAT_E_PKI, "hashing %s", pub_paths[i].path);
    }
    f->etag[o++] = '"';
    moat_hex_lower(md, 12, f->etag + o);
    o += 24;
    f->etag[o++] = '"';
    f->etag[o] = '\0';
    f->body = body;
    f->len = len;
    f->last_modified = last_modified;
    return 0;
}

static int copy_file(moat__publish_t *pub, int i, const void *data, size_t len, time_t last_modified,
                     moat_err_t *err)
{
    unsigned char *b = moat_malloc(len ? len : 1);
    if (b == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "copying %s", pub_paths[i].path);
    memcpy(b, data, len);
    return set_file(pub, i, b, len, last_modified, err);
}

/* A CA certificate as PEM (<pem_i>) and DER (<pem_i> + 1). */
static int add_cert(moat__publish_t *pub, int pem_i, const moat_store_ca_t *row, X509 *x,
                    const moat_pki_cert_info_t *info, moat_err_t *err)
{
    char *pem = NULL;
    size_t pem_len = 0;
    int rc;
    if ((rc = moat_pki_cert_to_pem(x, NULL, &pem, &pem_len, err)) != 0)
        return rc;
    rc = set_file(pub, pem_i, (unsigned char *)pem, pem_len, info->not_before, err);
    if (rc == 0)
        rc = copy_file(pub, pem_i + 1, row->der.data, row->der.len, info->not_before, err);
    return rc;
}

/* The CRL of <role> kept in the store (re-signed by moat ca revoke, moat ca crl and the server), served
 * as DER. No CRL yet: left out; one that does not parse is left out with a warning rather than stopping
 * the server (the server's own re-signing replaces it). */
static int add_crl(moat__publish_t *pub, int i, moat_store_t *st, moat_ca_role_t role, char *pem,
                   moat_err_t *err)
{
    X509_CRL *crl = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    time_t this_update = (time_t)-1;
    int rc = moat_ca_crl_stored(st, role, pem, MOAT_CA_CRL_PEM_MAX, &crl, err);

    if (rc == MOAT_E_PKI || (rc == 0 && crl != NULL && moat_pki_crl_to_der(crl, &der, &der_len, err) != 0)) {
        moat_log(MOAT_LOG_WARN, NULL, "%s is not published: %s", pub_paths[i].path, err->msg);
        moat_err_clear(err);
        X509_CRL_free(crl);
        return 0;
    }
    if (rc != 0 || crl == NULL)
        return rc;
    if (moat_pki_asn1_time_to_time(X509_CRL_get0_lastUpdate(crl), &this_update, err) != 0) {
        moat_err_clear(err);
        this_update = (time_t)-1;
    }
    X509_CRL_free(crl);
    return set_file(pub, i, der, der_len, this_update, err);
}

static void html(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        const char *entity = moat_http_html_entity(*s);
        if (entity != NULL)
            fputs(entity, f);
        else
            fputc(*s, f);
    }
}

static void date_text(time_t t, char *out, size_t outsz)
{
    struct tm tm;
    out[0] = '\0';
    if (gmtime_r(&t, &tm) != NULL)
        strftime(out, outsz, "%Y-%m-%d %H:%M UTC", &tm);
}

/* The trust page: what the root is, its fingerprint to check, and how each common system trusts it.
 * Only the certificates' names, dates and fingerprints are dynamic, and they are escaped. */
static int add_page(moat__publish_t *pub, const moat_pki_cert_info_t *root, const moat_pki_cert_info_t *inter,
                    moat_err_t *err)
{
    char *buf = NULL, until[40];
    size_t len = 0;
    const char *name = root->cn != NULL ? root->cn : root->subject;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "writing the trust page");
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width\">\n<title>Trust ",
          f);
    html(f, name);
    fputs("</title>\n<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;padding:0 1em;"
          "line-height:1.45}pre,code{background:#f3f3f3}pre{padding:.6em;overflow-x:auto}"
          "th{text-align:left;padding-right:1em;vertical-align:top}</style></head>\n<body>\n<h1>Trust ",
          f);
    html(f, name);
    fputs("</h1>\n<p>The sites of this organisation use certificates from its own certificate authority. "
          "Install its root certificate once on your system or browser, and they open without warnings. "
          "Before trusting it, compare the fingerprint below with one you got another way (from your "
          "administrator, or on paper): this page may travel over plain HTTP.</p>\n<table>\n"
          "<tr><th>Root</th><td>",
          f);
    html(f, root->subject);
    fputs("</td></tr>\n<tr><th>SHA-256 fingerprint</th><td><code>", f);
    html(f, root->fingerprint);
    date_text(root->not_after, until, sizeof(until));
    fputs("</code></td></tr>\n<tr><th>Valid until</th><td>", f);
    html(f, until);
    fputs("</td></tr>\n", f);
    if (inter != NULL) {
        fputs("<tr><th>Issuing CA</th><td>", f);
        html(f, inter->subject);
        fputs("<br><code>", f);
        html(f, inter->fingerprint);
        fputs("</code></td></tr>\n", f);
    }
    fputs("</table>\n<h2>Files</h2>\n<ul>\n"
          "<li><a href=\"root.pem\">root.pem</a> (PEM) or <a href=\"root.der\">root.der</a> (DER): the root "
          "certificate, the one to trust.</li>\n",
          f);
    if (inter != NULL)
        fputs("<li><a href=\"ca.pem\">ca.pem</a> or <a href=\"ca.der\">ca.der</a>: the intermediate that "
              "issues certificates (sites send it themselves; do not install it as a root).</li>\n",
              f);
    if (pub->file[PUB_CA_CRL].body != NULL)
        fputs("<li><a href=\"ca.crl\">ca.crl</a>: the revocation list of the issuing CA (DER).</li>\n", f);
    if (inter != NULL && pub->file[PUB_ROOT_CRL].body != NULL)
        fputs("<li><a href=\"root.crl\">root.crl</a>: the revocation list of the root (DER).</li>\n", f);
    fputs("</ul>\n"
          "<h2>Check the fingerprint</h2>\n"
          "<pre>openssl x509 -in root.pem -noout -fingerprint -sha256</pre>\n"
          "<h2>Debian, Ubuntu</h2>\n"
          "<pre>sudo cp root.pem /usr/local/share/ca-certificates/moat-root.crt\n"
          "sudo update-ca-certificates</pre>\n"
          "<p>The file must end in <code>.crt</code> and be PEM.</p>\n"
          "<h2>RHEL, Fedora, CentOS</h2>\n"
          "<pre>sudo cp root.pem /etc/pki/ca-trust/source/anchors/moat-root.pem\n"
          "sudo update-ca-trust</pre>\n"
          "<h2>macOS</h2>\n"
          "<pre>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "
          "root.pem</pre>\n"
          "<h2>Windows</h2>\n"
          "<p>In a command prompt run as administrator:</p>\n"
          "<pre>certutil -addstore -f Root root.der</pre>\n"
          "<h2>Firefox, and Chrome or Chromium on Linux (NSS)</h2>\n"
          "<p>Firefox: open <a href=\"root.pem\">root.pem</a> and tick \"Trust this CA to identify "
          "websites\", or Settings &gt; Privacy &amp; Security &gt; Certificates &gt; View Certificates &gt; "
          "Authorities &gt; Import. With the NSS tools (package libnss3-tools):</p>\n"
          "<pre>certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n moat-root -i root.pem</pre>\n"
          "<p>For a Firefox profile, give its folder: <code>-d sql:PROFILE_FOLDER</code>.</p>\n"
          "<h2>curl, one command</h2>\n"
          "<pre>curl --cacert root.pem https://SITE/</pre>\n"
          "</body></html>\n",
          f);
    if (fclose(f) != 0 || buf == NULL) {
        free(buf); /* open_memstream's buffer comes from the C library's malloc */
        return moat_err_set(err, MOAT_E_NOMEM, "writing the trust page");
    }
    {
        int rc = copy_file(pub, PUB_PAGE, buf, len,
                           inter != NULL && inter->not_before > root->not_before ? inter->not_before
                                                                                 : root->not_before,
                           err);
        free(buf);
        return rc;
    }
}

static int load_ca(moat_store_t *st, moat_ca_role_t role, moat_store_ca_t *row, X509 **x,
                   moat_pki_cert_info_t *info, moat_err_t *err)
{
    int rc = moat_store_ca_get(st, role, row, err);
    if (rc != 0)
        return rc;
    if ((rc = moat_pki_cert_parse(row->der.data, row->der.len, x, err)) != 0 ||
        (rc = moat_pki_cert_info(*x, info, err)) != 0)
        return moat_err_prefix(err, "the %s CA certificate in the store", moat_store_ca_role_name(role));
    return 0;
}

int moat__publish_build(moat__gen_t *gen, moat_store_t *st, moat_err_t *err)
{
    moat_store_ca_t root = {0}, inter = {0};
    moat_pki_cert_info_t root_info = {0}, inter_info = {0};
    X509 *root_x = NULL, *inter_x = NULL;
    moat__publish_t *pub = NULL;
    char *pem = NULL;
    int rc, has_inter;

    rc = load_ca(st, MOAT_CA_ROOT, &root, &root_x, &root_info, err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err); /* no CA yet: the paths answer 404 saying so */
        return 0;
    }
    if (rc != 0)
        goto out;
    rc = load_ca(st, MOAT_CA_INTERMEDIATE, &inter, &inter_x, &inter_info, err);
    has_inter = rc == 0;
    if (rc == MOAT_E_NOTFOUND)
        moat_err_clear(err);
    else if (rc != 0)
        goto out;
    if ((pub = moat_calloc(1, sizeof(*pub))) == NULL || (pem = moat_malloc(MOAT_CA_CRL_PEM_MAX)) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "building the CA publication");
        goto out;
    }
    if ((rc = add_cert(pub, PUB_ROOT_PEM, &root, root_x, &root_info, err)) != 0 ||
        (rc = has_inter ? add_cert(pub, PUB_CA_PEM, &inter, inter_x, &inter_info, err)
                        : add_cert(pub, PUB_CA_PEM, &root, root_x, &root_info, err)) != 0 ||
        (rc = add_crl(pub, PUB_ROOT_CRL, st, MOAT_CA_ROOT, pem, err)) != 0 ||
        (rc = add_crl(pub, PUB_CA_CRL, st, has_inter ? MOAT_CA_INTERMEDIATE : MOAT_CA_ROOT, pem, err)) != 0 ||
        (rc = add_page(pub, &root_info, has_inter ? &inter_info : NULL, err)) != 0)
        goto out;
    gen->pub = pub;
    pub = NULL;
out:
    moat__publish_free(&pub);
    moat_free(&pem);
    X509_free(root_x);
    X509_free(inter_x);
    moat_pki_cert_info_dispose(&root_info);
    moat_pki_cert_info_dispose(&inter_info);
    moat_store_ca_dispose(&root);
    moat_store_ca_dispose(&inter);
    if (rc != 0)
        moat_err_prefix(err, "publishing moat's CA");
    return rc;
}

static int answer_404(moat_http_resp_t *resp, const moat_http_req_t *req, const char *detail)
{
    static _Thread_local char page[1024];
    size_t n;
    moat_http_resp_init(resp, req, 404);
    moat_http_resp_error(resp, 404);
    if (detail != NULL && (n = moat_http_error_page_format(page, sizeof(page), 404, detail)) > 0) {
        resp->body = page;
        resp->content_length = n;
    }
    return 1;
}

int moat__publish(moat__request_t *r, const moat_site_t *site, const char *path)
{
    const moat__publish_t *pub = r->conn->wg->gen->pub;
    moat_http_req_t *req = &r->req;
    moat_http_resp_t *resp = &r->resp;
    const moat__pub_file_t *f;
    int i = -1;

    if (site->ca_publish && strcmp(path, "/.well-known/moat") == 0) {
        /* People type the folder without its slash: send them to the trust page. */
        moat_http_resp_init(resp, req, 301);
        moat_http_resp_error(resp, 301);
        resp->location[0] = (moat_http_str_t){"/.well-known/moat/", sizeof("/.well-known/moat/") - 1};
        return 1;
    }
    for (int k = 0; k < MOAT__PUB_FILES; k++)
        if (strcmp(path, pub_paths[k].path) == 0)
            i = k;
    if (i < 0)
        return 0;
    if (!site->ca_publish)
        return answer_404(resp, req, NULL);
    if (pub == NULL)
        return answer_404(resp, req, "moat's certificate authority is not set up (moat ca init).");
    f = &pub->file[i];
    if (f->body == NULL)
        return answer_404(resp, req,
                          "moat's certificate authority has no revocation list yet (moat ca crl makes one).");
    if (req->method_id != MOAT_HTTP_GET && req->method_id != MOAT_HTTP_HEAD) {
        moat_http_resp_init(resp, req, 405);
        moat_http_resp_error(resp, 405);
        return 1;
    }
    moat_http_resp_init(resp, req, 200);
    memcpy(resp->etag, f->etag, sizeof(resp->etag));
    resp->last_modified = f->last_modified;
    /* Revalidate every time: the CRL changes on each revocation, and the ETag makes it cheap. */
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-cache"); /* fixed, fits */
    /* RFC 9110 §13.2.2 like every static file: If-Match / If-Unmodified-Since first, then 304. */
    switch (moat_http_preconditions(req, f->etag, f->last_modified)) {
    case 412:
        moat_http_resp_init(resp, req, 412);
        moat_http_resp_error(resp, 412);
        return 1;
    case 304:
        resp->status = 304;
        resp->no_content_length = 1;
        return 1;
    default:
        break;
    }
    resp->content_type = pub_paths[i].type;
    resp->body = (const char *)f->body;
    resp->content_length = f->len;
    (void)moat_http_resp_add_header(resp, "X-Content-Type-Options", "nosniff");
    if (i == PUB_PAGE)
        (void)moat_http_resp_add_header(resp, "Content-Security-Policy",
                                        "default-src 'none'; style-src 'unsafe-inline'");
    return 1;
}
