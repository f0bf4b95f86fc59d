/* loomctl namespace commands. */
#ifndef LOOMCTL_NS_H
#define LOOMCTL_NS_H

#include "cli.h"

/* The options a namespace config can be built from. */
#define CTL_NS_OPTS                                                                                \
    (OPT_PROCESSOR | OPT_STEP_TIMEOUT | OPT_RETRY | OPT_RANGE_LIMIT | OPT_RANGE_DIR |              \
     OPT_EVENT_SINK)

struct ctl_args;
int ctl_cmd_ns_list(const ctl_opts *o, loom_client *c, const struct ctl_args *a);
int ctl_cmd_ns_register(const ctl_opts *o, loom_client *c, const struct ctl_args *a);
int ctl_cmd_ns_update(const ctl_opts *o, loom_client *c, const struct ctl_args *a);

#endif
