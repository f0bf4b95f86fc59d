#include "loom/error.h"
#include "loom/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errdetail[512];

void loom_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "loom: assertion failed: %s (%s:%d %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}

const char *loom_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:
        return "success";
#define LOOM__ERR_STR(name, num, msg)                                                              \
    case num:                                                                                      \
        return msg;
        LOOM_ERRNO_MAP(LOOM__ERR_STR)
#undef LOOM__ERR_STR
    default:
        return "unknown error";
    }
}

const char *loom_err_name(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:
        return "OK";
#define LOOM__ERR_NAME(name, num, msg)                                                             \
    case num:                                                                                      \
        return #name;
        LOOM_ERRNO_MAP(LOOM__ERR_NAME)
#undef LOOM__ERR_NAME
    default:
        return "UNKNOWN";
    }
}

const char *loom_errdetail(void)
{
    return errdetail;
}

int loom_seterr(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errdetail, sizeof errdetail, fmt, ap);
    va_end(ap);
    /* details are copied into wire messages, which must stay UTF-8 */
    loom_utf8_trim(errdetail);
    return err;
}

int loom_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return LOOM_OK;
    case ENOMEM:
        return LOOM_ENOMEM;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return LOOM_ESTORAGE_FULL;
    case ENOENT:
        return LOOM_ENOT_FOUND;
    case EINVAL:
        return LOOM_EINVALID_ARGUMENT;
    case EBUSY:
    case EAGAIN:
        return LOOM_EBUSY;
    case ETIMEDOUT:
        return LOOM_ETIMEOUT;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
        return LOOM_ECLOSED;
    default:
        return LOOM_EIO;
    }
}
