#!/bin/sh
# Source checks that a compiler does not do: banned functions in src/ and clang-format conformance.
set -u
cd "$(dirname "$0")/.."
status=0
banned='\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gmtime|localtime|rand|system)[[:space:]]*\('
if grep -rnE "$banned" src --include='*.c' --include='*.h' | grep -vE '^\S+:[0-9]+:\s*(/\*|\*)'; then
    echo "checksrc: banned function in src/ (use snprintf, moat_strlcpy, strtol, gmtime_r, RAND_bytes)" >&2
    status=1
fi
if command -v clang-format >/dev/null 2>&1; then
    files=$(find src tests/unit fuzz bench -name '*.[ch]' 2>/dev/null)
    if [ -n "$files" ] && ! clang-format --dry-run -Werror $files; then
        echo "checksrc: run 'make format' (clang-format) on the files above" >&2
        status=1
    fi
fi
exit $status
