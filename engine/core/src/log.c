/* One line per notable event on stderr, with a level. */
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "loom/engine.h"

static loom_log_level g_level = LOOM_LOG_INFO;

void loom_log_set_level(loom_log_level level)
{
    g_level = level;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int loom_log_level_parse(const char *text, loom_log_level *out)
{
    for (size_t i = 0; i < LOOM_ARRAY_SIZE(level_names); i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (loom_log_level)i;
            return 0;
        }
    }
    return loom_seterr(LOOM_EINVALID_ARGUMENT, "log level '%s': use error|warn|info|debug", text);
}

void loom_log(loom_log_level level, const char *fmt, ...)
{
    if (level > g_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %-5s loomd: ", ts.tv_nsec / 1000000,
                  level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so lines of concurrent writers never interleave. */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len++] = '\n';
    } else {
        line[sizeof line - 2] = '\n';
        len = sizeof line - 1;
    }
    fwrite(line, 1, len, stderr);
}
