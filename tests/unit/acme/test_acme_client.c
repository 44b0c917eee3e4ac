/* The ACME client's pieces below the protocol: the http-01 answer table and the response headers ACME
 * needs from the HTTP client. */
#include "harness.h"

#include "acme/acme_int.h"

#include <string.h>

static void test_http01_table(void)
{
    moat_err_t err = {0};
    char out[256], tok[16];
    CHECK_EQ(moat_acme_http01_add("tok1", "tok1.thumb", &err), 0);
    CHECK_EQ(moat_acme_http01_lookup("tok1", 4, out, sizeof(out)), 1);
    CHECK_STR(out, "tok1.thumb");
    CHECK_EQ(moat_acme_http01_lookup("tok", 3, out, sizeof(out)), 0);
    CHECK_EQ(moat_acme_http01_lookup("tok1x", 5, out, sizeof(out)), 0);
    moat_acme_http01_remove("tok1");
    CHECK_EQ(moat_acme_http01_lookup("tok1", 4, out, sizeof(out)), 0);
    for (int i = 0; i < 64; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        CHECK_EQ(moat_acme_http01_add(tok, "v", &err), 0);
    }
    CHECK_EQ(moat_acme_http01_add("one-more", "v", &err), MOAT_E_LIMIT);
    for (int i = 0; i < 64; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        moat_acme_http01_remove(tok);
    }
    CHECK_EQ(moat_acme_http01_add("one-more", "v", &err), 0);
    moat_acme_http01_remove("one-more");
}

static void test_acme_headers(void)
{
    char resp[] = "HTTP/1.1 201 Created\r\nReplay-Nonce: abc-DEF_1\r\nLocation: https://ca/acct/1\r\n"
                  "Retry-After: 7\r\nContent-Type: application/json\r\n"
                  "Link: <https://ca/dir>;rel=\"index\"\r\nLink: <https://ca/cert/1/1>;rel=\"alternate\"\r\n"
                  "Content-Length: 2\r\n\r\n{}";
    moat_http_client_resp_t r;
    moat_err_t err = {0};
    CHECK_EQ(moat_http_client_parse((uint8_t *)resp, strlen(resp), 0, 100, &r, &err), 0);
    CHECK_EQ(r.status, 201);
    CHECK_STR(r.nonce, "abc-DEF_1");
    CHECK_STR(r.location, "https://ca/acct/1");
    CHECK_EQ(r.retry_after, 7);
    CHECK_STR(r.content_type, "application/json");
    CHECK_EQ(r.nalternates, 1);
    CHECK_STR(r.alternates[0], "https://ca/cert/1/1");
}

int main(void)
{
    RUN(test_http01_table);
    RUN(test_acme_headers);
    return harness_done();
}
