/*
 * MIME types by file extension. Text types carry charset=utf-8 so browsers never guess.
 */
#include "http/http_int.h"

#include <string.h>

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    /* sorted by extension, compared case-insensitively */
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"atom", "application/atom+xml"},
    {"avif", "image/avif"},
    {"bmp", "image/bmp"},
    {"cer", "application/pkix-cert"},
    {"crl", "application/pkix-crl"},
    {"crt", "application/x-x509-ca-cert"},
    {"css", "text/css; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"der", "application/x-x509-ca-cert"},
    {"eot", "application/vnd.ms-fontobject"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/x-icon"},
    {"ics", "text/calendar; charset=utf-8"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"jsonld", "application/ld+json; charset=utf-8"},
    {"m4a", "audio/mp4"},
    {"map", "application/json; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"otf", "font/otf"},
    {"p12", "application/x-pkcs12"},
    {"pdf", "application/pdf"},
    {"pem", "application/x-pem-file"},
    {"png", "image/png"},
    {"rss", "application/rss+xml; charset=utf-8"},
    {"svg", "image/svg+xml; charset=utf-8"},
    {"tar", "application/x-tar"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"weba", "audio/webm"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json; charset=utf-8"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml; charset=utf-8"},
    {"xml", "application/xml; charset=utf-8"},
    {"zip", "application/zip"},
};

static int ext_cmp(const char *ext, size_t n, const char *entry)
{
    for (size_t i = 0; i < n; i++) {
        int a = moat__http_lower((unsigned char)ext[i]), b = (unsigned char)entry[i];
        if (b == '\0' || a != b)
            return b == '\0' ? 1 : a - b;
    }
    return entry[n] == '\0' ? 0 : -1;
}

const char *moat_http_mime_type(const char *name, size_t len)
{
    size_t dot = len;
    for (size_t i = len; i > 0; i--) {
        if (name[i - 1] == '/')
            break;
        if (name[i - 1] == '.') {
            dot = i - 1;
            break;
        }
    }
    if (dot < len && len - dot - 1 > 0 && len - dot - 1 <= 16) {
        const char *ext = name + dot + 1;
        size_t n = len - dot - 1, lo = 0, hi = MOAT_ARRAY_LEN(types);
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            int c = ext_cmp(ext, n, types[mid].ext);
            if (c == 0)
                return types[mid].type;
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
    }
    return "application/octet-stream";
}
