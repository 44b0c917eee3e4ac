/* Local diagnosis: the config, the store and the live listeners of this machine. */
#include "doctor/doctor_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int moat_doctor_local(const char *config_path, const char *store_path, const moat_doctor_opts_t *o,
                      moat_doctor_report_t *r, moat_err_t *err)
{
    struct stat st;
    moat_doctor_finding_t *f;
    (void)o;
    (void)err;

    moat_strlcpy(r->target, config_path ? config_path : "this machine", sizeof(r->target));
    moat_strlcpy(r->store, store_path, sizeof(r->store));
    if (stat(store_path, &st) != 0) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "store-missing", "store", "there is no store at %s (%s)",
                            store_path, strerror(errno));
        moat_doctor_why(f,
                        "every key, certificate and trust anchor lives in the store: without it nothing can "
                        "be served");
        moat_doctor_fix(
            f, "create it with your first key (moat key new NAME --cn HOST) or CA (moat ca init), or "
               "point moat at the right one (--store, MOAT_STORE, or store: in the config)");
        return 0;
    }
    moat_doctor_fact(r, "store", "path", "%s (%lld bytes)", store_path, (long long)st.st_size);
    return 0;
}
