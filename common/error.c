/* error.c - messages that name the program, the call, the object and why. */
#include "lab.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "lab";

void set_program_name(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');
    prog = slash ? slash + 1 : argv0;
}

const char *program_name(void)
{
    return prog;
}

/* The errors a socket program meets. Linux gives EAGAIN and EWOULDBLOCK the
 * same value; the first entry wins, so it prints as EAGAIN. */
static const struct {
    int value;
    const char *name;
} errno_names[] = {
    {EPERM, "EPERM"},
    {ENOENT, "ENOENT"},
    {ESRCH, "ESRCH"},
    {EINTR, "EINTR"},
    {EIO, "EIO"},
    {EBADF, "EBADF"},
    {ECHILD, "ECHILD"},
    {EAGAIN, "EAGAIN"},
    {EWOULDBLOCK, "EWOULDBLOCK"},
    {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"},
    {EFAULT, "EFAULT"},
    {EINVAL, "EINVAL"},
    {ENFILE, "ENFILE"},
    {EMFILE, "EMFILE"},
    {ENOSPC, "ENOSPC"},
    {EPIPE, "EPIPE"},
    {ENOTSOCK, "ENOTSOCK"},
    {EDESTADDRREQ, "EDESTADDRREQ"},
    {EMSGSIZE, "EMSGSIZE"},
    {EPROTOTYPE, "EPROTOTYPE"},
    {ENOPROTOOPT, "ENOPROTOOPT"},
    {EPROTONOSUPPORT, "EPROTONOSUPPORT"},
    {EOPNOTSUPP, "EOPNOTSUPP"},
    {EAFNOSUPPORT, "EAFNOSUPPORT"},
    {EADDRINUSE, "EADDRINUSE"},
    {EADDRNOTAVAIL, "EADDRNOTAVAIL"},
    {ENETDOWN, "ENETDOWN"},
    {ENETUNREACH, "ENETUNREACH"},
    {ECONNABORTED, "ECONNABORTED"},
    {ECONNRESET, "ECONNRESET"},
    {ENOBUFS, "ENOBUFS"},
    {EISCONN, "EISCONN"},
    {ENOTCONN, "ENOTCONN"},
    {ETIMEDOUT, "ETIMEDOUT"},
    {ECONNREFUSED, "ECONNREFUSED"},
    {EHOSTUNREACH, "EHOSTUNREACH"},
    {EALREADY, "EALREADY"},
    {EINPROGRESS, "EINPROGRESS"},
    {EPROTO, "EPROTO"},
    {EHOSTDOWN, "EHOSTDOWN"},
};

const char *errno_name(int err)
{
    static _Thread_local char unknown[32]; /* one per thread: no race */

    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
        if (errno_names[i].value == err)
            return errno_names[i].name;
    snprintf(unknown, sizeof unknown, "errno %d", err);
    return unknown;
}

/* One line on stderr, written as one write() that never blocks (log.c):
 * nobody reading our stderr must not stop the server. strerror_r() rather
 * than strerror(), which may return a buffer shared by all threads. */
static void vwarn(int err, const char *fmt, va_list ap)
{
    char msg[384], reason[96], line[512];
    int len;

    vsnprintf(msg, sizeof msg, fmt, ap);
    if (err != 0) {
        if (strerror_r(err, reason, sizeof reason) != 0)
            snprintf(reason, sizeof reason, "error %d", err);
        len = snprintf(line, sizeof line, "%s: %s: %s (%s)\n", prog, msg,
                       reason, errno_name(err));
    } else {
        len = snprintf(line, sizeof line, "%s: %s\n", prog, msg);
    }
    if (len < 0)
        return;
    if ((size_t)len >= sizeof line) { /* cut, but keep the newline */
        len = (int)sizeof line - 1;
        line[len - 1] = '\n';
    }
    write_log_line(STDERR_FILENO, line, (size_t)len);
}

void warn_msg(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vwarn(0, fmt, ap);
    va_end(ap);
}

void warn_errno(const char *fmt, ...)
{
    int err = errno; /* before anything below can change it */
    va_list ap;

    va_start(ap, fmt);
    vwarn(err, fmt, ap);
    va_end(ap);
    errno = err;
}

void die_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;

    va_start(ap, fmt);
    vwarn(err, fmt, ap);
    va_end(ap);
    exit(1);
}
