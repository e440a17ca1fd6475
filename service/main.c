/*
 * main: parses the configuration and hands over to the supervisor.
 * Exit codes: 0 after an orderly stop (or --help/--version), 2 for a bad
 * command line or a start-up failure (see supervisor.h).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "supervisor.h"

int main(int argc, char **argv)
{
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
    rc = sup_run(&cfg);
    config_free(&cfg);
    return rc;
}
