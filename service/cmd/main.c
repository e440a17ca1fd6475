/*
 * main: parses the configuration and hands over to the supervisor.
 *
 *   batchd [OPTION]...              the service (supervisor.h)
 *   batchd --print-config [OPTION]  the effective configuration, then exit 0
 *   batchd healthcheck [OPTION]...  probe a running service (healthcheck.h)
 *
 * Exit codes: 0 after an orderly stop (or --help/--version/--print-config),
 * 2 for a bad command line or a start-up failure (see supervisor.h); the
 * healthcheck's are its own (0 healthy, 1 not).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "service/config/config.h"
#include "service/cmd/healthcheck.h"
#include "service/core/fdlimit.h"
#include "service/core/log.h"
#include "service/supervisor/supervisor.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "healthcheck") == 0)
        return healthcheck_main(argc - 1, argv + 1);

    struct config cfg;
    char err[512] = "";
    log_init_from_env();
    int rc = config_parse(&cfg, argc, argv, err, sizeof err);
    if (rc == CONFIG_EXIT_OK)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "batchd: %s (see batchd --help)\n", err[0] ? err : "bad arguments");
        return SUP_EXIT_FATAL;
    }
    log_set_level((enum log_level)cfg.log_level);
    if (cfg.print_config) {
        config_print(&cfg, stdout);
        config_free(&cfg);
        return fflush(stdout) == 0 ? 0 : SUP_EXIT_FATAL;
    }
    /* Before anything forks: the api process inherits the limit. */
    uint64_t soft;
    int frc = fdlimit_raise(&soft);
    if (frc != 0)
        log_warn("cannot raise the open-file limit to its hard limit: %s (it stays %llu)",
                 strerror(-frc), (unsigned long long)soft);
    if (soft > 0) {
        unsigned asked = cfg.max_connections;
        frc = fdlimit_fit(&cfg.max_connections,
                          config_source_of(&cfg, "max-connections") != CONFIG_SRC_DEFAULT,
                          cfg.http_threads, soft, err, sizeof err);
        if (frc < 0) {
            fprintf(stderr, "batchd: %s\n", err);
            config_free(&cfg);
            return SUP_EXIT_FATAL;
        }
        if (frc == 1)
            log_warn("the open-file limit (%llu) fits %u connections, not the default %u: "
                     "--max-connections is %u (raise ulimit -Hn for more)",
                     (unsigned long long)soft, cfg.max_connections, asked, cfg.max_connections);
    }
    rc = sup_run(&cfg);
    config_free(&cfg);
    return rc;
}
