/*
 * /.well-known/moat/whoami: what the server makes of the client certificate of this connection (the
 * verdict, subject, serial, issuer, not after), so that people can check their setup. Text by default,
 * JSON with "Accept: application/json" or "?format=json". Never cached.
 */
#include "server/request.h"
#include "core/x509name.h"

#include <openssl/bn.h>
#include <openssl/x509.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static _Thread_local char body[4096];

/* Appends <s> as a JSON string at out[o]; returns the new length. */
static size_t json_str(char *out, size_t cap, size_t o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (o + 3 >= cap)
        return o;
    out[o++] = '"';
    for (; *s != '\0' && o + 8 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            memcpy(out + o, "\\u00", 4);
            o += 4;
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

static int wants_json(const moat_http_req_t *req, moat_http_str_t query)
{
    for (size_t i = 0; i + 11 <= query.len; i++)
        if ((i == 0 || query.p[i - 1] == '&') && memcmp(query.p + i, "format=json", 11) == 0 &&
            (i + 11 == query.len || query.p[i + 11] == '&'))
            return 1;
    for (size_t i = 0; i < req->n_headers; i++) {
        moat_http_str_t n, v;
        moat_http_req_header(req, i, &n, &v);
        if (!moat_http_str_ieq(n, "accept"))
            continue;
        for (size_t k = 0; k + 16 <= v.len; k++)
            if (strncasecmp(v.p + k, "application/json", 16) == 0)
                return 1;
    }
    return 0;
}

static int whoami(moat__request_t *r, const moat_site_t *site, moat_http_str_t query);

int moat__whoami(moat__request_t *r, const moat_site_t *site, const char *path, moat_http_str_t query)
{
    /* Asked for every request: the answer for all the others is one compare, not the setup below. */
    return strcmp(path, MOAT_WHOAMI_PATH) == 0 ? whoami(r, site, query) : 0;
}

static int whoami(moat__request_t *r, const moat_site_t *site, moat_http_str_t query)
{
    moat__conn_t *c = r->conn;
    const moat__gen_site_t *gs = &c->wg->gen->sites[site->index];
    moat_http_resp_t *resp = &r->resp;
    X509 *peer = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    char subject[300] = "", issuer[300] = "", serial[80] = "", not_after[32] = "", note[120] = "";
    const char *verdict;
    size_t o = 0;

    if (!gs->wants_ccert) {
        verdict = "none";
        moat_strlcpy(note, "this site does not ask for client certificates", sizeof(note));
    } else if (!c->secure) {
        verdict = "none";
        moat_strlcpy(note, "plain http carries no certificate: use https", sizeof(note));
    } else {
        const char *why = moat__ccert_verdict(c, NULL);
        verdict = why != NULL ? why : "valid";
    }
    if (peer != NULL) {
        struct tm tm;
        char hex[MOAT_PKI_SERIAL_KEY_SIZE];
        moat_strlcpy(serial, moat_pki_serial_key(X509_get0_serialNumber(peer), hex) == 0 ? hex : "",
                     sizeof(serial));
        moat_x509_name_text(X509_get_subject_name(peer), subject, sizeof(subject));
        moat_x509_name_text(X509_get_issuer_name(peer), issuer, sizeof(issuer));
        if (ASN1_TIME_to_tm(X509_get0_notAfter(peer), &tm) == 1)
            strftime(not_after, sizeof(not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    r->ccert = verdict[0] == 'v' ? "ok" : verdict;
    moat_http_resp_init(resp, &r->req, 200);
    if (wants_json(&r->req, query)) {
        const char *f[][2] = {{"verdict", verdict},     {"site", site->name}, {"protocol", r->out->proto},
                              {"subject", subject},     {"serial", serial},   {"issuer", issuer},
                              {"not_after", not_after}, {"note", note}};
        body[o++] = '{';
        for (size_t i = 0; i < MOAT_ARRAY_LEN(f); i++) {
            if (i > 0)
                body[o++] = ',';
            o = json_str(body, sizeof(body) - 4, o, f[i][0]);
            body[o++] = ':';
            o = json_str(body, sizeof(body) - 4, o, f[i][1]);
        }
        body[o++] = '}';
        body[o++] = '\n';
        resp->content_type = "application/json";
    } else {
        int n = snprintf(
            body, sizeof(body),
            "verdict: %s\nsite: %s\nprotocol: %s\nsubject: %s\nserial: %s\nissuer: %s\nnot_after: %s\n%s%s%s",
            verdict, site->name, r->out->proto, subject[0] ? subject : "-", serial[0] ? serial : "-",
            issuer[0] ? issuer : "-", not_after[0] ? not_after : "-", note[0] ? "note: " : "", note,
            note[0] ? "\n" : "");
        o = n > 0 && (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1;
        resp->content_type = "text/plain; charset=utf-8";
    }
    resp->body = body;
    resp->content_length = o;
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store");
    return 1;
}
