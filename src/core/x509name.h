/*
 * The one text form of an X.509 name in moat, wherever a name is shown or stored (the store's index,
 * logs, whoami, --json, doctor, messages): RFC 2253 order and escaping, with UTF-8 kept readable instead
 * of becoming \XX escapes. Where the text goes on somewhere stricter (an access log line), that writer
 * escapes it further.
 */
#ifndef MOAT_CORE_X509NAME_H
#define MOAT_CORE_X509NAME_H

#include <openssl/x509.h>
#include <stddef.h>

/* A new NUL-terminated string ("" for an empty name), or NULL when out of memory; free with moat_free(). */
char *moat_x509_name_dup(const X509_NAME *name);
/* The same into <out>, cut to <outsz> on a character boundary ("" when it cannot be printed). */
void moat_x509_name_text(const X509_NAME *name, char *out, size_t outsz);

#endif
