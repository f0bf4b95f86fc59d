/* loomctl: the command-line client of loomd. See `loomctl --help`. */
#include "cli.h"

int main(int argc, char **argv)
{
    ctl_opts o;
    int rc = ctl_parse(argc, argv, &o);
    if (rc < 0)
        return CTL_EXIT_OK; /* --help */
    if (rc != 0)
        return rc;
    return ctl_run(&o);
}
