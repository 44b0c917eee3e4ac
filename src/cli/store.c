/*
 * moat store backup|restore|info: whole-store operations.
 */
#include "cli/groups.h"
#include "cli/keymgr_int.h"
#include "keymgr/keymgr.h"
#include "store/store.h"

#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Works out the store and master key paths every command uses, and <file> (may be NULL) made absolute. */
static int paths(moat_cli_t *cli, char *store, char *mk, const char *file, char *abs, moat_err_t *err)
{
    int rc;
    if ((rc = moat_cli_store_path(cli, store, PATH_MAX, NULL, err)) != 0 ||
        (rc = moat_cli_master_key_path(cli, store, mk, PATH_MAX, err)) != 0)
        return rc;
    return file != NULL ? moat_path_absolute(file, abs, PATH_MAX, err) : 0;
}

static int cmd_backup(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    int force = 0, rc;
    char store[PATH_MAX], mk[PATH_MAX], abs[PATH_MAX];
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    const moat__km_opt_t opts[] = {{"--force", NULL, &force, NULL, NULL, 0}, {0}};
    const moat__km_cmd_t cmd = {
        "moat store backup FILE [--force]",
        "Writes a consistent copy of the store to FILE (mode 0600) with SQLite's online backup, safe\n"
        "while the server runs. The master key is not in the copy: back it up separately, and keep the\n"
        "two apart.\n\n"
        "  --force   overwrite FILE if it exists\n"
        "  --json    machine-readable output\n\n"
        "example: moat store backup /var/backups/moat-$(date +%F).db\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    /* The master key is not needed to copy encrypted keys; not loading it also never creates one. */
    if (paths(cli, store, mk, pos[0], abs, &err) != 0 ||
        moat_cli_store_open(cli, store, NULL, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0 ||
        moat_store_backup(st, abs, force, &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    moat_store_close(st);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "store", store);
        moat_json_kv_str(&j, "backup", abs);
        moat_json_kv_str(&j, "master_key", mk);
        moat_json_kv_bool(&j, "master_key_included", 0);
        moat_cli_json_end(&j);
    } else if (!cli->quiet) {
        printf("backed up %s to %s (mode 0600)\n", store, abs);
    }
    /* Said even with --quiet and --json (on stderr then): losing the master key loses every key. */
    fprintf(cli->json || cli->quiet ? stderr : stdout,
            "note: the master key is not in the backup. Back up %s separately and keep it apart from\n"
            "      the backup: without it the private keys in the backup cannot be decrypted.\n",
            mk);
    return MOAT_EXIT_OK;
}

static const char *plural(size_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static int cmd_restore(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    int dry = 0, force = 0, rc;
    char store[PATH_MAX], mk[PATH_MAX], abs[PATH_MAX];
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_plan_notes_t notes;
    moat_store_diff_t diff;
    int64_t gen = 0;
    unsigned flags = 0;
    const moat__km_opt_t opts[] = {
        {"--dry-run|-n", NULL, &dry, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat store restore FILE [--dry-run] [--force]",
        "Checks backup FILE (a moat store, schema not newer than this moat, integrity ok, every private\n"
        "key decrypts with the current master key), shows what would change (keys, certificates, trust\n"
        "anchors, CA: added, removed, changed), then replaces the store with it in one transaction. A\n"
        "running server reloads by itself.\n"
        "What moat's CA did since the backup is kept: certificates it issued, revocations and CRL\n"
        "numbers are carried into the restored store (listed as kept); a backup without a CA that has\n"
        "issued certificates is refused.\n"
        "Checked before it commits against the sites of the configuration (-c, MOAT_CONFIG or\n"
        "./moat.yaml): a restore that leaves a site that loads today unable to load (its key missing,\n"
        "its certificate expired) is refused, naming the site.\n\n"
        "  --dry-run, -n  only check and show what would change\n"
        "  --force        restore although a site of the configuration would not load\n"
        "  --json         machine-readable output\n\n"
        "example: moat store restore /var/backups/moat-2026-12-01.db --dry-run\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (paths(cli, store, mk, pos[0], abs, &err) != 0)
        return moat_cli_fail(cli, &err);
    /* Restoring onto a lost store is the point of a backup, but only with the master key it was made
     * under: creating a fresh master key here would make a store the backup can never go into. */
    if (access(store, F_OK) != 0) {
        if (access(mk, F_OK) != 0) {
            moat_err_set(&err, MOAT_E_NOTFOUND, "there is no store at %s and no master key at %s", store, mk);
            moat_err_hint(
                &err, "put the master key the backup was made with at %s (or pass --master-key FILE)", mk);
            return moat_cli_fail(cli, &err);
        }
        if (!dry)
            flags |= MOAT_STORE_CREATE;
    }
    if (!(flags & MOAT_STORE_CREATE) && access(store, F_OK) != 0) {
        moat_err_set(&err, MOAT_E_NOTFOUND, "there is no store at %s to compare the backup with", store);
        moat_err_hint(&err, "run the restore without --dry-run to create the store from the backup");
        return moat_cli_fail(cli, &err);
    }
    if (moat_cli_store_open(cli, store, mk, flags, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (!force)
        cfg = moat_cli_change_config(cli);
    rc = moat_keymgr_restore(st, abs, dry != 0, cfg, &notes, &diff, &err);
    moat_config_unref(cfg);
    if (rc == 0 && !dry)
        rc = moat_store_generation(st, &gen, &err);
    if (rc != 0) {
        moat_store_close(st);
        if (flags & MOAT_STORE_CREATE) {
            /* The store this command made for the restore goes again: a failed restore changes nothing. */
            char side[PATH_MAX + 8];
            (void)unlink(store);
            snprintf(side, sizeof(side), "%s-wal", store);
            (void)unlink(side);
            snprintf(side, sizeof(side), "%s-shm", store);
            (void)unlink(side);
        }
        return moat_cli_fail(cli, &err);
    }
    moat_cli_change_notes(cli, &notes);

    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "store", store);
        moat_json_kv_str(&j, "backup", abs);
        moat_json_kv_bool(&j, "dry_run", dry);
        moat_json_kv_bool(&j, "restored", !dry);
        moat_json_kv_int(&j, "backup_schema", diff.backup_schema);
        moat_json_kv_int(&j, "backup_generation", diff.backup_generation);
        moat_json_kv_int(&j, "keys", (int64_t)diff.keys);
        moat_json_kv_int(&j, "certificates", (int64_t)diff.certs);
        moat_json_kv_int(&j, "trust_anchors", (int64_t)diff.anchors);
        if (!dry)
            moat_json_kv_int(&j, "generation", gen);
        moat_json_key(&j, "changes");
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < diff.n; i++) {
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "kind", diff.items[i].kind);
            moat_json_kv_str(&j, "name", diff.items[i].name);
            moat_json_kv_str(&j, "change", moat_store_diff_change_name(diff.items[i].change));
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        if (!dry)
            moat_cli_served_json(cli, st, &j);
        moat_cli_json_end(&j);
    } else if (!cli->quiet || dry) {
        printf("backup %s: store schema %d, %zu %s, %zu %s, %zu trust %s\n", abs, diff.backup_schema,
               diff.keys, plural(diff.keys, "key", "keys"), diff.certs,
               plural(diff.certs, "certificate", "certificates"), diff.anchors,
               plural(diff.anchors, "anchor", "anchors"));
        size_t kept = 0;
        for (size_t i = 0; i < diff.n; i++)
            kept += diff.items[i].change == MOAT_DIFF_KEPT;
        if (diff.n == kept)
            printf("%s\n", dry ? "restoring it would change no key, certificate, trust anchor or CA"
                               : "no key, certificate, trust anchor or CA changed");
        else
            printf("%s\n", dry ? "restoring it would change:" : "changed:");
        for (size_t i = 0; i < diff.n; i++)
            if (diff.items[i].change != MOAT_DIFF_KEPT)
                printf("  %-7s %-7s %s\n", moat_store_diff_change_name(diff.items[i].change),
                       diff.items[i].kind, diff.items[i].name);
        if (kept > 0)
            printf("%s from the live store (a restore never takes back what moat's CA issued or revoked):\n",
                   dry ? "it would keep" : "kept");
        for (size_t i = 0; i < diff.n; i++)
            if (diff.items[i].change == MOAT_DIFF_KEPT)
                printf("  %-7s %s\n", diff.items[i].kind, diff.items[i].name);
        if (dry)
            printf("dry run: %s was not changed\n", store);
        else
            printf("restored %s from %s (generation %lld)\n", store, abs, (long long)gen);
    }
    rc = dry ? MOAT_EXIT_OK : moat_cli_served_report(cli, st);
    moat_store_close(st);
    moat_store_diff_dispose(&diff);
    return rc;
}

static int cmd_info(moat_cli_t *cli, int argc, char **argv)
{
    char store[PATH_MAX], mk[PATH_MAX];
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    moat_store_info_t info;
    moat_store_server_status_t ss;
    int mk_present, rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat store info",
        "Shows where the store and its master key are, the schema version, file sizes, what it holds,\n"
        "the generation and what the running server applied.\n\n"
        "  --json   machine-readable output\n\n"
        "example: moat --store /var/lib/moat/moat.db store info --json\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (paths(cli, store, mk, NULL, NULL, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_cli_store_open(cli, store, NULL, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) !=
            0 ||
        moat_store_info(st, &info, &err) != 0 || moat_store_server_status_get(st, &ss, &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    mk_present = access(mk, F_OK) == 0;
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "store", store);
        moat_json_kv_str(&j, "backend", moat_store_backend(st));
        moat_json_kv_str(&j, "master_key", mk);
        moat_json_kv_bool(&j, "master_key_present", mk_present);
        moat_json_kv_int(&j, "schema_version", info.schema_version);
        moat_json_kv_int(&j, "file_bytes", info.file_bytes);
        moat_json_kv_int(&j, "wal_bytes", info.wal_bytes);
        moat_json_kv_int(&j, "generation", info.generation);
        moat_json_kv_int(&j, "keys", (int64_t)info.keys);
        moat_json_kv_int(&j, "pending_keys", (int64_t)info.pending_keys);
        moat_json_kv_int(&j, "certificates", (int64_t)info.certs);
        moat_json_kv_int(&j, "trust_anchors", (int64_t)info.anchors);
        moat_json_kv_int(&j, "issued", (int64_t)info.issued);
        moat_json_kv_int(&j, "audit_entries", (int64_t)info.audit_entries);
        moat_json_kv_bool(&j, "ca_root", info.has_ca_root);
        moat_json_kv_bool(&j, "ca_intermediate", info.has_ca_intermediate);
        moat_json_key(&j, "server");
        moat_json_obj_begin(&j);
        moat_json_key(&j, "applied_generation");
        if (ss.applied_generation >= 0)
            moat_json_int(&j, ss.applied_generation);
        else
            moat_json_null(&j); /* no server ever ran on this store */
        moat_json_kv_int(&j, "refused_generation", ss.refused_generation);
        moat_json_kv_str(&j, "refusal", ss.refusal);
        moat_json_kv_int(&j, "pid", ss.pid);
        moat_json_kv_time(&j, "updated", ss.updated);
        moat_json_obj_end(&j);
        moat_cli_json_end(&j);
    } else {
        printf("store:          %s (%s)\n", store, moat_store_backend(st));
        printf("master key:     %s%s\n", mk, mk_present ? "" : " (missing)");
        printf("schema version: %d\n", info.schema_version);
        printf("size:           %lld bytes + %lld bytes write-ahead log\n", (long long)info.file_bytes,
               (long long)info.wal_bytes);
        printf("keys:           %zu with a certificate (active, expired or revoked: see moat key list), %zu "
               "pending\n",
               info.keys, info.pending_keys);
        printf("certificates:   %zu (with history)\n", info.certs);
        printf("trust anchors:  %zu\n", info.anchors);
        printf("CA:             %s%s, %zu issued\n", info.has_ca_root ? "root" : "none",
               info.has_ca_intermediate ? " + intermediate" : "", info.issued);
        printf("audit entries:  %zu\n", info.audit_entries);
        printf("generation:     %lld\n", (long long)info.generation);
        if (ss.applied_generation < 0)
            printf("server:         never ran on this store\n");
        else
            printf("server:         pid %lld applied generation %lld%s%s\n", (long long)ss.pid,
                   (long long)ss.applied_generation, ss.refusal[0] ? "; refused: " : "", ss.refusal);
    }
    moat_store_close(st);
    return MOAT_EXIT_OK;
}

/* "2026-12-01T10:00:00Z", "2026-12-01", or an age: "90m", "12h", "7d" before now. */
static int parse_since(const char *s, time_t now, int64_t *out, moat_err_t *err)
{
    char unit = 0, end = 0;
    long n = 0;
    if (sscanf(s, "%ld%c%c", &n, &unit, &end) == 2 && n >= 0 && (unit == 'm' || unit == 'h' || unit == 'd')) {
        *out = (int64_t)now - (int64_t)n * (unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400);
        return 0;
    }
    if (moat_time_parse(s, MOAT_TIME_DATE, out) == 0)
        return 0;
    moat_err_set(err, MOAT_E_USAGE, "--since \"%s\" is not a time", s);
    return moat_err_hint(err,
                         "give 2026-12-01, 2026-12-01T10:00:00Z (UTC), or an age such as 90m, 12h or 7d");
}

static int cmd_audit(moat_cli_t *cli, int argc, char **argv)
{
    const char *since_s = NULL, *key = NULL;
    char store[PATH_MAX], mk[PATH_MAX], when[MOAT_TIME_SIZE];
    int64_t since = 0;
    int rc;
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    moat_store_audit_list_t l = {0};
    const moat__km_opt_t opts[] = {
        {"--since", &since_s, NULL, NULL, NULL, 0},
        {"--key", &key, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat store audit [--since TIME] [--key NAME] [--json]",
        "Prints the store's audit log, newest first: the time (UTC), the Unix user who ran the command,\n"
        "the action (key.new, key.export, cert.install, ca.issue, ca.revoke, store.restore, ...), what\n"
        "it acted on, and details.\n\n"
        "  --since TIME  only entries from TIME on: 2026-12-01, 2026-12-01T10:00:00Z, or an age\n"
        "                (90m, 12h, 7d)\n"
        "  --key NAME    only entries about the key (or certificate name) NAME\n"
        "  --json        an array of {id, time, actor, action, object, detail}\n\n"
        "example: moat store audit --since 7d --key www\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if ((since_s != NULL && parse_since(since_s, time(NULL), &since, &err) != 0) ||
        paths(cli, store, mk, NULL, NULL, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_cli_store_open(cli, store, NULL, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) !=
            0 ||
        moat_store_audit_query(st, since, key, 0, &l, &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < l.n; i++) {
            moat_json_obj_begin(&j);
            moat_json_kv_int(&j, "id", l.items[i].id);
            moat_json_kv_time(&j, "time", l.items[i].time);
            moat_json_kv_str(&j, "actor", l.items[i].actor);
            moat_json_kv_str(&j, "action", l.items[i].action);
            moat_json_kv_str(&j, "object", l.items[i].object);
            moat_json_kv_str(&j, "detail", l.items[i].detail);
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        moat_json_finish(&j);
    } else if (l.n == 0) {
        printf("no audit entries%s%s%s%s\n", key ? " about " : "", key ? key : "", since_s ? " since " : "",
               since_s ? since_s : "");
    } else {
        size_t wa = strlen("ACTION"), wo = strlen("OBJECT"), wu = strlen("USER");
        for (size_t i = 0; i < l.n; i++) {
            size_t a = strlen(l.items[i].action), o = strlen(l.items[i].object), u = strlen(l.items[i].actor);
            wa = a > wa ? a : wa;
            wo = o > wo ? o : wo;
            wu = u > wu ? u : wu;
        }
        printf("%-20s  %-*s  %-*s  %-*s  %s\n", "TIME", (int)wu, "USER", (int)wa, "ACTION", (int)wo, "OBJECT",
               "DETAIL");
        for (size_t i = 0; i < l.n; i++)
            printf("%-20s  %-*s  %-*s  %-*s  %s\n", moat_time_rfc3339(l.items[i].time, when), (int)wu,
                   l.items[i].actor, (int)wa, l.items[i].action, (int)wo, l.items[i].object,
                   l.items[i].detail);
    }
    moat_store_audit_list_dispose(&l);
    moat_store_close(st);
    return MOAT_EXIT_OK;
}

static int cmd_upgrade(moat_cli_t *cli, int argc, char **argv)
{
    char store[PATH_MAX], mk[PATH_MAX];
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    int from = 0, rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat store upgrade",
        "Upgrades a store made by an older moat to this moat's schema in one transaction, after keeping\n"
        "a copy of the old file as STORE.schemaN.bak. Read commands refuse an older store; any command\n"
        "that changes the store upgrades it the same way.\n\n"
        "example: moat --store /var/lib/moat/moat.db store upgrade\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (paths(cli, store, mk, NULL, NULL, &err) != 0 ||
        moat_cli_store_open(cli, store, NULL, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_upgraded(st, &from) == NULL && !cli->quiet)
        printf("store %s is at schema %d already\n", store, MOAT_STORE_SCHEMA_VERSION);
    moat_store_close(st);
    return MOAT_EXIT_OK;
}

int moat_cli_store(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"backup", "write a consistent copy of the store to a file, safe while the server runs", cmd_backup},
        {"restore", "check a backup, show what would change, and replace the store with it", cmd_restore},
        {"info", "where the store is, its schema, size, contents and generation", cmd_info},
        {"upgrade", "bring a store made by an older moat to this schema, keeping a copy", cmd_upgrade},
        {"audit", "the audit log: who did what to which key, certificate or file, and when", cmd_audit},
    };
    return moat__km_dispatch(cli, "store", "whole-store operations: backup, restore, info, upgrade, audit",
                             subs, MOAT_ARRAY_LEN(subs), argc, argv);
}
