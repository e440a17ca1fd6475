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
#include <stdio.h>
#include <string.h>

#include "service/config/config.h"
#include "service/cmd/healthcheck.h"
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
    rc = sup_run(&cfg);
    config_free(&cfg);
    return rc;
}
